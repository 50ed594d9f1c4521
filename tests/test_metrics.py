"""The paper's metrics on hand-computed cases, against compute_test_results.m / computeBFmeasure.m semantics.

Independent references: hand arithmetic, a literal transcription of BSDS seg2bmap.m, and SciPy's
linear_sum_assignment (Hungarian method) as the maximum-matching oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import linear_sum_assignment

from tools import metrics as M
from tools.camvid import read_list

K, VOID = 11, 11


# ---------------------------------------------------------------- independent references

def seg2bmap_matlab(seg: np.ndarray) -> np.ndarray:
    """BSDS seg2bmap.m line by line (the w == width branch)."""
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg != e) | (seg != s) | (seg != se)
    b[-1, :] = seg[-1, :] != e[-1, :]
    b[:, -1] = seg[:, -1] != s[:, -1]
    b[-1, -1] = False
    return b


def oracle_matching(bp: np.ndarray, bg: np.ndarray, radius: float) -> int:
    """Maximum bipartite matching size by the Hungarian method (cost -1 per allowed pair)."""
    p, g = np.argwhere(bp), np.argwhere(bg)
    if len(p) == 0 or len(g) == 0:
        return 0
    d2 = ((p[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    allowed = d2 <= radius * radius
    rows, cols = linear_sum_assignment(-allowed.astype(float))
    return int(allowed[rows, cols].sum())


def oracle_bf(gt, pred, rule="paper", tolerance=M.BF_TOLERANCE):
    """computeBFmeasure.m for one image, class by class (no void masking), with the oracle matching."""
    radius = tolerance * math.hypot(*gt.shape)
    f1s, counted = [], []
    for c in range(K):
        bg, bp = seg2bmap_matlab(gt == c), seg2bmap_matlab(pred == c)
        m = oracle_matching(bp, bg, radius)
        r = m / bg.sum() if bg.sum() else 0.0
        p = m / bp.sum() if bp.sum() else 0.0
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
        counted.append((gt == c).any() if rule == "paper" else bool(bg.any() or bp.any()))
    return float(np.mean([f for f, k in zip(f1s, counted) if k]))


def two_halves(h=300, w=400, edge=200):
    """Class 0 left of column `edge`, class 1 from it on."""
    lab = np.ones((h, w), np.uint8)
    lab[:, :edge] = 0
    return lab


def blocks_all_classes(h=36, w=48, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, K + 1, size=(h // 6, w // 6))
    small.flat[:K + 1] = np.arange(K + 1)  # every class and void occur
    return np.kron(small, np.ones((6, 6), dtype=np.int64)).astype(np.uint8)


# ---------------------------------------------------------------- confusion matrix, G, C, mIoU

def test_hand_computed_confusion_and_scores():
    gt = np.array([[0, 0, 1], [1, 1, VOID]], np.uint8)
    pred = np.array([[0, 1, 1], [0, 1, 5]], np.uint8)
    cm = M.confusion_matrix(gt, pred)
    assert cm.shape == (K, K + 1)
    assert cm[0, :2].tolist() == [1, 1] and cm[1, :2].tolist() == [1, 2] and cm.sum() == 5
    assert M.global_accuracy(cm) == pytest.approx(3 / 5)
    assert M.per_class_accuracy(cm)[:2] == pytest.approx([1 / 2, 2 / 3])
    assert M.class_average_accuracy(cm) == pytest.approx((1 / 2 + 2 / 3) / 11)
    assert M.per_class_iou(cm)[:2] == pytest.approx([1 / 3, 1 / 2])  # 1/(2+2-1), 2/(3+3-2)
    assert M.mean_iou(cm) == pytest.approx((1 / 3 + 1 / 2) / 11)


def test_perfect_prediction_scores_one():
    gt = blocks_all_classes()
    pred = np.where(gt == VOID, 3, gt).astype(np.uint8)
    acc = M.MetricAccumulator()
    acc.update(gt, pred)
    s = acc.summary()
    for key in ("global_accuracy", "class_average_accuracy", "mean_iou", "boundary_f1"):
        assert s[key] == pytest.approx(1.0), key
    assert s["per_class_accuracy"] == pytest.approx([1.0] * K)
    assert s["per_class_boundary_f1"] == pytest.approx([1.0] * K)


def test_all_wrong_scores_zero():
    gt = blocks_all_classes()
    pred = np.where(gt == VOID, 0, (gt + 1) % K).astype(np.uint8)
    cm = M.confusion_matrix(gt, pred)
    assert M.global_accuracy(cm) == 0 and M.class_average_accuracy(cm) == 0 and M.mean_iou(cm) == 0


def test_missing_class_divides_by_all_classes():
    # Only classes 0 and 1 occur, predicted perfectly: compute_test_results.m divides by 11 anyway.
    gt = two_halves(30, 40, 20)
    cm = M.confusion_matrix(gt, gt)
    assert M.global_accuracy(cm) == 1.0
    assert M.class_average_accuracy(cm) == pytest.approx(2 / 11)
    assert M.mean_iou(cm) == pytest.approx(2 / 11)
    # fcn's score.py would use nanmean over present classes; equal only when every class is present.
    with np.errstate(invalid="ignore", divide="ignore"):
        nan_iou = np.diag(cm[:, :K]) / (cm.sum(1) + cm[:, :K].sum(0) - np.diag(cm[:, :K]))
    assert np.nanmean(nan_iou) == pytest.approx(1.0)


def test_absent_class_hand_computed_three_classes():
    """3 classes, class 2 absent from the ground truth (void = 3; the prediction on void pixels is dropped).

    gt    0 0 0 0 1 1      pred  0 0 0 1 0 0      rows (GT) 4, 6, 0; columns (pred) 6, 4, 0; diagonal 3, 3, 0
          1 1 1 1 V V            1 1 1 0 2 0
    recall 3/4, 1/2, 0: C = (3/4 + 1/2 + 0) / 3 = 5/12 (all), (3/4 + 1/2) / 2 = 5/8 (present)
    IoU 3/(4+6-3) = 3/7, 3/(6+4-3) = 3/7, 0: mIoU = 6/7 / 3 = 2/7 (all), 3/7 (present)
    """
    gt = np.array([[0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 3, 3]], np.uint8)
    pred = np.array([[0, 0, 0, 1, 0, 0], [1, 1, 1, 0, 2, 0]], np.uint8)
    cm = M.confusion_matrix(gt, pred, num_classes=3, void=3)
    assert cm.tolist() == [[3, 1, 0, 0], [3, 3, 0, 0], [0, 0, 0, 0]]
    assert M.absent_classes(cm) == [2]
    assert M.global_accuracy(cm) == pytest.approx(3 / 5)
    assert M.class_average_accuracy(cm) == pytest.approx(5 / 12)
    assert M.class_average_accuracy(cm, "present") == pytest.approx(5 / 8)
    assert M.mean_iou(cm) == pytest.approx(2 / 7)
    assert M.mean_iou(cm, "present") == pytest.approx(3 / 7)
    acc = M.MetricAccumulator(num_classes=3, void=3, boundary=False)
    acc.update(gt, pred)
    s = acc.summary(average="present")
    assert s["absent_classes"] == [2] and s["average"] == "present"
    assert (s["class_average_accuracy"], s["mean_iou"]) == (pytest.approx(5 / 8), pytest.approx(3 / 7))
    # Class 2 predicted on a class-1 pixel: still absent from the GT, so C is unchanged, but its IoU, 0 / 1,
    # is defined and fcn's nanmean counts it: IoU 3/(4+5-3), 3/(6+4-3), 0 -> (1/2 + 3/7 + 0) / 3 = 13/42.
    pred[1, 3] = 2
    cm = M.confusion_matrix(gt, pred, num_classes=3, void=3)
    assert M.absent_classes(cm) == [2]
    assert M.class_average_accuracy(cm, "present") == pytest.approx(5 / 8)
    assert M.mean_iou(cm, "present") == pytest.approx(13 / 42)
    assert M.mean_iou(cm) == pytest.approx(13 / 42)
    with pytest.raises(ValueError, match="unknown average"):
        M.mean_iou(cm, "nanmean")


def test_nanmean_equivalence_when_all_classes_present():
    rng = np.random.default_rng(3)
    gt = blocks_all_classes(seed=3)
    pred = np.where(rng.random(gt.shape) < 0.3, rng.integers(0, K, gt.shape), gt).astype(np.uint8)
    cm = M.confusion_matrix(gt, pred)
    d = np.diag(cm[:, :K]).astype(float)
    assert M.mean_iou(cm) == pytest.approx(np.nanmean(d / (cm.sum(1) + cm[:, :K].sum(0) - d)))
    assert M.class_average_accuracy(cm) == pytest.approx(np.nanmean(d / cm.sum(1)))


def test_void_pixels_are_ignored():
    gt = two_halves(30, 40, 20)
    gt[:10, :10] = VOID
    clean = np.where(gt == VOID, 0, gt).astype(np.uint8)
    rng = np.random.default_rng(1)
    noisy = clean.copy()
    noisy[:10, :10] = rng.integers(0, K, (10, 10))  # anything at void pixels
    a, b = M.confusion_matrix(gt, clean), M.confusion_matrix(gt, noisy)
    assert (a == b).all() and a.sum() == 30 * 40 - 100
    sa = M.boundary_stats(gt, clean)
    sb = M.boundary_stats(gt, noisy)  # void_mode="mask": predictions inside void cannot change BF
    assert (sa.f1() == sb.f1()).all() and sa.image_bf() == 1.0
    assert M.boundary_stats(gt, noisy, void_mode="keep").image_bf() < 1.0


def test_void_or_out_of_range_prediction_is_a_miss():
    gt = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, VOID], [255, 0]], np.uint8)
    cm = M.confusion_matrix(gt, pred)
    assert cm[0, 0] == 2 and cm[0, K] == 2
    assert M.global_accuracy(cm) == 0.5 and M.per_class_accuracy(cm)[0] == 0.5


def test_pooled_over_split_not_mean_of_images():
    acc = M.MetricAccumulator(boundary=False)
    gt1, gt2 = np.zeros((1, 4), np.uint8), np.zeros((1, 1), np.uint8)
    acc.update(gt1, gt1)                      # 4/4 correct
    acc.update(gt2, np.ones_like(gt2))        # 0/1 correct
    assert M.global_accuracy(acc.cm) == pytest.approx(4 / 5)  # pooled, not (1 + 0) / 2
    assert acc.summary()["boundary_f1"] is None


# ---------------------------------------------------------------- boundaries and matching

def test_seg2bmap_matches_the_matlab_code():
    rng = np.random.default_rng(0)
    for _ in range(20):
        seg = rng.integers(0, 3, size=rng.integers(1, 9, size=2))
        assert (M.seg2bmap(seg) == seg2bmap_matlab(seg)).all()


def test_all_class_boundaries_in_one_pass_equal_per_class_seg2bmap():
    rng = np.random.default_rng(1)
    lab = np.kron(rng.integers(0, K + 1, (6, 8)), np.ones((3, 3), int))
    lab = np.where(rng.random(lab.shape) < 0.1, rng.integers(0, K + 1, lab.shape), lab)
    keys = M._class_boundary_keys(lab, K)
    expected = np.concatenate([c * lab.size + np.flatnonzero(seg2bmap_matlab(lab == c)) for c in range(K)])
    assert keys.tolist() == expected.tolist()


def test_tolerance_is_075_percent_of_the_diagonal():
    assert M.tolerance_pixels((360, 480)) == pytest.approx(4.5)
    assert M.tolerance_pixels((300, 400)) == pytest.approx(3.75)


def test_matching_within_tolerance_is_inclusive():
    bp, bg = np.zeros((1, 10), bool), np.zeros((1, 10), bool)
    bp[0, 0], bg[0, 3] = True, True
    assert M.match_boundaries(bp, bg, 3.0) == 1      # distance == tolerance counts (BSDS: d2 > max^2 skipped)
    assert M.match_boundaries(bp, bg, 2.99) == 0


def test_optimal_matching_where_greedy_fails():
    # Predicted pixels at x=2 and x=5, GT at x=0 and x=3, tolerance 2: the nearest-first greedy matches
    # 2 -> 3 (distance 1) and leaves 5 alone; the maximum matching is {2 -> 0, 5 -> 3}.
    bp, bg = np.zeros((1, 8), bool), np.zeros((1, 8), bool)
    bp[0, [2, 5]] = True
    bg[0, [0, 3]] = True
    greedy, used = 0, set()
    for x in np.flatnonzero(bp[0]):
        free = [g for g in np.flatnonzero(bg[0]) if g not in used and abs(g - x) <= 2]
        if free:
            used.add(min(free, key=lambda g: abs(g - x)))
            greedy += 1
    assert greedy == 1
    assert M.match_boundaries(bp, bg, 2.0) == 2 == oracle_matching(bp, bg, 2.0)


def test_matching_equals_hungarian_oracle_on_random_maps():
    rng = np.random.default_rng(7)
    suboptimal_warm_starts = 0
    for trial in range(60):
        h, w = rng.integers(5, 25, size=2)
        bp = rng.random((h, w)) < rng.uniform(0.05, 0.4)
        bg = rng.random((h, w)) < rng.uniform(0.05, 0.4)
        radius = float(rng.choice([0.5, 1.0, 1.5, 2.3, 3.0]))
        assert M.match_boundaries(bp, bg, radius) == oracle_matching(bp, bg, radius), trial
        # The vectorised greedy warm start alone is not always maximum: the augmenting step is exercised.
        dy, dx, _ = M._offsets(radius)
        pk, gk = np.flatnonzero(bp), np.flatnonzero(bg)
        if len(pk) and len(gk):
            table = np.full((h + 20) * (w + 20), -1)
            table[(gk // w + 10) * (w + 20) + gk % w + 10] = np.arange(len(gk))
            cand = table[((pk // w + 10) * (w + 20) + pk % w + 10)[:, None] + (dy * (w + 20) + dx)[None, :]]
            rows, rank = np.nonzero(cand >= 0)
            greedy = int((M._greedy_matching(rows, cand[rows, rank], rank, len(pk), len(gk))[0] >= 0).sum())
            suboptimal_warm_starts += greedy < oracle_matching(bp, bg, radius)
    assert suboptimal_warm_starts > 0


def test_boundary_f1_equals_oracle_on_a_real_camvid_crop(camvid_dir, monkeypatch):
    _, label = read_list(camvid_dir, "test")[5]
    gt = np.array(Image.open(label))[100:190, 100:220]
    gt = np.where(gt == VOID, 0, gt).astype(np.uint8)  # the oracle does not mask void
    pred = np.roll(gt, (2, -3), axis=(0, 1))
    pred[40:50, 10:30] = 9
    for rule in M.BF_RULES:
        for tol in (0.0075, 0.02):
            expected = oracle_bf(gt, pred, rule, tol)
            for small in (0, 10**12):  # every piece alone, all pieces together
                monkeypatch.setattr(M, "_SMALL_PIECE", small)
                ours = M.boundary_stats(gt, pred, tolerance=tol).image_bf(rule)
                assert ours == pytest.approx(expected), (rule, tol, small)


def test_piecewise_flow_equals_one_flow_on_a_full_image(camvid_dir, monkeypatch):
    # _maximum_matching solves big connected pieces one by one and small ones together; every grouping
    # must give the same maximum (checked against the crop oracle above for the all-together case).
    _, label = read_list(camvid_dir, "test")[0]
    gt = np.array(Image.open(label))
    pred = np.roll(gt, (3, 4), axis=(0, 1))
    results = []
    for small in (0, 500, 10**12):
        monkeypatch.setattr(M, "_SMALL_PIECE", small)
        s = M.boundary_stats(gt, pred)
        results.append((s.matched.tolist(), s.pred.tolist(), s.gt.tolist()))
    assert results[0] == results[1] == results[2]
    transposed = M.boundary_stats(pred, gt, void_mode="keep")  # matching is symmetric in its two sides
    assert transposed.matched.tolist() == M.boundary_stats(gt, pred, void_mode="keep").matched.tolist()


# ---------------------------------------------------------------- BF on hand-built images

def test_shifted_boundary_within_tolerance_scores_one():
    gt = two_halves()                      # 300 x 400: diagonal 500, tolerance 3.75 px
    pred = two_halves(edge=203)            # shifted 3 px
    s = M.boundary_stats(gt, pred)
    assert s.gt[:2].tolist() == [300, 300] and s.pred[:2].tolist() == [300, 300]
    assert s.f1()[:2].tolist() == [1.0, 1.0] and s.image_bf() == 1.0


def test_shifted_boundary_beyond_tolerance_scores_zero():
    s = M.boundary_stats(two_halves(), two_halves(edge=206))   # 6 px > 3.75 px
    assert s.matched[:2].tolist() == [0, 0] and s.image_bf() == 0.0


def test_half_shifted_boundary_exact_value():
    # Rows 150.. of the predicted edge move 6 px right (beyond 3.75 px).  Predicted boundary (seg2bmap):
    # column 199 for rows 0..148 (149 px), row 149 columns 199..205 (7 px), column 205 for rows 150..299
    # (150 px) = 306 px; GT: column 199, 300 px.  Matched: GT rows 0..149 by the identical pixels, GT rows
    # 150..152 by the step pixels (149, 200..202) (e.g. 200->152: 1+9 <= 14.06, 201->151: 8, 202->150: 10);
    # GT rows >= 153 are >= 4 px from any predicted pixel but column 205.  So 153 matches:
    # P = 153/306, R = 153/300, F1 = 2PR/(P+R) = 0.51/1.01, for both classes (a binary mask and its
    # complement have the same seg2bmap).
    pred = two_halves()
    pred[150:, 200:206] = 0
    s = M.boundary_stats(two_halves(), pred)
    assert s.pred[:2].tolist() == [306, 306] and s.gt[:2].tolist() == [300, 300]
    assert s.matched[:2].tolist() == [153, 153]
    assert s.image_bf() == pytest.approx(0.51 / 1.01)


def test_paper_and_public_rules_differ_on_a_class_absent_from_the_gt():
    # A 10x10 square of class 2 predicted inside class 0: its ring (4 x 10 = 40 px) is unmatched.
    # Class 0: P = 300/340, R = 1 -> F1 = 600/640; class 1: F1 = 1; class 2 (absent from the GT):
    # not counted by the paper rule, counted with F1 = 0 by computeBFmeasure.m.
    gt = two_halves()
    pred = gt.copy()
    pred[100:110, 50:60] = 2
    s = M.boundary_stats(gt, pred)
    assert s.pred[2] == 40 and s.gt[2] == 0 and s.matched[0] == 300
    assert s.f1()[:3] == pytest.approx([0.9375, 1.0, 0.0])
    assert s.image_bf("paper") == pytest.approx((0.9375 + 1) / 2)
    assert s.image_bf("public") == pytest.approx((0.9375 + 1 + 0) / 3)


def test_dataset_and_per_class_bf_average_over_images():
    acc = M.MetricAccumulator()
    acc.update(two_halves(), two_halves(edge=203))     # BF 1
    pred = two_halves()
    pred[150:, 200:206] = 0
    acc.update(two_halves(), pred)                     # BF 0.51/1.01
    third = np.full((300, 400), 3, np.uint8)
    third[:, :100] = 0
    acc.update(third, third)                           # classes 0 and 3, BF 1
    f = 0.51 / 1.01
    assert acc.boundary_f1() == pytest.approx((1 + f + 1) / 3)
    per_class = acc.per_class_boundary_f1()
    assert per_class[0] == pytest.approx((1 + f + 1) / 3)
    assert per_class[1] == pytest.approx((1 + f) / 2)
    assert per_class[3] == pytest.approx(1.0)
    assert per_class[4] is None
