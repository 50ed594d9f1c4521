"""`python -m tools.bn_stats`: BatchNorm statistics for inference from one full pass over the training set
(segnet_bvlc.bn_stats, whose docstring describes the pass and its two rules)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segnet_bvlc import bn_stats
from segnet_bvlc.core.errors import fail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.bn_stats", description=bn_stats.__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="The net must take its images through an Input blob named 'data' "
                                            "(a deploy net); see the module docstring for the two rules.")
    parser.add_argument("--model", required=True, type=Path, help="deploy prototxt (Input 'data', BatchNorm+Scale)")
    parser.add_argument("--weights", required=True, type=Path, help="trained caffemodel")
    parser.add_argument("--source", required=True, type=Path, help="training-set LMDB pair (tools.camvid_to_lmdb)")
    parser.add_argument("--out", required=True, type=Path, help="caffemodel to write with the statistics")
    parser.add_argument("--batch", type=int, default=4,
                        help="images per forward pass (default 4). Use the training batch: every BatchNorm after "
                             "the first sees inputs normalised with its mini-batch's statistics, so the pass's "
                             "batch changes the statistics of the deeper layers (both rules)")
    parser.add_argument("--rule", choices=list(bn_stats.RULES), default="exact")
    parser.add_argument("--fold", type=Path, help="also write a BatchNorm-folded deploy caffemodel here (+ .prototxt)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        bn_stats.check_inputs(args.model, args.weights, args.source, args.batch)
        batches, total = bn_stats.lmdb_batches(args.source, args.batch)
        summary = bn_stats.compute(args.model, args.weights, batches, args.out, args.rule, args.fold, total)
    except ValueError as e:
        fail("bn_stats", str(e))
    except OSError as e:
        fail("bn_stats", f"{e.filename or args.out}: {e.strerror}")
    print(json.dumps(summary, indent=2) if args.json else f"BN statistics ({args.rule}) of {summary['layers']} "
          f"layers written to {args.out}", file=sys.stdout if args.json else sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
