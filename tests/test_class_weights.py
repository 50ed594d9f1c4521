"""tools.class_weights: a hand-computed case, the real CamVid train split, and the InfogainLoss binaryproto."""

from __future__ import annotations

import json
import subprocess
import sys

import caffe
import numpy as np
import pytest
import torch
from caffe import layers as L
from PIL import Image

from segnet_bvlc.dataset.camvid import CLASSES, HEIGHT, NUM_CLASSES, PUBLISHED_WEIGHTS, VOID, WIDTH
from segnet_bvlc.dataset.class_weights import (
    PUBLISHED_PROTO,
    RECOMPUTED_JSON,
    RECOMPUTED_PROTO,
    compute,
    label_statistics,
    median_frequency_weights,
    read_infogain,
    write_infogain,
)
from tests.conftest import ROOT, net_from_spec


def _tiny_labels():
    # Three 2x4 images (8 pixels each).
    a = np.array([[0, 0, 0, 1], [1, 1, 11, 11]])        # sky 3, building 3, void 2
    b = np.array([[0, 2, 2, 2], [2, 2, 3, 3]])          # sky 1, pole 5, road 2
    c = np.array([[4, 5, 6, 7], [8, 9, 10, 11]])        # classes 4..10 once each, void 1
    return [a, b, c]


def test_hand_computed_statistics_and_weights():
    stats = label_statistics(_tiny_labels())
    assert stats["pixel_counts"].tolist() == [4, 3, 5, 2, 1, 1, 1, 1, 1, 1, 1, 3]
    assert stats["image_counts"].tolist() == [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    assert stats["present_total"].tolist() == [16, 8, 8, 8] + [8] * 7 + [16]
    assert stats["present_labelled"].tolist() == [14, 6, 8, 8] + [7] * 7 + [13]
    freq, weights, median = median_frequency_weights(stats["pixel_counts"], stats["present_total"])
    # freq = [4/16, 3/8, 5/8, 2/8, 1/8 x 7]; sorted: 1/8 x7, 1/4, 1/4, 3/8, 5/8 -> 6th smallest = 1/8.
    np.testing.assert_allclose(freq, [0.25, 0.375, 0.625, 0.25] + [0.125] * 7)
    assert median == 0.125
    np.testing.assert_allclose(weights, [0.5, 1 / 3, 0.2, 0.5] + [1.0] * 7)
    _, weights_labelled, median_labelled = median_frequency_weights(stats["pixel_counts"], stats["present_labelled"])
    assert median_labelled == pytest.approx(1 / 7)
    np.testing.assert_allclose(weights_labelled, [(1 / 7) / (4 / 14), (1 / 7) / (3 / 6), (1 / 7) / (5 / 8),
                                                  (1 / 7) / (2 / 8)] + [1.0] * 7)


def test_absent_class_gets_weight_zero():
    counts = [10, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0]
    _, weights, _ = median_frequency_weights(counts, [100] * 12)
    assert weights[1] == 0 and np.isfinite(weights).all()


def test_tiny_camvid_folder_end_to_end(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    lines = []
    for i, label in enumerate(_tiny_labels()):
        Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(tmp_path / "train" / f"{i}.png")
        Image.fromarray(label.astype(np.uint8)).save(tmp_path / "trainannot" / f"{i}.png")
        lines.append(f"/SegNet/CamVid/train/{i}.png /SegNet/CamVid/trainannot/{i}.png")
    (tmp_path / "train.txt").write_text("\n".join(lines))
    result = compute(tmp_path, progress=False)
    assert result["pixel_counts"] == [4, 3, 5, 2, 1, 1, 1, 1, 1, 1, 1, 3]
    np.testing.assert_allclose(result["median_frequency"], [0.5, 1 / 3, 0.2, 0.5] + [1.0] * 7, atol=1e-6)


@pytest.fixture(scope="module")
def camvid_train(camvid_dir):
    return compute(camvid_dir, "train", progress=False)


def test_real_camvid_counts(camvid_train):
    counts = camvid_train["pixel_counts"]
    assert len(counts) == VOID + 1 and sum(counts) == 367 * HEIGHT * WIDTH
    assert camvid_train["images"] == 367 and camvid_train["classes"] == CLASSES
    assert camvid_train["published"] == PUBLISHED_WEIGHTS
    weights = np.array(camvid_train["median_frequency"])
    assert len(weights) == NUM_CLASSES and np.sum(np.isclose(weights, 1.0)) == 1  # the median class
    # Close to the published weights except SignSymbol (~3.5 vs 9.6446, a known gap: see the module docstring).
    ratio = weights / np.array(PUBLISHED_WEIGHTS)
    others = np.delete(ratio, CLASSES.index("SignSymbol"))
    assert np.all((others > 0.8) & (others < 1.3)) and ratio[CLASSES.index("SignSymbol")] < 0.5


def test_committed_files_match_recomputation(camvid_train):
    committed = json.loads(RECOMPUTED_JSON.read_text())
    assert committed["pixel_counts"] == camvid_train["pixel_counts"]
    assert committed["median_frequency"] == camvid_train["median_frequency"]
    np.testing.assert_allclose(read_infogain(RECOMPUTED_PROTO), np.diag(camvid_train["median_frequency"]),
                               rtol=1e-6)
    np.testing.assert_allclose(read_infogain(PUBLISHED_PROTO), np.diag(PUBLISHED_WEIGHTS), rtol=1e-6)


def test_cli_json(camvid_dir, tmp_path):
    out = tmp_path / "h.binaryproto"
    run = subprocess.run([sys.executable, "-m", "tools.class_weights", "--camvid", str(camvid_dir), "--json",
                          "--write-infogain", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert {"classes", "pixel_counts", "median_frequency", "published"} <= set(result)
    assert "denominator=total" in run.stderr and "denominator=labelled" in run.stderr
    np.testing.assert_allclose(np.diag(read_infogain(out)), result["median_frequency"], rtol=1e-6)


def test_infogain_loss_with_written_h_is_the_class_weighted_softmax(tmp_path):
    """BVLC InfogainLoss(H = diag(w), ignore 11) == caffe-segnet's weighted SoftmaxWithLoss == torch sum / N_valid."""
    weights = np.array(PUBLISHED_WEIGHTS, np.float32)
    path = write_infogain(weights, tmp_path / "h.binaryproto")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 11, 3, 4)).astype(np.float32)
    labels = rng.integers(0, 12, size=(2, 1, 3, 4)).astype(np.float32)
    labels[0, 0, 0, :] = VOID
    n = caffe.NetSpec()
    n.score = L.Input(shape=dict(dim=list(scores.shape)))
    n.label = L.Input(shape=dict(dim=list(labels.shape)))
    n.loss = L.InfogainLoss(n.score, n.label, infogain_loss_param=dict(source=str(path), axis=1),
                            loss_param=dict(ignore_label=VOID))
    net = net_from_spec(n, caffe.TRAIN)
    net.blobs["score"].data[...] = scores
    net.blobs["label"].data[...] = labels
    loss = float(net.forward()["loss"])
    target = torch.from_numpy(labels[:, 0].astype(np.int64))
    total = torch.nn.functional.cross_entropy(torch.from_numpy(scores), target, weight=torch.from_numpy(weights),
                                              ignore_index=VOID, reduction="sum")
    expected = float(total) / int((target != VOID).sum())
    assert loss == pytest.approx(expected, rel=1e-5)
