"""Training on real CamVid at a tiny size: the loss falls, resume follows the same trajectory, a kill leaves a
usable snapshot, and the whole `make camvid-train` pipeline runs end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import caffe
import numpy as np
import pytest

from tests.conftest import ROOT
from tools.train import TrainConfig, train

H, W = 45, 60  # four 2x2 poolings: 45x60 -> 23x30 -> 12x15 -> 6x8 -> 3x4


@pytest.fixture(scope="module")
def tiny_lmdb(camvid_lmdb):
    return camvid_lmdb(H, W, train=8, val=3)


def tiny_config(lmdb_root: Path, **kw) -> TrainConfig:
    base = dict(arch="segnet-basic", train_source=str(lmdb_root / "train"), val_source=str(lmdb_root / "val"),
                height=H, width=W, batch=2, max_iter=8, base_lr=0.01, log_every=1, snapshot_every=4, val_every=4,
                class_weights="published", seed=3)
    base.update(kw)
    return TrainConfig(**base)


def losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    return {r["iteration"]: r["loss"] for r in records if "loss" in r}


def test_a_few_iterations_lower_the_loss(tiny_lmdb, tmp_path):
    run = tmp_path / "run"
    state = train(tiny_config(tiny_lmdb, max_iter=16, val_every=8, snapshot_every=8, base_lr=0.05), run, log=lambda m: None)
    curve = losses(run)
    first, last = np.mean([curve[i] for i in range(1, 5)]), np.mean([curve[i] for i in range(13, 17)])
    assert last < first
    assert state["iteration"] == 16 and state["best_iteration"] in (8, 16)
    for name in ("config.json", "provenance.json", "net/train.prototxt", "net/deploy.prototxt", "net/solver.prototxt",
                 "best.caffemodel", "last.caffemodel", "last.solverstate", "curve.png", "state.json", "train.log"):
        assert (run / name).is_file(), name
    provenance = json.loads((run / "provenance.json").read_text())
    assert "bvlc-99bd997" in provenance["caffe"]["build"] and provenance["packages"]["numpy"]


def test_resume_continues_the_same_trajectory(tiny_lmdb, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(tiny_config(tiny_lmdb), straight, log=lambda m: None)
    train(tiny_config(tiny_lmdb, max_iter=4), resumed, log=lambda m: None)
    state = train(TrainConfig(), resumed, resume=True, max_iter=8, log=lambda m: None)
    assert state["iteration"] == 8
    a, b = losses(straight), losses(resumed)
    assert sorted(b) == list(range(1, 9))
    np.testing.assert_allclose([b[i] for i in range(5, 9)], [a[i] for i in range(5, 9)], rtol=1e-4)


def test_sigterm_writes_a_usable_snapshot(tiny_lmdb, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tools.train", "--run", str(run), "--arch", "segnet-basic",
           "--train-source", str(tiny_lmdb / "train"), "--height", str(H), "--width", str(W), "--batch", "2",
           "--max-iter", "100000", "--snapshot-every", "100000", "--log-every", "1", "--lr", "0.01"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "scalars.jsonl").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "SIGTERM" in err
    state = json.loads((run / "state.json").read_text())
    assert state["stopped_by"] == "SIGTERM"
    net = caffe.Net(str(run / "net" / "deploy.prototxt"), caffe.TEST, weights=str(run / "last.caffemodel"))
    assert np.isfinite(net.forward()["prob"]).all()
    resumed = train(TrainConfig(), run, resume=True, max_iter=state["iteration"] + 1, log=lambda m: None)
    assert resumed["iteration"] == state["iteration"] + 1


def test_bad_arguments_are_one_line_errors(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "tools.train", "--run", str(tmp_path / "r"), *args],
                              cwd=ROOT, capture_output=True, text=True)

    missing = run("--train-source", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "nowhere" in missing.stderr and "LMDB" in missing.stderr
    no_source = run()
    assert no_source.returncode != 0 and "--train-source" in no_source.stderr


def test_pipeline_end_to_end(camvid_dir, tmp_path):
    """`make camvid-train` in miniature: LMDBs, training, BN statistics, test metrics, all in the run folder."""
    run = tmp_path / "run"
    env = dict(os.environ, GLOG_minloglevel="2")
    result = subprocess.run(
        [sys.executable, "-m", "tools.camvid_pipeline", "train", "--arch", "segnet-basic", "--camvid", str(camvid_dir),
         "--run", str(run), "--max-iter", "2", "--batch", "2", "--height", str(H), "--width", str(W), "--limit", "3",
         "--json"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    metrics = out["metrics"]
    for key in ("global_accuracy", "class_average_accuracy", "mean_iou", "boundary_f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert len(metrics["per_class"]) == 11
    for name in ("inference.caffemodel", "deploy_folded.caffemodel", "deploy_folded.prototxt", "eval/test/metrics.json",
                 "eval/test/confusion.png", "eval/test/metrics.txt", "timings.json", "lmdb/train/meta.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "eval" / "test" / "predictions").glob("*.png"))) == 3
    assert "Road" in result.stderr  # the per-class table is printed


def test_camvid_test_scores_at_the_training_resolution(camvid_dir, tmp_path):
    """`make camvid-test` takes the resolution from the weights' run folder, or refuses when it cannot know it."""
    run = tmp_path / "run"
    env = dict(os.environ, GLOG_minloglevel="2")
    base = [sys.executable, "-m", "tools.camvid_pipeline"]
    trained = subprocess.run(base + ["train", "--camvid", str(camvid_dir), "--run", str(run), "--max-iter", "1",
                                     "--batch", "2", "--height", str(H), "--width", str(W), "--limit", "2"],
                             cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    scored = subprocess.run(base + ["test", "--camvid", str(camvid_dir), "--run", str(tmp_path / "t"), "--weights",
                                    str(run / "inference.caffemodel"), "--limit", "2", "--json"],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert f"trained at {H}x{W}" in scored.stderr
    assert json.loads(scored.stdout)["model"] == str(run / "net" / "deploy.prototxt")
    loose = tmp_path / "elsewhere.caffemodel"
    loose.write_bytes((run / "inference.caffemodel").read_bytes())
    refused = subprocess.run(base + ["test", "--camvid", str(camvid_dir), "--run", str(tmp_path / "u"), "--weights",
                                     str(loose)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert refused.returncode == 2 and "cannot tell the resolution" in refused.stderr
    assert "DEPLOY=" in refused.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("arch,lr,weights", [
    ("segnet", 1e-3, "none"),            # the paper's deep benchmark: SGD lr 1e-3, no class balancing (§4, Table 3)
    ("segnet-basic", 0.1, "published"),  # Table 1: lr 0.1, median-frequency balancing
])
def test_train_defaults_follow_the_architectures_protocol(tiny_lmdb, tmp_path, arch, lr, weights):
    """Settings the command line leaves out come from the architecture's protocol, not from Table 1's for all."""
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "tools.train", "--run", str(run), "--arch", arch, "--train-source",
                             str(tiny_lmdb / "train"), "--height", str(H), "--width", str(W), "--batch", "2",
                             "--max-iter", "1"], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, GLOG_minloglevel="2"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert (config["base_lr"], config["class_weights"]) == (lr, weights)
    solver = (run / "net" / "solver.prototxt").read_text()
    assert f"base_lr: {lr:g}" in solver
    assert ("InfogainLoss" in (run / "net" / "train.prototxt").read_text()) == (weights != "none")
