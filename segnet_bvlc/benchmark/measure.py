"""The benchmark's measurements of one architecture (tools.benchmark runs them; segnet_bvlc.benchmark.report
renders them): layer-by-layer times, BVLC's own `caffe time`, the fresh-process inference and memory figures,
and the CamVidData layer's time.

What each figure is and how it is taken: the docstring of tools/benchmark.py and docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import layers.camvid_data
from prototxt import count_params

from segnet_bvlc.benchmark.child import run_child
from segnet_bvlc.benchmark.errors import BenchmarkError
# machine_info is also read from here by tests/test_docker.py and storage_multiplier by segnet_bvlc.study.
from segnet_bvlc.benchmark.machine import machine_info  # noqa: F401
from segnet_bvlc.benchmark.storage import storage_multiplier
from segnet_bvlc.benchmark.timing import caffe_on, fill_inputs, net_param, time_layers, write_prototxt
from segnet_bvlc.benchmark.torch_peer import time_torch_peer
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.lmdb_data.convert import convert
from segnet_bvlc.nets import load as nets


def caffe_time(prototxt: Path, iterations: int, gpu: int | None) -> dict:
    """BVLC's `caffe time` (TRAIN phase): its 'Average Forward pass' and 'Average Backward pass' in ms."""
    exe = ROOT / ".venv" / "bin" / "caffe"
    if not exe.exists():
        raise BenchmarkError(f"{exe}: missing; run `make setup`")
    cmd = [str(exe), "time", "-model", str(prototxt), "-iterations", str(iterations)]
    if gpu is not None:
        cmd += ["-gpu", str(gpu)]
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    text = proc.stdout + proc.stderr
    found = {key: re.search(rf"Average {label} pass: ([0-9.]+) ms", text)
             for key, label in (("forward_ms", "Forward"), ("backward_ms", "Backward"))}
    if proc.returncode != 0 or not all(found.values()):
        tail = (text.strip().splitlines() or ["(no output)"])[-1]
        raise BenchmarkError(f"caffe time on {prototxt.name} failed ({proc.returncode}): {tail}")
    return {key: float(m.group(1)) for key, m in found.items()} | {"iterations": iterations}


def time_data_layer(camvid: Path, height: int, width: int, repeats: int, warmup: int, gpu: int | None,
                    limit: int = 8) -> dict:
    """CamVidData (LMDB decode into the float32 tops) at batch 1, from an LMDB of `limit` CamVid train images."""
    caffe = caffe_on(gpu)
    with tempfile.TemporaryDirectory(prefix="segnet-bench-data-") as tmp:
        lmdb = Path(tmp) / "lmdb"
        convert(camvid, "train", lmdb, height=height, width=width, limit=limit, progress=False)
        params = json.dumps({"source": str(lmdb), "batch_size": 1, "seed": 1, "shuffle": True})
        proto = Path(tmp) / "data.prototxt"
        proto.write_text('layer { name: "data" type: "Python" top: "data" top: "label"\n'
                         f'  python_param {{ module: "{layers.camvid_data.MODULE}" '
                         f'layer: "{layers.camvid_data.LAYER}"\n'
                         f'    param_str: {json.dumps(params)} }} }}\n')
        net = nets.load_net(proto, phase=caffe.TRAIN)
        times = []
        for r in range(warmup + max(repeats, 5)):  # cheap: always at least 5 timed batches
            t = time.perf_counter()
            net.forward()
            if r >= warmup:
                times.append((time.perf_counter() - t) * 1e3)
        del net
    return {"forward_ms": statistics.median(times), "images": limit}


def _python_layer_shares(row: dict, timing: dict) -> None:
    """Our Python layers' times and their share of a whole pass, into `row`."""
    py = [l for l in timing["layers"] if l["type"] == "Python"]
    row["python_layers"] = py
    row["python_forward_share"] = sum(l["forward_ms"] for l in py) / timing["forward_ms"]
    row["python_backward_share"] = (sum(l["backward_ms"] for l in py) / timing["backward_ms"]
                                    if timing["backward_ms"] else 0.0)


def measure(arch: str, cfg: argparse.Namespace, tmp: Path) -> dict:
    """Every figure of one architecture: one row of the benchmark's tables."""
    caffe = caffe_on(cfg.gpu)
    deploy = net_param(arch, "deploy", 1, cfg.height, cfg.width)
    train = net_param(arch, "train", 1, cfg.height, cfg.width)
    row: dict = {"arch": arch, "params": count_params(deploy)}
    proto = write_prototxt(train, tmp, f"{arch}-train.prototxt")
    net = nets.load_net(proto, phase=caffe.TRAIN)
    fill_inputs(net)
    channels = {name: blob.data.shape[1] for name, blob in net.blobs.items() if blob.data.ndim == 4}
    row["storage_multiplier"] = storage_multiplier(deploy, channels)
    timing = time_layers(net, cfg.repeats, cfg.warmup)
    if getattr(cfg, "peer", None) == "torch":  # right after Caffe's, same process, weights and inputs
        row["torch"] = time_torch_peer(train, net, cfg.repeats, cfg.warmup)
    del net
    gc.collect()
    row.update(forward_ms=timing["forward_ms"], backward_ms=timing["backward_ms"],
               forward_runs_ms=timing["forward_runs_ms"], backward_runs_ms=timing["backward_runs_ms"])
    _python_layer_shares(row, timing)
    row["layers"] = timing["layers"]
    if cfg.cli_iterations:
        row["caffe_time"] = caffe_time(proto, cfg.cli_iterations, cfg.gpu)
    infer = run_child("infer", arch, 1, cfg)
    row.update(model_bytes=infer["model_bytes"], infer_ms=infer["infer_ms"], infer_mem_mib=infer["peak_mib"],
               infer_gpu_mib=infer.get("gpu_mib"))
    train_child = run_child("train", arch, cfg.train_batch, cfg)
    row.update(train_mem_mib=train_child["peak_mib"], train_gpu_mib=train_child.get("gpu_mib"))
    return row
