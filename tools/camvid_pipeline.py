"""`make camvid-train` / `make camvid-test`: CamVid → LMDB → train → BN statistics → test-split metrics.

    python -m tools.camvid_pipeline train --arch segnet-basic --preset quick --camvid data/CamVid --run runs/x
    python -m tools.camvid_pipeline test  --arch segnet-basic --weights W.caffemodel --camvid data/CamVid --run runs/x

Presets (`paper`, `quick`, `smoke`) are the protocol table's (prototxt/protocol.py; `make presets` prints it).
`quick` (the default) trains at a quarter of CamVid's resolution; its predictions are made at 90×120, their class
scores upsampled bilinearly to 360×480 (tools.segment.predict) and scored against the full-resolution ground truth.
`paper` follows the architecture's protocol (docs/paper.md §2), with the VGG16 encoder when `--init-weights` is
given; the best validation global accuracy is kept.
Everything the pipeline makes goes into the run folder: lmdb/, net/, snapshots/, the weights, eval/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import INTERRUPTED, fail, fail_diverged
from segnet_bvlc.core.files import Busy
from segnet_bvlc.core.interrupt import Interrupted
from segnet_bvlc.core.log import console_logging
from segnet_bvlc.dataset.camvid import SPLITS
from segnet_bvlc.pipeline import check_choice, run_test, run_train

TOOL = "camvid_pipeline"


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(TOOL, __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "test"):
        s = sub.add_parser(name)
        s.add_argument("--arch", default="segnet-basic")
        s.add_argument("--preset", default="quick", help="quick (default), paper, or smoke (seconds; checks the "
                       "path, not a model)")
        s.add_argument("--camvid", type=Path, default=Path("data/CamVid"))
        s.add_argument("--run", type=Path, required=True)
        s.add_argument("--limit", type=int, help="evaluate only the first N images (for tests)")
        s.add_argument("--height", type=int)
        s.add_argument("--width", type=int)
        s.add_argument("--json", action="store_true")
    t = sub.choices["train"]
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--max-iter", type=int)
    t.add_argument("--batch", type=int)
    t.add_argument("--lr", dest="base_lr", type=float, help="fixed learning rate (default: the architecture's "
                   "protocol, `make presets`)")
    t.add_argument("--iter-size", type=int, help="Caffe's iter_size: batches per update (less memory for the "
                   "same effective batch; BatchNorm then normalises with the smaller batch)")
    t.add_argument("--class-weights", help="published | recomputed | none | FILE (default: the preset's)")
    t.add_argument("--init-weights", type=str, help="VGG_ILSVRC_16_layers.caffemodel for VGG encoders")
    t.add_argument("--init-force", action="store_true")
    t.add_argument("--restart", action="store_true", help="start --run over when it holds a run with other "
                   "settings (its LMDBs are kept when their size still fits)")
    t.add_argument("--no-memory-check", dest="memory_check", action="store_false",
                   help="start even when the estimated memory exceeds what the machine has free")
    t.add_argument("--lmdb", type=Path, help="folder of the train/ and val/ LMDBs, shared by runs at the same "
                   "size (default: RUN/lmdb)")
    t.add_argument("--dropout", action="store_true", help="Bayesian SegNet: dropout 0.5 where Bayesian SegNet puts "
                   "it (the run's evaluation is the deterministic pass; `test --samples N` scores Monte Carlo dropout)")
    t.add_argument("--eval-train", action="store_true", help="also score the training split (G, C, mIoU: the "
                   "paper's Table 1 Train columns) into RUN/eval/train")
    e = sub.choices["test"]
    e.add_argument("--weights", type=Path, required=True)
    e.add_argument("--deploy", type=Path, help="deploy prototxt matching --weights (default: the run folder's "
                   "the weights belong to; tools.convert_weights writes one next to a converted model)")
    e.add_argument("--split", default="test", choices=SPLITS)
    e.add_argument("--samples", type=int, default=0, help="Monte Carlo dropout samples per image (a net trained with "
                   "--dropout; Bayesian SegNet used 40); results go to RUN/eval/SPLIT-mcN (default 0: one "
                   "deterministic pass, RUN/eval/SPLIT)")
    e.add_argument("--seed", type=int, default=0, help="dropout masks' seed with --samples (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console_logging()
    try:
        check_choice(args.arch, args.preset)
        if args.command == "test":
            summary, status = run_test(args), 0
        else:
            status, summary = run_train(args)
    except FloatingPointError as e:
        fail_diverged(TOOL, e)
    except (ValueError, FileNotFoundError) as e:  # ValueError: every SegnetError
        fail(TOOL, str(e))
    except OSError as e:
        fail(TOOL, f"{e.filename or args.run}: {e.strerror or e}")
    except Busy as e:
        fail(TOOL, str(e))
    except Interrupted as e:  # 130 whichever signal it was, as for a stopped training
        fail(TOOL, f"stopped by {e}: run the same command again to finish", code=INTERRUPTED)
    if args.json and summary is not None:
        print(json.dumps(summary, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
