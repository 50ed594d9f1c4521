"""tools.evaluate end to end on real CamVid test ground truth: perfect and known-wrong predictions, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segnet_bvlc.dataset import camvid
from segnet_bvlc.evaluation import evaluate
from tests.conftest import ROOT

CAR, ROAD = camvid.CLASSES.index("Car"), camvid.CLASSES.index("Road")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tools.evaluate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def gt_dir(camvid_dir, tmp_path_factory) -> Path:
    """Three CamVid test annotations that contain cars."""
    out = tmp_path_factory.mktemp("gt")
    for _, label in camvid.read_list(camvid_dir, "test"):
        if (np.array(Image.open(label)) == CAR).any():
            shutil.copy(label, out / label.name)
        if len(list(out.iterdir())) == 3:
            break
    return out


def write_preds(gt_dir: Path, out: Path, change=None) -> Path:
    out.mkdir()
    for f in sorted(gt_dir.glob("*.png")):
        lab = np.array(Image.open(f))
        lab = np.where(lab == camvid.VOID, ROAD, lab).astype(np.uint8)  # a network never predicts void
        if change is not None:
            lab = change(lab)
        Image.fromarray(lab).save(out / f.name)
    return out


def present_classes(gt_dir: Path) -> np.ndarray:
    counts = np.zeros(camvid.NUM_CLASSES + 1, np.int64)
    for f in gt_dir.glob("*.png"):
        counts += np.bincount(np.array(Image.open(f)).ravel(), minlength=camvid.NUM_CLASSES + 1)
    return counts[:camvid.NUM_CLASSES]


def test_perfect_prediction_through_the_command_line(gt_dir, tmp_path):
    pred = write_preds(gt_dir, tmp_path / "pred")
    r = run_cli("--pred", str(pred), "--gt", str(gt_dir), "--json", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    n_present = int((present_classes(gt_dir) > 0).sum())
    assert result["global_accuracy"] == 1.0 and result["boundary_f1"] == 1.0
    assert result["class_average_accuracy"] == pytest.approx(n_present / 11)  # absent classes score 0
    assert result["mean_iou"] == pytest.approx(n_present / 11)
    assert [c["name"] for c in result["per_class"]] == camvid.CLASSES
    assert result["num_images"] == 3
    # Human table on stderr, in the paper's Table 2 order.
    rows = [line.split()[0] for line in r.stderr.splitlines()[1:12]]
    assert rows == camvid.PAPER_TABLE2_ORDER
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["global_accuracy"] == 1.0
    assert Image.open(tmp_path / "out" / "confusion_matrix.png").format == "PNG"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["confusion_matrix.png", "metrics.json"]


def test_one_class_relabelled_gives_known_values(gt_dir, tmp_path):
    # Every Car pixel predicted as Road: Car recall and IoU 0, Road IoU = road / (road + car), the rest 1.
    pred = write_preds(gt_dir, tmp_path / "pred",
                       change=lambda lab: np.where(lab == CAR, ROAD, lab).astype(np.uint8))
    counts = present_classes(gt_dir)
    valid, car, road = counts.sum(), counts[CAR], counts[ROAD]
    n_present = int((counts > 0).sum())
    result = evaluate.evaluate_dirs(pred, gt_dir)
    assert result["global_accuracy"] == pytest.approx(1 - car / valid)
    assert result["class_average_accuracy"] == pytest.approx((n_present - 1) / 11)
    assert result["mean_iou"] == pytest.approx((n_present - 2 + road / (road + car)) / 11)
    per = {c["name"]: c for c in result["per_class"]}
    assert per["Car"]["accuracy"] == 0 and per["Car"]["iou"] == 0 and per["Car"]["boundary_f1"] == 0
    assert per["Road"]["accuracy"] == 1 and per["Road"]["iou"] == pytest.approx(road / (road + car))
    # Other classes' masks are untouched, so their boundaries match exactly.
    for name, c in per.items():
        if name not in ("Car", "Road") and c["pixels"]:
            assert c["boundary_f1"] == 1.0, name
    assert per["Road"]["boundary_f1"] < 1.0
    assert result["boundary_f1_by_rule"]["public"] <= result["boundary_f1_by_rule"]["paper"] < 1.0


def test_absent_classes_and_average_rule_are_reported(gt_dir, tmp_path):
    """A class absent from the scored ground truth: the result names it and the rule C and mIoU used."""
    counts = present_classes(gt_dir)
    absent = [name for name, n in zip(camvid.CLASSES, counts) if n == 0]
    assert absent, "the fixture's three images lack at least one class"
    n_present = len(camvid.CLASSES) - len(absent)
    pred = write_preds(gt_dir, tmp_path / "pred",
                       change=lambda lab: np.where(lab == CAR, ROAD, lab).astype(np.uint8))
    r = run_cli("--pred", str(pred), "--gt", str(gt_dir), "--json", "--no-bf")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["absent_classes"] == absent and result["average"] == "all"
    assert result["average_rule"] == "all classes, absent count 0 (compute_test_results.m)"
    assert result["class_average_accuracy"] == pytest.approx((n_present - 1) / 11)
    assert (f"(C and mIoU: all classes, absent count 0 (compute_test_results.m); absent from the ground "
            f"truth: {', '.join(absent)})") in r.stderr
    r = run_cli("--pred", str(pred), "--gt", str(gt_dir), "--json", "--no-bf", "--average", "present")
    result = json.loads(r.stdout)
    assert result["average"] == "present" and result["absent_classes"] == absent
    assert result["class_average_accuracy"] == pytest.approx((n_present - 1) / n_present)
    assert "C and mIoU: present classes only" in r.stderr
    # Every class present: no line under the table.
    full = {"per_class": [{"name": "Sky", "accuracy": 1.0, "iou": 1.0, "boundary_f1": None, "pixels": 5}],
            "global_accuracy": 1.0, "class_average_accuracy": 1.0, "mean_iou": 1.0, "boundary_f1": None,
            "num_images": 1, "absent_classes": [], "average_rule": "x"}
    assert "C and mIoU" not in evaluate.format_table(full)


def test_workers_and_arrays_give_the_same_result(gt_dir, tmp_path):
    pred = write_preds(gt_dir, tmp_path / "pred", change=lambda lab: np.roll(lab, 5, axis=1))
    one = evaluate.evaluate_dirs(pred, gt_dir, workers=1)
    two = evaluate.evaluate_dirs(pred, gt_dir, workers=2)
    files = sorted(gt_dir.glob("*.png"))
    arrays = evaluate.evaluate_arrays((np.array(Image.open(f)), np.array(Image.open(pred / f.name)))
                                      for f in files)
    assert one == two == arrays
    assert 0 < one["boundary_f1"] < 1


def test_table_format(gt_dir, tmp_path):
    result = evaluate.evaluate_dirs(write_preds(gt_dir, tmp_path / "pred"), gt_dir, boundary=False)
    table = evaluate.format_table(result)
    assert table.splitlines()[0].split() == ["class", "accuracy", "IoU", "BF"]
    assert "100.0" in table and "BF not computed" in table


def test_errors_name_the_file(gt_dir, tmp_path):
    pred = write_preds(gt_dir, tmp_path / "pred")
    victim = sorted(pred.glob("*.png"))[1]
    victim.unlink()
    r = run_cli("--pred", str(pred), "--gt", str(gt_dir), "--out", str(tmp_path / "out"))
    assert r.returncode != 0 and victim.name in r.stderr and "missing prediction" in r.stderr
    assert not (tmp_path / "out").exists()

    Image.fromarray(np.zeros((10, 12), np.uint8)).save(victim)
    r = run_cli("--pred", str(pred), "--gt", str(gt_dir))
    assert r.returncode != 0 and victim.name in r.stderr and "differs" in r.stderr

    Image.fromarray(np.zeros((360, 480, 3), np.uint8)).save(victim)
    with pytest.raises(evaluate.EvaluationError, match=victim.name):
        evaluate.evaluate_dirs(pred, gt_dir)

    # Values that are neither a class nor void would count as silent misses: refused, with the values.
    labels = np.zeros((360, 480), np.uint8)
    labels[:2, :3] = 12
    labels[5, 5] = 255
    Image.fromarray(labels).save(victim)
    with pytest.raises(evaluate.EvaluationError, match=rf"{victim.name}: prediction values must be 0..10 or 11 "
                                                      r"\(void\), found 12 \(6 px\), 255 \(1 px\)"):
        evaluate.evaluate_dirs(pred, gt_dir, workers=2)


def test_split_list_locates_the_ground_truth(camvid_dir, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    labels = [label for _, label in camvid.read_list(camvid_dir, "test")]
    for label in labels:
        shutil.copy(label, pred / label.name)
    result = evaluate.score_predictions(pred, camvid_dir, "test", boundary=False)
    assert result["num_images"] == len(labels) == 233
    assert result["global_accuracy"] == 1.0
    # Every class occurs in the CamVid test split, so C = mIoU = 1 (and the /11 rule equals nanmean).
    assert result["class_average_accuracy"] == 1.0 and result["mean_iou"] == 1.0


@pytest.mark.slow
def test_full_test_split_timing(camvid_dir, tmp_path):
    """The whole test split, BF included, GT vs GT shifted by (2, 3) px; prints the time (not asserted)."""
    pairs = camvid.read_list(camvid_dir, "test")
    pred = tmp_path / "pred"
    pred.mkdir()
    for _, label in pairs:
        lab = np.roll(np.array(Image.open(label)), (2, 3), axis=(0, 1))
        Image.fromarray(np.where(lab == camvid.VOID, ROAD, lab).astype(np.uint8)).save(pred / label.name)
    t0 = time.perf_counter()
    result = evaluate.score_predictions(pred, camvid_dir, "test", workers=min(2, os.cpu_count() or 1))
    print(f"\nfull CamVid test split (233 images, BF included): {time.perf_counter() - t0:.1f} s")
    print(evaluate.format_table(result))
    assert 0.5 < result["boundary_f1"] < 1
