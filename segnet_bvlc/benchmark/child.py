"""The fresh processes of tools.benchmark: each memory figure (and the inference time) comes from a child that
builds one net and runs it, so that nothing an earlier net allocated counts.

`run_child` re-enters `python -m tools.benchmark --child KIND`, which calls `child_main` and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from segnet_bvlc.benchmark.errors import BenchmarkError
from segnet_bvlc.benchmark.timing import caffe_on, fill_inputs, net_param, write_prototxt
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.nets import load as nets
from segnet_bvlc.training import memory


def _infer_ms(net, warmup: int, repeats: int, gpu: int | None) -> float:
    """The deploy net's forward, median over `repeats` after `warmup` passes."""
    times = []
    for r in range(warmup + repeats):
        t = time.perf_counter()
        net.forward()
        if gpu is not None:
            np.asarray(net.blobs[net.outputs[0]].data)  # sync the device before reading the clock
        if r >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def child_main(args: argparse.Namespace) -> int:
    """Runs in a fresh process: build one net, run it, report peak memory (and for infer: time, model size)."""
    caffe = caffe_on(args.gpu)
    baseline = memory.reset_peak_rss()
    with tempfile.TemporaryDirectory(prefix="segnet-bench-") as tmp:
        split = "deploy" if args.child == "infer" else "train"
        param = net_param(args.arch, split, args.batch, args.height, args.width)
        proto = write_prototxt(param, Path(tmp), f"{split}.prototxt")
        net = nets.load_net(proto, phase=caffe.TEST if split == "deploy" else caffe.TRAIN)
        fill_inputs(net)
        out: dict = {"arch": args.arch, "child": args.child, "batch": args.batch}
        if args.child == "infer":
            model = Path(tmp) / "deploy.caffemodel"
            net.save(str(model))
            out["model_bytes"] = model.stat().st_size
            out["infer_ms"] = _infer_ms(net, args.warmup, args.repeats, args.gpu)
        else:
            net.forward()
            net.backward()
        out["peak_mib"] = (memory.peak_rss() - baseline) / 2 ** 20
        out["baseline_mib"] = baseline / 2 ** 20
        if args.gpu is not None:
            out["gpu_mib"] = nvidia_smi_mib(os.getpid())
    print(json.dumps(out))
    return 0


def nvidia_smi_mib(pid: int) -> float | None:
    """The GPU memory nvidia-smi gives process `pid` (None without nvidia-smi or without that process)."""
    try:
        text = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return None


def run_child(kind: str, arch: str, batch: int, cfg: argparse.Namespace) -> dict:
    """`child_main`'s record from a fresh `python -m tools.benchmark --child KIND` process."""
    cmd = [sys.executable, "-m", "tools.benchmark", "--child", kind, "--arch", arch, "--batch", str(batch),
           "--height", str(cfg.height), "--width", str(cfg.width), "--repeats", str(cfg.repeats),
           "--warmup", str(cfg.warmup)]
    if cfg.gpu is not None:
        cmd += ["--gpu", str(cfg.gpu)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchmarkError(f"{arch}: the {kind} child process failed ({proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
