"""The paper's controlled benchmark on this machine, Table 1 (decoder variants) and Table 6 (compute and memory):
every architecture measured in turn, then the report written (`python -m tools.benchmark`; what each figure is:
that command's docstring and docs/benchmark.md)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from prototxt import ARCHS
from tqdm import tqdm

from segnet_bvlc.benchmark.errors import BenchmarkError
from segnet_bvlc.benchmark.machine import machine_info, torch_info
from segnet_bvlc.benchmark.measure import measure, time_data_layer
from segnet_bvlc.benchmark.report import summarise, write_outputs
from segnet_bvlc.core.files import out_folder_problem
from segnet_bvlc.core.log import logger

QUICK_ARCHS = ("segnet-basic", "fcn-basic")
OUTPUTS = ("benchmark.md", "benchmark.csv", "benchmark.json", "benchmark.png")
CONFIG_KEYS = ("height", "width", "repeats", "warmup", "cli_iterations", "train_batch", "quick", "gpu", "peer")
log = logger("benchmark").info


def check_inputs(cfg: argparse.Namespace) -> None:
    """Refuse what cannot be measured before measuring anything (a missing CamVid only skips the data layer)."""
    unknown = [a for a in cfg.archs if a not in ARCHS]
    if unknown:
        raise BenchmarkError(f"--arch: unknown architecture(s) {', '.join(unknown)} (known: {', '.join(ARCHS)})")
    if cfg.camvid is not None and not cfg.camvid.exists():
        # `make benchmark` always passes CAMVID (default data/CamVid): without CamVid, everything else still runs.
        log(f"benchmark: no CamVid at {cfg.camvid}: the CamVidData layer is not timed")
        cfg.camvid = None
    if cfg.camvid is not None and not (cfg.camvid / "train.txt").is_file():
        raise BenchmarkError(f"{cfg.camvid}: not a CamVid folder (no train.txt); omit --camvid to skip the data layer")


def check_peer(cfg: argparse.Namespace) -> None:
    if cfg.peer == "torch" and cfg.gpu is not None:
        raise BenchmarkError("--peer torch times PyTorch on the CPU: use it without --gpu")
    if cfg.peer == "torch" and importlib.util.find_spec("torch") is None:
        raise BenchmarkError("--peer torch needs PyTorch, which is not a run-time pin: `make setup EXTRAS=test` "
                             "installs it (or run `make benchmark PEER=` without the PyTorch column)")


def run(cfg: argparse.Namespace) -> dict:
    """Every architecture of `cfg.archs` measured (and the data layer where CamVid is given): the result record."""
    check_inputs(cfg)
    start = time.perf_counter()
    check_peer(cfg)
    result: dict = {"machine": machine_info(cfg.gpu),
                    "config": {k: getattr(cfg, k) for k in CONFIG_KEYS} | {"archs": cfg.archs}, "rows": []}
    with tempfile.TemporaryDirectory(prefix="segnet-bench-") as tmp:
        bar = tqdm(cfg.archs, desc="benchmark", unit="arch", file=sys.stderr, disable=not sys.stderr.isatty())
        for arch in bar:
            bar.set_postfix_str(arch)
            t = time.perf_counter()
            row = measure(arch, cfg, Path(tmp))
            result["rows"].append(row)
            log(f"{arch}: fwd {row['forward_ms']:.1f} ms, bwd {row['backward_ms']:.1f} ms, infer "
                f"{row['infer_ms']:.1f} ms, {row['infer_mem_mib']:.0f} / {row['train_mem_mib']:.0f} MiB "
                f"({time.perf_counter() - t:.0f} s)")
    if cfg.peer == "torch":
        result["machine"]["torch"] = torch_info()
    if cfg.camvid is not None:
        result["data_layer"] = time_data_layer(cfg.camvid, cfg.height, cfg.width, cfg.repeats, cfg.warmup, cfg.gpu)
    result["ratios"] = summarise(result["rows"])
    result["seconds"] = time.perf_counter() - start
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def benchmark(cfg: argparse.Namespace) -> dict:
    """`run`, then its report written to `cfg.out` (OUTPUTS, all or none); the folder is checked before the long
    measurements."""
    problem = out_folder_problem(cfg.out)
    if problem:
        raise BenchmarkError(problem)
    result = run(cfg)
    write_outputs(result, cfg.out)
    return result
