"""python -m prototxt ARCH --split train|test|deploy [...] | ARCH --solver | --all

Writes one net (or solver) to stdout or --out FILE, or every committed file with --all (`make prototxt`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .options import BIASES, DATA_MODES, FC_DIMS, PROTOCOLS, SPLITS, Options, OptionsError
from .output import render_net, render_solver, write_all, write_atomic
from .protocol import markdown as protocol_markdown
from .registry import ARCHS


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other error of this CLI
        print(f"prototxt: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m prototxt",
        description="Generate the Caffe prototxts of the SegNet paper's architectures (BVLC Caffe).",
        epilog="Architectures: " + ", ".join(ARCHS),
    )
    p.add_argument("arch", nargs="?", choices=ARCHS, metavar="ARCH", help="architecture (see below)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--split", choices=SPLITS, help="which net: train, test (BN global stats) or deploy")
    what.add_argument("--solver", action="store_true", help="write the solver instead of a net")
    what.add_argument("--all", action="store_true",
                      help="write every committed prototxt/models/ARCH/{train,test,deploy,solver}.prototxt")
    p.add_argument("--out", type=Path, help="output file (default: stdout); with --all, the models folder")
    defaults = Options()
    p.add_argument("--classes", type=int, default=defaults.classes,
                   help=f"number of classes K (default {defaults.classes}, CamVid)")
    p.add_argument("--height", type=int, default=defaults.height, help=f"input height (default {defaults.height})")
    p.add_argument("--width", type=int, default=defaults.width, help=f"input width (default {defaults.width})")
    p.add_argument("--batch", type=int, help="batch size (default: the protocol's for train, 1 else)")
    p.add_argument("--class-weights", metavar="published|recomputed|none|FILE",
                   help="loss weighting: CamVid published MFB weights, recomputed ones, none, or a K x K "
                        "InfogainLoss .binaryproto (default: the protocol's; `--protocols` prints them)")
    p.add_argument("--data", choices=DATA_MODES, default="lmdb",
                   help="lmdb: the CamVidData layer (default); input: Input layers for data and label")
    p.add_argument("--source", help="LMDB folder of the data layer (default data/lmdb/camvid-{train|val}-HxW)")
    p.add_argument("--seed", type=int, default=1, help="data order seed and solver random_seed (default 1)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="shuffle every epoch (default: on for train, off for test)")
    p.add_argument("--mirror", action="store_true", help="random left-right flips (the paper used none)")
    p.add_argument("--no-batchnorm", action="store_true", help="no BatchNorm/Scale (the originals' FCN, DeepLab)")
    p.add_argument("--dropout", action="store_true", help="dropout 0.5 where Bayesian SegNet puts it")
    p.add_argument("--mc-dropout", action="store_true",
                   help="with --dropout: test/deploy nets that sample a dropout mask on every forward (Monte Carlo "
                        "dropout, Bayesian SegNet; the layers.mc_dropout Python layer)")
    p.add_argument("--biases", choices=BIASES,
                   help="paper: no conv bias where BatchNorm follows; public: biases everywhere "
                        "(default: paper for the SegNet-Basic family, public otherwise)")
    p.add_argument("--fc-dim", type=int, choices=FC_DIMS, help="DeconvNet fc6/fc7 width (default 1024)")
    p.add_argument("--protocol", choices=PROTOCOLS, help="solver protocol (default from the architecture)")
    p.add_argument("--max-iter", type=int, help="solver max_iter (default: the protocol's)")
    p.add_argument("--protocols", action="store_true", help="print the protocol table (prototxt/protocol.py) "
                   "as Markdown, as the README shows it, and exit")
    p.add_argument("--train-net", help="solver train_net path (default prototxt/models/ARCH/train.prototxt)")
    p.add_argument("--test-net", help="solver test_net path (default: none)")
    p.add_argument("--snapshot-prefix", help="solver snapshot_prefix (default runs/ARCH/snapshots/ARCH)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    try:
        if args.protocols:
            sys.stdout.write(protocol_markdown())
            return 0
        if args.all:
            if args.arch:
                raise OptionsError("--all writes every architecture; give no ARCH")
            written = write_all(args.out)
            print(f"wrote {len(written)} files under {args.out or 'prototxt/models'}", file=sys.stderr)
            return 0
        if not args.arch:
            raise OptionsError("give an ARCH (or --all)")
        if not args.split and not args.solver:
            raise OptionsError("give --split train|test|deploy or --solver")
        if args.max_iter is not None and args.max_iter < 1:
            raise OptionsError(f"--max-iter must be >= 1, got {args.max_iter}")
        opts = Options(
            classes=args.classes, height=args.height, width=args.width, batch=args.batch,
            split=args.split or "train", class_weights=args.class_weights, source=args.source, seed=args.seed,
            shuffle=args.shuffle, mirror=args.mirror, batchnorm=not args.no_batchnorm, dropout=args.dropout,
            mc_dropout=args.mc_dropout,
            biases=args.biases, data=args.data, fc_dim=args.fc_dim, protocol=args.protocol,
        )
        command = "python -m prototxt " + shlex.join(argv)
        if args.solver:
            text = render_solver(args.arch, opts, command, train_net=args.train_net, test_net=args.test_net,
                                 snapshot_prefix=args.snapshot_prefix, max_iter=args.max_iter)
        else:
            text = render_net(args.arch, opts, command)
    except OptionsError as exc:
        print(f"prototxt: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        write_atomic(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
