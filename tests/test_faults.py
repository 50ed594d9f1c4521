"""Fault injection: runs killed at every kind of point finish when the same command runs again, with the same
weights and metrics as a run that was never interrupted.

Kill points are deterministic: SEGNET_FAULT=NAME:COUNT makes the process kill itself (SIGKILL unless
SEGNET_FAULT_SIGNAL says otherwise) when it reaches `segnet_bvlc.core.faults.fault_point(NAME, COUNT)`. The oracle is an
uninterrupted run of the same command: on the CPU Caffe is deterministic, so the final weights must be the same
bytes and the metrics the same numbers. Torn files are made by truncating real snapshots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from caffe.proto import caffe_pb2

from segnet_bvlc.training.snapshots import relink_solverstate
from tests.conftest import ROOT

H, W = 45, 60


@pytest.fixture(scope="module")
def lmdb(camvid_lmdb):
    return camvid_lmdb(H, W, train=6, val=2)


def train_cmd(lmdb: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tools.train", "--run", str(run), "--arch", "segnet-basic",
            "--train-source", str(lmdb / "train"), "--val-source", str(lmdb / "val"), "--height", str(H),
            "--width", str(W), "--batch", "2", "--max-iter", "8", "--snapshot-every", "2", "--val-every", "4",
            "--log-every", "1", "--lr", "0.01", "--seed", "5", *extra]


def run(cmd: list[str], fault: str | None = None, sig: str = "SIGKILL", timeout: int = 600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGNET_FAULT")}
    env["GLOG_minloglevel"] = "2"
    if fault:
        env.update(SEGNET_FAULT=fault, SEGNET_FAULT_SIGNAL=sig)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


def run_ok(cmd: list[str]):
    result = run(cmd)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def weights_of(path: Path) -> dict:
    """Every layer's blobs, as bytes (a training net's caffemodel also records the data layer's start_iter)."""
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    return {layer.name: [np.asarray(b.data, dtype=np.float32).tobytes() for b in layer.blobs]
            for layer in net.layer if layer.blobs}


def outcome(run_dir: Path) -> dict:
    """What must not depend on interruptions: weights, the best model's choice and every logged number."""
    state = json.loads((run_dir / "state.json").read_text())
    records = [json.loads(line) for line in (run_dir / "scalars.jsonl").read_text().splitlines()]
    return {
        "best": (run_dir / "best.caffemodel").read_bytes(),
        "last": weights_of(run_dir / "last.caffemodel"),
        "best_iteration": state["best_iteration"], "best_G": state["best_val_global_accuracy"],
        "losses": [(r["iteration"], r["loss"]) for r in records if "loss" in r],
        "validations": [(r["iteration"], r["val_global_accuracy"], r["val_mean_iou"]) for r in records
                        if "val_global_accuracy" in r],
    }


