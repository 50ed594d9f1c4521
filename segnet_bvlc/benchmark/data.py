"""The CamVid data path's speed (`python -m tools.benchmark_data`): LMDB conversion against decoding alone, and
the CamVidData layer against a SegNet-Basic training iteration (what is measured: that command's docstring)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import caffe
import cv2
import layers.camvid_data
import numpy as np
from caffe import layers as L
from PIL import Image

from segnet_bvlc.benchmark.timing import fill_inputs, net_param
from segnet_bvlc.dataset.camvid import read_list
from segnet_bvlc.lmdb_data.convert import convert
from segnet_bvlc.lmdb_data.pairs import caffe_pb2
from segnet_bvlc.nets.load import net_from_param


def decode_only(pairs) -> float:
    """Seconds to decode every (image, label) pair as any converter must: the floor of conversion."""
    start = time.perf_counter()
    for image, label in pairs:
        cv2.imread(str(image), cv2.IMREAD_COLOR)
        with Image.open(label) as im:
            np.asarray(im)
    return time.perf_counter() - start


def iteration_seconds(height: int, width: int, repeats: int = 2) -> float:
    """Forward + backward of the generated SegNet-Basic TRAIN net at batch 1 (median of `repeats` after one
    warm-up), Input-fed as `make benchmark` times it."""
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
    """Seconds per batch of the CamVidData layer alone in a caffe.Net, after one warm-up batch."""
    n = caffe.NetSpec()
    n.data, n.label = L.Python(ntop=2, python_param=dict(
        module=layers.camvid_data.MODULE, layer=layers.camvid_data.LAYER,
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
    """Both measurements of the data path (the command's docstring), as the record `--json` prints."""
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
