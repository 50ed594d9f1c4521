"""The paper's controlled benchmark on this machine: Table 1 (decoder variants) and Table 6 (compute and memory).

    python -m tools.benchmark [--arch a,b] [--camvid DIR] [--out results/benchmark] [--quick] [--json]
    python -m tools.benchmark --layer upsample [...]     # the Upsample layer micro-benchmark (tools.benchmark_layers)

For every architecture, at 360x480 with 11 classes (paper §3.3, Table 6 caption):
  params        weights + biases (prototxt.count_params: BatchNorm statistics excluded);
  model MB      size on disk of the deploy net's .caffemodel (10^6 bytes, as Caffe writes it; BN statistics included);
  fwd / bwd ms  the TRAIN net at batch 1 (Table 6: "caffe time", mini-batch 1), Input-fed, timed layer by layer
                (net._forward(i, i) / net._backward(i, i)); the sum over layers is one pass; median over --repeats
                passes after --warmup passes. The per-layer times give the share of our Python layers.
  caffe time    `caffe time -model train.prototxt -iterations N` (BVLC's own averages) alongside; in GPU mode
                pycaffe cannot synchronise the device per layer, so there the `caffe time` figure is the one to read;
  infer ms      the deploy net's forward at batch 1, median (Table 1's "inference time");
  memory MiB    peak resident memory of a child process that builds the net and runs it (deploy at batch 1 for
                inference; TRAIN at batch 4, forward + backward, for training; Table 6), minus that child's resident
                memory before the net was built. The paper read GPU memory from nvidia-smi (which includes the CUDA
                context); on a CPU the host RSS is the analogue. With --gpu, nvidia-smi's figure is recorded too.
  storage       Table 1's storage multiplier, from the architecture (see `storage_multiplier`).
Results go to OUT/benchmark.{md,csv,json,png}, with the paper's figures and the ratios between architectures
(different machines compare by ratio, not by absolute time).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prototxt import ARCHS

from segnet_bvlc.benchmark.child import child_main
from segnet_bvlc.benchmark.errors import BenchmarkError
from segnet_bvlc.benchmark.report import markdown
from segnet_bvlc.benchmark.run import OUTPUTS, QUICK_ARCHS, benchmark, log
from segnet_bvlc.core.device import gpu_problem
from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.log import console_logging
from segnet_bvlc.dataset.camvid import HEIGHT, WIDTH
from tools import benchmark_layers

# Each setting's (full, --quick) default.
DEFAULTS = {"height": (HEIGHT, 64), "width": (WIDTH, 96), "repeats": (3, 1), "warmup": (1, 0), "cli_iterations": (2, 1)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark", description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (and README) for what is measured and how.")
    parser.add_argument("--arch", help="comma-separated architectures (default: all; --quick: "
                        + ",".join(QUICK_ARCHS) + ")")
    parser.add_argument("--camvid", type=Path,
                        help="CamVid folder: times the CamVidData layer on a few real images (skipped if absent)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmark"), help="results folder")
    parser.add_argument("--height", type=int, help=f"input height (default {HEIGHT}; --quick 64)")
    parser.add_argument("--width", type=int, help=f"input width (default {WIDTH}; --quick 96)")
    parser.add_argument("--repeats", type=int, help="timed passes per measurement (default 3; --quick 1)")
    parser.add_argument("--warmup", type=int, help="untimed passes first (default 1; --quick 0)")
    parser.add_argument("--cli-iterations", type=int,
                        help="`caffe time` iterations, 0 to skip (default 2; the paper: 10; --quick 1)")
    parser.add_argument("--train-batch", type=int, default=4, help="batch of the training-memory run (Table 6: 4)")
    parser.add_argument("--gpu", type=int, help="run in GPU mode on this device (needs the CUDA build)")
    parser.add_argument("--quick", action="store_true", help="small input, one repeat, two architectures (tests)")
    parser.add_argument("--layer", choices=["upsample"],
                        help="instead: the layer micro-benchmark of tools.benchmark_layers")
    parser.add_argument("--peer", choices=["torch"], help="also time each net's PyTorch twin (tools.torch_peer) on "
                        "the same weights in the same run: forward, backward, SGD step, and Caffe's ratio to it")
    parser.add_argument("--json", action="store_true", help="print the result JSON on stdout")
    parser.add_argument("--child", choices=["infer", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    console_logging()
    for key, (full, small) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, small if args.quick else full)
    args.archs = [a.strip() for a in args.arch.split(",") if a.strip()] if args.arch else None
    for key in ("height", "width", "repeats", "train_batch"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.cli_iterations < 0:
        parser.error("--warmup and --cli-iterations must be >= 0")
    if args.gpu is not None and gpu_problem(args.gpu):
        parser.error(gpu_problem(args.gpu))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:  # one fresh-process measurement (segnet_bvlc.benchmark.child.run_child)
        return child_main(args)
    if args.layer:
        forwarded = ["--layer", args.layer, "--repeat", str(max(args.repeats, 1))] + (["--json"] if args.json else [])
        return benchmark_layers.main(forwarded)
    if args.archs is None:
        args.archs = list(QUICK_ARCHS) if args.quick else list(ARCHS)
    try:
        result = benchmark(args)
    except BenchmarkError as e:
        fail("benchmark", str(e))
    except OSError as e:
        fail("benchmark", f"{e.filename or args.out}: {e.strerror or e}")
    log(f"wrote {', '.join(str(args.out / f) for f in OUTPUTS)}")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
