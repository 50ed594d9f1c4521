"""Peak memory of training, and of training with a validation, for every architecture under every preset
(`python -m tools.benchmark_memory`; what is measured and how: that command's docstring and docs/memory.md).

Each (preset, architecture) is one child `tools.train` run; `measure_all` writes memory.json and memory.md after
every measurement and measures only what they lack, so an interrupted run is finished by the same command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prototxt import ARCHS
from prototxt.protocol import settings

from segnet_bvlc.benchmark.machine import memory_machine
from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.log import logger
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.lmdb_data.convert import convert
from segnet_bvlc.training.config import TrainConfig
from segnet_bvlc.training.memory import estimate_run

TOOL = "benchmark_memory"
log = logger(TOOL).info
MEASURED_PRESETS = ("quick", "paper")


def measure(arch: str, preset: str, camvid: Path, work: Path) -> dict:
    """One child run of tools.train; its training and validation peaks (MB) and the estimate (an error row where
    the child failed)."""
    p = settings(arch, preset)
    lmdb = work / f"lmdb-{p['height']}x{p['width']}-{p['batch']}"
    for split, n in (("train", p["batch"]), ("val", 1)):
        if not (lmdb / split / "meta.json").is_file():
            convert(camvid, split, lmdb / split, height=p["height"], width=p["width"], limit=n)
    run = work / f"{preset}-{arch}"
    cmd = [sys.executable, "-m", "tools.train", "--run", str(run), "--restart", "--arch", arch,
           "--train-source", str(lmdb / "train"), "--val-source", str(lmdb / "val"), "--height", str(p["height"]),
           "--width", str(p["width"]), "--batch", str(p["batch"]), "--max-iter", "1", "--val-every", "1",
           "--lr", str(p["base_lr"]), "--class-weights", p["class_weights"], "--no-memory-check"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    child = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    row = {"preset": preset, "arch": arch, "height": p["height"], "width": p["width"], "batch": p["batch"],
           "seconds": round(seconds, 1), "load_before": load, "load_after": os.getloadavg()[0]}
    if child.returncode != 0:
        reason = (f"killed by signal {-child.returncode} (out of memory?)" if child.returncode < 0
                  else child.stderr.strip().splitlines()[-1] if child.stderr.strip() else f"exit {child.returncode}")
        log(f"[memory] {preset} {arch}: failed: {reason}")
        return {**row, "error": reason}
    records = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    v = next(r for r in records if "val_global_accuracy" in r)
    cfg = TrainConfig.load(run / "config.json")
    est = estimate_run(cfg, run / "net" / "train.prototxt", run / "net" / "deploy.prototxt")
    row.update(base_mb=round(v["rss_base_mb"]), training_mb=round(v["peak_rss_before_mb"] - v["rss_base_mb"]),
               with_validation_mb=round(v["peak_rss_after_mb"] - v["rss_base_mb"]),
               estimate_training_mb=round((est["training"] + est["data"]) / 2 ** 20),
               estimate_validation_mb=round((est["validation"] + est["data"]) / 2 ** 20))
    log(f"[memory] {preset} {arch}: training {row['training_mb']} MB, with validation {row['with_validation_mb']} MB "
        f"(estimate {row['estimate_training_mb']} MB), {seconds:.0f} s, load {load:.1f}")
    return row


def markdown(result: dict) -> str:
    lines = ["# Peak memory of training and validation (host RSS, MB)", "",
             f"Measured by `python -m tools.benchmark_memory` on {result['machine']['processor']}, "
             f"{result['machine']['cpus']} CPUs, {result['machine']['memory_gb']:.0f} GB; commit "
             f"{result['machine']['git_commit'][:10]}. Peaks are resident memory above the child's memory before "
             "its first net (Python, Caffe, the libraries); the LMDB RAM cache of the measured batch is included. "
             "Load average is the 1-minute figure when the child started (memory does not depend on load; time "
             "does).", "",
             "| preset | architecture | input | batch | training | with validation | validation adds | estimate "
             "(training) | estimate / measured | time s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['arch']} | {r['height']}×{r['width']} | {r['batch']} | "
                         f"{r['error']} | | | | | {r['seconds']:.0f} | {r['load_before']:.1f} |")
            continue
        extra = r["with_validation_mb"] - r["training_mb"]
        lines.append(f"| {r['preset']} | {r['arch']} | {r['height']}×{r['width']} | {r['batch']} | "
                     f"{r['training_mb']:,} | {r['with_validation_mb']:,} | {extra:,} "
                     f"({100 * extra / max(r['training_mb'], 1):.0f} %) | {r['estimate_training_mb']:,} | "
                     f"{r['estimate_training_mb'] / max(r['training_mb'], 1):.2f} | {r['seconds']:.0f} | "
                     f"{r['load_before']:.1f} |")
    return "\n".join(lines) + "\n"


def measure_all(presets: list[str], archs: list[str], camvid: Path, out: Path, work: Path) -> Path:
    """Every (preset, architecture) not yet measured in OUT/memory.json, each written there (and to memory.md) as
    soon as it is measured; returns memory.json's path. An earlier failure is measured again."""
    out_json = out / "memory.json"
    result = json.loads(out_json.read_text()) if out_json.is_file() else {"rows": []}
    done = {(r["preset"], r["arch"]) for r in result["rows"] if "error" not in r}
    result["rows"] = [r for r in result["rows"] if (r["preset"], r["arch"]) in done]
    result["machine"] = memory_machine()
    for preset in presets:
        for arch in archs:
            if (preset, arch) in done:
                continue
            result["rows"].append(measure(arch, preset, camvid.resolve(), work.resolve()))
            result["rows"].sort(key=lambda r: (MEASURED_PRESETS.index(r["preset"]), ARCHS.index(r["arch"])))
            write_text_atomic(out_json, json.dumps(result, indent=2))
            write_text_atomic(out / "memory.md", markdown(result))
    return out_json
