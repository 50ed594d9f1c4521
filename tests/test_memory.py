"""Memory: a validation adds little to the training's peak, the pre-start estimate agrees with peaks the kernel
measured, and a run that cannot fit is refused before anything is written.

Peaks are the kernel's own figures (getrusage's ru_maxrss and /proc/self/status, recorded by tools.train in each
validation record), taken in a child process, at the paper's batch of 12 at a quarter of the resolution: column
buffers and activations both scale with H×W, so the ratios are those of the paper preset.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segnet_bvlc.training.config import TrainConfig
from segnet_bvlc.training.memory import estimate_run, lmdb_cache_bytes
from tests.conftest import ROOT

H, W, BATCH = 90, 120, 12


@pytest.fixture(scope="module")
def lmdb(camvid_lmdb):
    return camvid_lmdb(H, W, train=BATCH, val=2)


def train_cmd(lmdb: Path, run: Path, arch: str) -> list[str]:
    return [sys.executable, "-m", "tools.train", "--run", str(run), "--arch", arch,
            "--train-source", str(lmdb / "train"), "--val-source", str(lmdb / "val"), "--height", str(H),
            "--width", str(W), "--batch", str(BATCH), "--max-iter", "1", "--val-every", "1", "--lr", "0.01",
            "--class-weights", "none"]


def validation_record(lmdb: Path, run: Path, arch: str) -> dict:
    env = dict(os.environ, GLOG_minloglevel="2")
    result = subprocess.run(train_cmd(lmdb, run, arch), cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    return next(r for r in records if "val_global_accuracy" in r)


@pytest.fixture(scope="module")
def measured(lmdb, tmp_path_factory):
    root = tmp_path_factory.mktemp("memory-runs")
    return {arch: (validation_record(lmdb, root / arch, arch), root / arch)
            for arch in ("segnet-basic", "fcn-basic", "bilinear-interpolation")}


@pytest.mark.parametrize("arch", ["segnet-basic", "fcn-basic", "bilinear-interpolation"])
def test_validation_adds_little_to_the_training_peak(measured, arch):
    v, _ = measured[arch]
    training = v["peak_rss_before_mb"] - v["rss_base_mb"]
    extra = v["peak_rss_after_mb"] - v["peak_rss_before_mb"]
    assert training > 100, v  # the training net really was allocated
    assert extra < 0.25 * training, f"validation added {extra:.0f} MB to a training peak of {training:.0f} MB"


@pytest.mark.parametrize("arch", ["segnet-basic", "fcn-basic", "bilinear-interpolation"])
def test_estimate_agrees_with_the_measured_training_peak(lmdb, measured, arch):
    v, run = measured[arch]
    cfg = TrainConfig.load(run / "config.json")
    est = estimate_run(cfg, run / "net" / "train.prototxt", run / "net" / "deploy.prototxt")
    measured_mb = v["peak_rss_before_mb"] - v["rss_base_mb"] - lmdb_cache_bytes(lmdb / "train") / 2 ** 20
    estimated_mb = est["training"] / 2 ** 20
    assert 0.75 * measured_mb < estimated_mb < 1.3 * measured_mb, (estimated_mb, measured_mb)


def test_a_run_that_cannot_fit_is_refused_before_it_starts(lmdb, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, GLOG_minloglevel="2", SEGNET_MEMORY_LIMIT_GB="0.3")
    result = subprocess.run(train_cmd(lmdb, run, "segnet-basic"), cwd=ROOT, capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train: error: this run needs about") and "--batch" in last and "--iter-size" in last
    assert not (run / "config.json").exists() and not (run / "snapshots").exists()


def test_readme_memory_figures_are_the_committed_measurements():
    """Every row of the README's memory table is a row of results/memory/memory.json (make benchmark-memory)."""
    measured = json.loads((ROOT / "results" / "memory" / "memory.json").read_text())["rows"]
    table = {(r["preset"], r["arch"]): r for r in measured if "error" not in r}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Results"):readme.index("## Docker")]
    rows = re.findall(r"^\| `(\w+)` \| `([\w-]+)` \| (\d+) \| ([\d,]+) MB \| ([\d,]+) MB \|", section, re.M)
    assert len(rows) >= 3
    for preset, arch, batch, training, with_validation in rows:
        r = table[(preset, arch)]
        assert (int(batch), int(training.replace(",", "")), int(with_validation.replace(",", ""))) == \
            (r["batch"], r["training_mb"], r["with_validation_mb"])