@pytest.fixture(scope="module")
def reference(lmdb, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("faults-ref") / "run"
    run_ok(train_cmd(lmdb, run_dir))
    return outcome(run_dir)


# (fault point, signal, exit status of the interrupted command)
TRAIN_FAULTS = [
    ("step:3", "SIGKILL", -9),                    # between snapshots
    ("snapshot-written:4", "SIGKILL", -9),        # Caffe wrote the snapshot, nothing moved into place
    ("snapshot-model-moved:4", "SIGKILL", -9),    # weights in place, solverstate not yet
    ("validation-statistics:4", "SIGKILL", -9),   # in the middle of a validation
    ("snapshot-written:8", "SIGKILL", -9),        # the last snapshot, before the final validation
    ("validation-statistics:8", "SIGKILL", -9),   # the final validation
    ("step:5", "SIGTERM", 130),                   # a polite stop: snapshot, exit 130
    ("step:2", "SIGINT", 130),                    # Ctrl-C
]


@pytest.mark.parametrize("fault,sig,status", TRAIN_FAULTS, ids=[f"{f}-{s}" for f, s, _ in TRAIN_FAULTS])
def test_training_killed_anywhere_finishes_identically(lmdb, reference, tmp_path, fault, sig, status):
    run_dir = tmp_path / "run"
    cmd = train_cmd(lmdb, run_dir)
    killed = run(cmd, fault=fault, sig=sig)
    assert killed.returncode == status, killed.stderr[-2000:]
    assert not (run_dir / "state.json").is_file() or not json.loads((run_dir / "state.json").read_text()).get(
        "complete")
    again = run_ok(cmd)
    assert "resumed" in again.stderr or fault.startswith("step:2")
    assert outcome(run_dir) == reference
    # and a third run of a finished folder changes nothing and succeeds
    third = run(cmd)
    assert third.returncode == 0 and outcome(run_dir) == reference


def test_torn_newest_snapshot_is_skipped_and_named(lmdb, reference, tmp_path):
    run_dir = tmp_path / "run"
    cmd = train_cmd(lmdb, run_dir)
    assert run(cmd, fault="step:7").returncode == -9
    snaps = run_dir / "snapshots"
    state6 = snaps / "iter_iter_6.solverstate"
    data = state6.read_bytes()
    state6.write_bytes(data[: len(data) // 2])                 # torn solverstate
    model4 = snaps / "iter_iter_4.caffemodel"
    shutil.copyfile(model4, snaps / "keep.caffemodel")
    (snaps / ".writing").mkdir(exist_ok=True)
    (snaps / ".writing" / "iter_iter_8.caffemodel").write_bytes(b"half")  # debris of a kill mid-write
    again = run_ok(cmd)
    assert "skipped snapshot iter_iter_6.solverstate" in again.stderr
    assert "from iter_iter_4.solverstate" in again.stderr
    assert outcome(run_dir) == reference
    assert not any((snaps / ".writing").iterdir())


def test_truncated_snapshot_weights_fall_back(lmdb, reference, tmp_path):
    run_dir = tmp_path / "run"
    cmd = train_cmd(lmdb, run_dir)
    assert run(cmd, fault="step:7").returncode == -9
    model6 = run_dir / "snapshots" / "iter_iter_6.caffemodel"
    model6.write_bytes(model6.read_bytes()[:1000])
    again = run_ok(cmd)
    assert "skipped snapshot iter_iter_6.solverstate" in again.stderr and "iter_iter_6.caffemodel" in again.stderr
    assert outcome(run_dir) == reference


def test_no_intact_snapshot_starts_over_from_the_seed(lmdb, reference, tmp_path):
    """When every snapshot is torn the run starts again from its seeded fillers, as the first start did."""
    run_dir = tmp_path / "run"
    cmd = train_cmd(lmdb, run_dir)
    assert run(cmd, fault="step:3").returncode == -9
    only = run_dir / "snapshots" / "iter_iter_2.solverstate"
    only.write_bytes(only.read_bytes()[:50])
    again = run_ok(cmd)
    assert "skipped snapshot iter_iter_2.solverstate" in again.stderr
    assert outcome(run_dir) == reference


def test_run_folder_is_a_contract(lmdb, tmp_path):
    run_dir = tmp_path / "run"
    bad = run(train_cmd(lmdb, run_dir, "--max-iter", "-5"))
    assert bad.returncode == 2 and "--max-iter" in bad.stderr and not run_dir.exists()
    assert run(train_cmd(lmdb, run_dir), fault="step:3").returncode == -9
    other = run(train_cmd(lmdb, run_dir, "--lr", "0.02"))
    assert other.returncode == 2 and "base_lr: 0.01 -> 0.02" in other.stderr and "--restart" in other.stderr
    restarted = run(train_cmd(lmdb, run_dir, "--lr", "0.02", "--restart"))
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert json.loads((run_dir / "config.json").read_text())["base_lr"] == 0.02
    missing = run([sys.executable, "-m", "tools.train", "--run", str(tmp_path / "none"), "--resume"])
    assert missing.returncode == 2 and "not a run folder" in missing.stderr and not (tmp_path / "none").exists()
    # a start that fails (a corrupt --init-weights) leaves no config.json, so the corrected command runs
    junk = tmp_path / "vgg.caffemodel"
    junk.write_bytes(b"\x00" * 100)
    failed = run(train_cmd(lmdb, tmp_path / "r2", "--init-weights", str(junk), "--max-iter", "2"))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert not (tmp_path / "r2" / "config.json").exists()
    assert run(train_cmd(lmdb, tmp_path / "r2", "--max-iter", "2")).returncode == 0


def pipeline_cmd(camvid: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tools.camvid_pipeline", "train", "--arch", "segnet-basic", "--camvid",
            str(camvid), "--run", str(run_dir), "--max-iter", "2", "--batch", "2", "--height", str(H), "--width",
            str(W), "--limit", "3"]


def pipeline_outcome(run_dir: Path) -> dict:
    m = json.loads((run_dir / "eval" / "test" / "metrics.json").read_text())
    return {"inference": (run_dir / "inference.caffemodel").read_bytes(),
            "folded": (run_dir / "deploy_folded.caffemodel").read_bytes(),
            "metrics": {k: m[k] for k in ("global_accuracy", "class_average_accuracy", "mean_iou", "boundary_f1")},
            "per_class": m["per_class"],
            "predictions": sorted(p.read_bytes() for p in (run_dir / "eval" / "test" / "predictions").iterdir())}


@pytest.fixture(scope="module")
def pipeline_reference(camvid_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pipeline-ref") / "run"
    run_ok(pipeline_cmd(camvid_dir, run_dir))
    return pipeline_outcome(run_dir)


PIPELINE_FAULTS = [
    ("lmdb:3", "SIGKILL", -9),          # converting the training split
    ("step:1", "SIGTERM", 130),         # training, stopped politely
    ("bn-stats:1", "SIGKILL", -9),      # after the inference weights, before evaluation
    ("evaluate:2", "SIGKILL", -9),      # half the test predictions written
    ("evaluate:1", "SIGINT", 130),      # Ctrl-C during evaluation: one line, no traceback
]


@pytest.mark.parametrize("fault,sig,status", PIPELINE_FAULTS, ids=[f"{f}-{s}" for f, s, _ in PIPELINE_FAULTS])
def test_pipeline_killed_anywhere_finishes_identically(camvid_dir, pipeline_reference, tmp_path, fault, sig,
                                                       status):
    run_dir = tmp_path / "run"
    cmd = pipeline_cmd(camvid_dir, run_dir)
    killed = run(cmd, fault=fault, sig=sig)
    assert killed.returncode == status, killed.stderr[-2000:]
    assert "Traceback" not in killed.stderr
    assert not (run_dir / "eval" / "test" / "metrics.json").exists()
    run_ok(cmd)
    assert pipeline_outcome(run_dir) == pipeline_reference


@pytest.mark.parametrize("name", ["/r/snapshots/iter_iter_8.caffemodel", "/long/" + "p" * 300 + ".caffemodel"])
def test_solverstate_relink_keeps_everything_else(tmp_path, name):
    """The snapshot's solverstate is relinked by splicing bytes; protobuf's own parser is the oracle."""
    state = caffe_pb2.SolverState(iter=7, learned_net="/tmp/.writing/iter_iter_7.caffemodel", current_step=2)
    for n in (3, 70000):
        blob = state.history.add()
        blob.shape.dim.append(n)
        blob.data.extend(np.linspace(-1, 1, n, dtype=np.float32))
    (tmp_path / "a").write_bytes(state.SerializeToString())
    relink_solverstate(tmp_path / "a", tmp_path / "b", name)
    got = caffe_pb2.SolverState()
    got.ParseFromString((tmp_path / "b").read_bytes())
    state.learned_net = name
    assert got == state


def no_validation(cmd: list[str]) -> list[str]:
    i = cmd.index("--val-source")
    return cmd[:i] + cmd[i + 2:]


def test_validation_leaves_the_training_untouched(lmdb, reference, tmp_path):
    """A validation releases the solver and restores it from the snapshot; a run that never validates (so never
    restores) is the oracle for the weights and losses."""
    run_dir = tmp_path / "run"
    result = run(no_validation(train_cmd(lmdb, run_dir)))
    assert result.returncode == 0, result.stderr[-2000:]
    plain = outcome_without_validation(run_dir)
    assert plain["last"] == reference["last"] and plain["losses"] == reference["losses"]


def outcome_without_validation(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "scalars.jsonl").read_text().splitlines()]
    return {"last": weights_of(run_dir / "last.caffemodel"),
            "losses": [(r["iteration"], r["loss"]) for r in records if "loss" in r]}


def test_iter_size_run_resumes_identically(lmdb, tmp_path):
    """With --iter-size 2 the data layer counts two forward passes per iteration; a resume must continue the
    batch sequence there. An uninterrupted run without validation (never rebuilt) is the oracle."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    extra = ("--iter-size", "2", "--batch", "1")
    assert run(no_validation(train_cmd(lmdb, straight, *extra))).returncode == 0
    assert run(no_validation(train_cmd(lmdb, killed, *extra)), fault="step:5").returncode == -9
    again = run(no_validation(train_cmd(lmdb, killed, *extra)))
    assert again.returncode == 0, again.stderr[-2000:]
    assert outcome_without_validation(killed) == outcome_without_validation(straight)
