"""Train a generated network with Caffe's SGD solver, driven from Python, into a self-contained run folder.

The run folder is its own contract. config.json holds every setting that defines the run, written once when the
run starts; provenance.json (git commit, Caffe build, package versions, machine), net/ (the train and deploy
prototxts and the solver exactly as used), snapshots/ (caffemodel + solverstate + state every --snapshot-every
iterations and at every validation), best.caffemodel (the iteration with the best validation global accuracy:
the paper's model selection, §3.3), last.caffemodel/.solverstate, scalars.jsonl (one JSON record per logged
iteration and per validation), train.log and curve.png.

Running the same command again on a run folder resumes it from its newest intact snapshot and finishes it, on the
same batch sequence (the data layer is a pure function of seed and iteration), so an interrupted run (Ctrl-C,
SIGTERM, a kill, a power cut) ends with the same weights as an uninterrupted one. A command with other settings
is refused with the difference; --restart starts the run over. Snapshots are written by Caffe into
snapshots/.writing/ and moved into place only when whole, so a kill never leaves a torn snapshot; a snapshot that
does not read back is skipped (and named) on resume.

Each validation first computes BatchNorm statistics from a full pass over the training set with the current
weights (tools.bn_stats), as the paper does before every evaluation; best.caffemodel holds those statistics. The
pass runs through the training net itself (same batch, so the same statistics as a separate pass net, without a
second copy of the training activations), and the scoring net is a deploy net at batch 1, built for the
validation and released after it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import INTERRUPTED, fail, fail_diverged
from segnet_bvlc.core.log import console_logging
from segnet_bvlc.training.config import TrainConfig, config_from_args
from segnet_bvlc.training.train import train

TOOL = "train"


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = command_parser(TOOL, __doc__)
    p.add_argument("--run", required=True, type=Path,
                   help="run folder: created, or continued when it holds a run with the same settings")
    p.add_argument("--resume", action="store_true", help="continue --run with its stored settings (no other "
                   "option needed; --max-iter may extend it)")
    p.add_argument("--restart", action="store_true", help="start --run over when it holds a run with other "
                   "settings (deletes that run's snapshots, weights and logs)")
    p.add_argument("--arch", default=d.arch, help=f"architecture (default {d.arch}; see python -m prototxt --help)")
    p.add_argument("--train-source", default="", help="training LMDB pair (tools.camvid_to_lmdb --split train)")
    p.add_argument("--val-source", default="", help="validation LMDB pair; omit to skip validation")
    for name in ("classes", "iter_size", "seed"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    protocol = "(default: the architecture's protocol, prototxt/protocol.py: `python -m prototxt --protocols`)"
    for name in ("height", "width", "batch", "max_iter", "log_every", "snapshot_every", "val_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=protocol)
    p.add_argument("--lr", dest="base_lr", type=float, help="fixed learning rate " + protocol)
    p.add_argument("--momentum", type=float, help=protocol)
    p.add_argument("--weight-decay", type=float, help=protocol)
    p.add_argument("--class-weights", help="published | recomputed | none | FILE.binaryproto " + protocol)
    p.add_argument("--mirror", action="store_true", help="random left-right flips of image and label together")
    p.add_argument("--init-weights", default="", help="VGG_ILSVRC_16_layers.caffemodel for the encoder")
    p.add_argument("--init-force", action="store_true", help="accept an --init-weights file that is not the "
                   "released VGG16 (its size and sha256 are checked otherwise)")
    p.add_argument("--dropout", action="store_true", help="dropout 0.5 where Bayesian SegNet puts it")
    p.add_argument("--no-batchnorm", dest="batchnorm", action="store_false")
    p.add_argument("--no-memory-check", dest="memory_check", action="store_false",
                   help="start even when the estimated memory exceeds what the machine has free")
    p.add_argument("--json", action="store_true", help="print the final state as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    extend = args.max_iter if args.resume else None
    try:
        console_logging()
        state = train(cfg, args.run, resume=args.resume, max_iter=extend, restart=args.restart,
                      memory_check=args.memory_check)
    except FloatingPointError as e:
        fail_diverged(TOOL, e)
    except (FileNotFoundError, ValueError, MemoryError) as e:  # ValueError: every SegnetError
        fail(TOOL, str(e))
    except OSError as e:
        fail(TOOL, f"{e.filename or args.run}: {e.strerror}")
    if args.json:
        print(json.dumps(state, indent=2))
    return INTERRUPTED if state.get("stopped_by") else 0


if __name__ == "__main__":
    sys.exit(main())
