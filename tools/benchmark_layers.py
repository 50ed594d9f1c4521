"""Micro-benchmarks of the project's Python layers against PyTorch CPU, and their share of a SegNet step.

    python -m tools.benchmark_layers --layer upsample [--repeat N] [--batch 4] [--torch-threads 1]
                                     [--no-net] [--json]

For the Upsample layer it times, at SegNet's five unpooling shapes (360x480 input, batch 4):
  * the layer inside a caffe.Net (``net._forward/_backward`` of that one Input-fed layer),
  * the pure NumPy functions on the same arrays,
  * PyTorch's ``max_unpool2d`` forward and its backward (``torch.autograd.grad``) on the same arrays,
and reports medians after one warm-up and the ratio ours/PyTorch. Our NumPy path is single-threaded, so
PyTorch gets ``--torch-threads 1`` by default (pass more to see PyTorch with more cores).
Then it builds the generated SegNet-Basic TRAIN net (prototxt.build_net through
segnet_bvlc.benchmark.timing.net_param: Input-fed, unweighted loss) at 1x3x360x480 and reports the Upsample
layers' share of a forward+backward pass.
"""


from __future__ import annotations

import argparse
import json
import sys

from segnet_bvlc.benchmark.per_layer import (benchmark_segnet_basic_share, benchmark_upsample, print_upsample,
                                             summarize_upsample)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.benchmark_layers",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--layer", choices=["upsample"], default="upsample", help="which layer to benchmark")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement, after one warm-up")
    parser.add_argument("--batch", type=int, default=4, help="batch of the layer micro-benchmark (SegNet: 4)")
    parser.add_argument("--torch-threads", type=int, default=1, help="PyTorch threads (our NumPy uses one)")
    parser.add_argument("--no-net", action="store_true", help="skip the SegNet-Basic share measurement")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout (the table goes to stderr)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.batch < 1 or args.torch_threads < 1:
        parser.error("--repeat, --batch and --torch-threads must be >= 1")

    rows = benchmark_upsample(repeat=args.repeat, batch=args.batch, torch_threads=args.torch_threads)
    share = None if args.no_net else benchmark_segnet_basic_share(repeat=max(1, min(args.repeat, 3)))
    print_upsample(rows, share, sys.stderr if args.json else sys.stdout)
    if args.json:
        total = summarize_upsample(rows)
        result = {"layer": "upsample", "shapes": rows, "all_shapes": total, "segnet_basic": share}
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
