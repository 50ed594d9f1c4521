"""The paper's metrics on hand-computed cases, against compute_test_results.m / computeBFmeasure.m semantics.

Independent references, none of which calls tools.metrics or tools.boundary:
  * hand arithmetic on label maps small enough to list every boundary pixel;
  * `seg2bdry` and `compute_bf_measure` below: BSDS seg2bdry.m and SegNet-Tutorial's Scripts/computeBFmeasure.m
    transcribed statement by statement from their text (MATLAB 1-based `a:2:end` written as Python `a-1::2`);
  * the paper's own rule (TPAMI 2017 §3.3 after Csurka et al., BMVC 2013, docs/paper.md §6.1): the image's BF is
    the mean F1 over the classes *present in the ground-truth image*;
  * SciPy: linear_sum_assignment (Hungarian method) as the maximum-matching oracle standing in for BSDS's C++
    correspondPixels (a minimum-cost one-to-one assignment within maxDist x the image diagonal), and
    distance_transform_edt for Csurka et al.'s distance-to-boundary counts, which equal the one-to-one counts on
    the shapes where the tests use them (and differ where a test says so).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import distance_transform_edt
from scipy.optimize import linear_sum_assignment

from segnet_bvlc.dataset.camvid import NUM_CLASSES, VOID, read_list
from segnet_bvlc.evaluation import boundary as B
from segnet_bvlc.evaluation import metrics as M

K = NUM_CLASSES


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


def seg2bdry(seg: np.ndarray) -> np.ndarray:
    """BSDS seg2bdry.m with fmt = 'imageSize' (what computeBFmeasure.m calls: `seg2bdry(In,'imageSize')`),
    statement by statement.  The boundary is drawn on a (2tx+1) x (2ty+1) grid whose odd 1-based rows/columns
    are the edges between pixels, then sampled back at the pixels."""
    tx, ty = seg.shape
    bdry = np.zeros((2 * tx + 1, 2 * ty + 1))                        # bdry = zeros(2*tx+1, 2*ty+1);
    edgels_v = np.zeros((tx, ty), bool)
    edgels_v[:-1, :] = seg[:-1, :] != seg[1:, :]                     # edgels_v = (seg(1:end-1,:) ~= seg(2:end,:));
    #                                                                  edgels_v(end+1, :) = 0;
    edgels_h = np.zeros((tx, ty), bool)
    edgels_h[:, :-1] = seg[:, :-1] != seg[:, 1:]                     # edgels_h = (seg(:,1:end-1) ~= seg(:,2:end));
    #                                                                  edgels_h(:, end+1) = 0;
    bdry[2::2, 1::2] = edgels_v                                      # bdry(3:2:end, 2:2:end) = edgels_v;
    bdry[1::2, 2::2] = edgels_h                                      # bdry(2:2:end, 3:2:end) = edgels_h;
    # bdry(3:2:end-1, 3:2:end-1) = max(max(edgels_h(1:end-1, 1:end-1), edgels_h(2:end, 1:end-1)),
    #                                  max(edgels_v(1:end-1, 1:end-1), edgels_v(1:end-1, 2:end)));
    bdry[2:-1:2, 2:-1:2] = np.maximum(np.maximum(edgels_h[:-1, :-1], edgels_h[1:, :-1]),
                                      np.maximum(edgels_v[:-1, :-1], edgels_v[:-1, 1:]))
    bdry[0, :] = bdry[1, :]                                          # bdry(1, :) = bdry(2, :);
    bdry[:, 0] = bdry[:, 1]                                          # bdry(:, 1) = bdry(:, 2);
    bdry[-1, :] = bdry[-2, :]                                        # bdry(end, :) = bdry(end-1, :);
    bdry[:, -1] = bdry[:, -2]                                        # bdry(:, end) = bdry(:, end-1);
    return bdry[2::2, 2::2] > 0                                      # bdry = bdry(3:2:end, 3:2:end);


def oracle_matching(bp: np.ndarray, bg: np.ndarray, radius: float) -> int:
    """Maximum bipartite matching size by the Hungarian method (cost -1 per allowed pair)."""
    p, g = np.argwhere(bp), np.argwhere(bg)
    if len(p) == 0 or len(g) == 0:
        return 0
    d2 = ((p[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    allowed = d2 <= radius * radius
    rows, cols = linear_sum_assignment(-allowed.astype(float))
    return int(allowed[rows, cols].sum())


def correspond_pixels(bmap1: np.ndarray, bmap2: np.ndarray, max_dist: float) -> tuple[int, int]:
    """(sum(match1(:)>0), sum(match2(:)>0)) of BSDS `[match1, match2] = correspondPixels(bmap1, bmap2, maxDist)`:
    a one-to-one assignment of pixels within maxDist x the diagonal (correspondPixels.cc: idiag =
    sqrt(rows*rows + cols*cols), matchEdgeMaps(..., maxDist*idiag, ...)); unmatched pixels cost 100 x that
    distance, so the assignment has maximum cardinality and both counts are its size."""
    rows, cols = bmap1.shape
    m = oracle_matching(bmap1, bmap2, max_dist * math.sqrt(rows * rows + cols * cols))
    return m, m


def compute_bf_measure(gts, preds, rule="script", max_dist=B.BF_TOLERANCE, num_classes=K):
    """Scripts/computeBFmeasure.m for a list of index-format images (classes 0..K-1 here, 1..N there).

    rule "script": `classcount` as the script's code sets it (a boundary in the GT or in the prediction);
    rule "paper":  the paper's rule, which is also what the script's comment on `sumc` says: the classes
                   present in that ground-truth image.
    Returns (avg_BF_measure, BF_measure per image, F1_measure (images x classes), classcount).
    """
    num_images = len(gts)
    F1_measure = np.zeros((num_images, num_classes))
    classcount = np.zeros((num_images, num_classes))
    for i, (gim, pim) in enumerate(zip(gts, preds)):
        for n in range(num_classes):                                 # for n = 1:numClasses
            bmap_gim = seg2bdry(gim == n)                            # bmap_gim = logical(seg2bdry(In,'imageSize'));
            bmap_pim = seg2bdry(pim == n)
            cnt_p, cnt_r = correspond_pixels(bmap_pim, bmap_gim, max_dist)  # [match1,match2] = correspondPixels(...)
            sum_r = bmap_gim.sum()                                   # sumR = sum(bmap_gim(:));
            recall = precision = 0.0
            if sum_r > 0:                                            # if sumR > 0
                classcount[i, n] = 1                                 #   classcount = 1;
                recall = cnt_r / sum_r                               #   recall = cntR/sumR;
            sum_p = bmap_pim.sum()                                   # sumP = sum(bmap_pim(:));
            if sum_p > 0:                                            # if sumP > 0
                classcount[i, n] = 1
                precision = cnt_p / sum_p                            #   precision = cntP/sumP;
            if precision + recall > 0:                               # if precision+recall > 0
                F1_measure[i, n] = 2 * precision * recall / (precision + recall)
            if rule == "paper":
                classcount[i, n] = float((gim == n).any())
    BF_measure = np.zeros(num_images)
    avg_BF_measure = 0.0
    for i in range(num_images):                                      # Compute for full dataset
        sumc = classcount[i].sum()                                   # sumc = sumc + classcount(i-2,n);
        sumf = F1_measure[i].sum()                                   # sumf = sumf + F1_measure(i-2,n);
        if sumc > 0:
            BF_measure[i] = sumf / sumc                              # BF_measure(i-2) = sumf/sumc;
            avg_BF_measure += BF_measure[i]
    return avg_BF_measure / num_images, BF_measure, F1_measure, classcount  # avg_BF_measure./(numel(gt)-2)


def csurka_f1(gt_bmap: np.ndarray, pred_bmap: np.ndarray, radius: float) -> float:
    """Csurka et al.'s boundary F1 from distance transforms: P = share of predicted boundary pixels within
    `radius` of the GT boundary, R = share of GT boundary pixels within `radius` of the predicted one (no
    one-to-one constraint)."""
    to_gt = distance_transform_edt(~gt_bmap)
    to_pred = distance_transform_edt(~pred_bmap)
    p = (to_gt[pred_bmap] <= radius).mean()
    r = (to_pred[gt_bmap] <= radius).mean()
    return 2 * p * r / (p + r) if p + r else 0.0


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
    sa = B.boundary_stats(gt, clean)
    sb = B.boundary_stats(gt, noisy)  # void_mode="mask": predictions inside void cannot change BF
    assert (sa.f1() == sb.f1()).all() and sa.image_bf() == 1.0
    assert B.boundary_stats(gt, noisy, void_mode="keep").image_bf() < 1.0


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
        assert (B.seg2bmap(seg) == seg2bmap_matlab(seg)).all()


def test_seg2bdry_transcription_equals_seg2bmap_and_the_one_pass_class_boundaries():
    """computeBFmeasure.m calls seg2bdry(mask, 'imageSize'); tools.boundary extracts every class's boundary in one
    pass (and documents seg2bmap as the same thing): both equal the transcribed seg2bdry on random maps."""
    rng = np.random.default_rng(1)
    for trial in range(10):
        lab = np.kron(rng.integers(0, K + 1, (6, 8)), np.ones((3, 3), int))
        lab = np.where(rng.random(lab.shape) < 0.1, rng.integers(0, K + 1, lab.shape), lab)
        lab = lab[:rng.integers(1, 19), :rng.integers(1, 25)]
        keys = B._class_boundary_keys(lab, K)
        expected = np.concatenate([c * lab.size + np.flatnonzero(seg2bdry(lab == c)) for c in range(K)])
        assert keys.tolist() == expected.tolist(), trial
        assert (B.seg2bmap(lab) == seg2bdry(lab)).all(), trial
        assert (seg2bmap_matlab(lab) == seg2bdry(lab)).all(), trial  # the two BSDS functions agree


def pixels(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in np.argwhere(mask)}


def test_boundary_pixels_listed_by_hand():
    """6x8 maps whose boundary pixels are listed by hand from seg2bdry's rule: pixel (i, j) is a boundary
    pixel when the 2x2 block {i, i+1} x {j, j+1}, clipped to the image, is not uniform."""
    dot = np.zeros((6, 8), np.uint8)
    dot[2, 3] = 1          # one pixel: the four blocks that contain it, one of them only through the diagonal
    corner = np.zeros((6, 8), np.uint8)
    corner[5, 7] = 1       # bottom-right corner: its own (clipped 1x1) block is uniform
    edge = np.ones((6, 8), np.uint8)
    edge[:, :4] = 0        # vertical edge between columns 3 and 4: the left side (column 3) is marked
    cases = [(dot, {(1, 2), (1, 3), (2, 2), (2, 3)}),
             (corner, {(4, 6), (4, 7), (5, 6)}),
             (edge, {(i, 3) for i in range(6)})]
    for lab, expected in cases:
        assert pixels(seg2bdry(lab == 1)) == expected
        s = B.boundary_stats(lab, lab)
        # a binary map: classes 0 and 1 share the same boundary pixels
        assert s.gt[:2].tolist() == s.pred[:2].tolist() == s.matched[:2].tolist() == [len(expected)] * 2
        hw = lab.size
        keys = B._class_boundary_keys(lab.astype(np.int64), K)
        assert {divmod(int(k) - hw, 8) for k in keys if k // hw == 1} == expected


def step_edge() -> tuple[np.ndarray, np.ndarray]:
    """GT: class 0 on columns 0..3, class 1 on 4..7 (6x8).  Prediction: the edge moves 2 px right from row 3 on.

    GT boundary (both classes): column 3, rows 0..5 = 6 px.  Predicted boundary: (0,3) (1,3), the step row 2 at
    columns 3, 4, 5 (the blocks {2,3} x {3,4}, {4,5}, {5,6} mix the classes), then column 5 for rows 3, 4, 5
    = 8 px."""
    gt = np.ones((6, 8), np.uint8)
    gt[:, :4] = 0
    pred = gt.copy()
    pred[3:, 4:6] = 0
    return gt, pred


def test_step_edge_matches_counted_by_hand():
    """Diagonal 10 px, so tolerance t gives 10·t px.

    r = 0.9 (t = 0.09): only coincident pixels match: (0,3) (1,3) (2,3): P = 3/8, R = 3/6, F1 = 3/7.
    r = 1.2: also GT (3,3) -> pred (2,3) at distance 1 once GT (2,3) takes pred (2,4) (distance 1); GT (4,3),
             (5,3) are 2 px from everything: 4 matches, P = 4/8, R = 4/6, F1 = 4/7.
    r = 2.5: every GT pixel matches one predicted pixel ((3,3)->(2,4) at 1.41, (4,3)->(4,5), (5,3)->(5,5) at
             2), but one-to-one: 6 matches of 8 predicted pixels, P = 6/8, R = 1, F1 = 6/7.  Counting distances
             to the other boundary instead (Csurka's formula, distance transform) would give P = 1 and F1 = 1:
             the script's correspondPixels is a one-to-one assignment.
    """
    gt, pred = step_edge()
    assert pixels(seg2bdry(gt == 0)) == {(i, 3) for i in range(6)}
    assert pixels(seg2bdry(pred == 0)) == {(0, 3), (1, 3), (2, 3), (2, 4), (2, 5), (3, 5), (4, 5), (5, 5)}
    for tolerance, matched, f1, csurka in ((0.09, 3, 3 / 7, 3 / 7), (0.12, 4, 4 / 7, 4 / 7),
                                            (0.25, 6, 6 / 7, 1.0)):
        s = B.boundary_stats(gt, pred, tolerance=tolerance)
        assert s.gt[:2].tolist() == [6, 6] and s.pred[:2].tolist() == [8, 8], tolerance
        assert s.matched[:2].tolist() == [matched, matched], tolerance
        assert s.f1()[:2] == pytest.approx([f1, f1], rel=1e-12)
        assert s.image_bf("paper") == pytest.approx(f1, rel=1e-12)
        assert s.image_bf("public") == pytest.approx(f1, rel=1e-12)
        assert compute_bf_measure([gt], [pred], "script", tolerance)[0] == pytest.approx(f1, rel=1e-12)
        radius = 10 * tolerance
        assert csurka_f1(seg2bdry(gt == 0), seg2bdry(pred == 0), radius) == pytest.approx(csurka, rel=1e-12)


def test_default_tolerance_is_4_5_px_at_360x480_inclusive():
    """The paper's 0.75 % of the 600 px diagonal = 4.5 px.  A one-pixel dot of class 1 at (100, 100); predicted
    at (104, 102): every GT boundary pixel has its translate at sqrt(4² + 2²) = 4.47 px <= 4.5, so 4 of 4 match
    and BF = 1.  Predicted at (104, 103) (listed by hand, GT {99,100} x {99,100}, prediction {103,104} x
    {102,103}): GT (99,99) is >= 5 px from every predicted pixel; (99,100) and (100,99) can only take (103,102)
    (4.47 and 4.24 px); (100,100) takes (103,103) (4.24 px): 2 one-to-one matches, P = R = 1/2, BF = 1/2 (the
    distance-transform count would give 3/4)."""
    gt = np.zeros((360, 480), np.uint8)
    gt[100, 100] = 1
    near, far = np.zeros_like(gt), np.zeros_like(gt)
    near[104, 102] = 1
    far[104, 103] = 1
    s = B.boundary_stats(gt, near)
    assert s.matched[:2].tolist() == [4, 4] and s.image_bf() == 1.0
    assert B.boundary_f1(gt, near) == compute_bf_measure([gt], [near], "paper")[0] == 1.0
    s = B.boundary_stats(gt, far)
    assert s.gt[:2].tolist() == s.pred[:2].tolist() == [4, 4] and s.matched[:2].tolist() == [2, 2]
    assert s.image_bf() == pytest.approx(0.5, rel=1e-12)
    assert compute_bf_measure([gt], [far], "paper")[0] == pytest.approx(0.5, rel=1e-12)
    assert csurka_f1(seg2bdry(gt == 1), seg2bdry(far == 1), 4.5) == pytest.approx(0.75)


def two_images_by_hand() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two 6x8 images scored at tolerance 0.05 (0.5 px: only coincident pixels match).

    Image 1: GT class 0 on columns 0..3, class 1 on 4..7; the prediction adds a class-2 dot at (2, 1).
      class 0: predicted boundary = column 3 (6 px) + the dot's ring (1,0) (1,1) (2,0) (2,1) = 10 px, GT 6,
               matched 6: P = 6/10, R = 1, F1 = 3/4;  class 1: identical edges, F1 = 1;
      class 2: predicted only (ring of 4 px): F1 = 0, absent from the GT.
      BF: paper (classes 0, 1) = 7/8;  script (boundary in GT or prediction: 0, 1, 2) = 7/12.
    Image 2: GT class 3, a 2x2 class-4 square at rows 2..3, columns 2..3, class 5 on column 7; the prediction
      moves the square one column right.
      class 4: GT ring {1,2,3} x {1,2,3} minus (2,2), predicted {1,2,3} x {2,3,4} minus (2,3), 8 px each,
               common (1,2) (3,2) (1,3) (3,3): F1 = 4/8 = 1/2;
      class 5: column 6 (6 px) in both: F1 = 1;
      class 3: both rings + column 6 = 14 px each, 4 + 6 common: F1 = 10/14 = 5/7.
      BF (both rules) = (5/7 + 1/2 + 1) / 3 = 31/42.
    """
    gt1 = np.ones((6, 8), np.uint8)
    gt1[:, :4] = 0
    pred1 = gt1.copy()
    pred1[2, 1] = 2
    gt2 = np.full((6, 8), 3, np.uint8)
    gt2[:, 7] = 5
    pred2 = gt2.copy()
    gt2[2:4, 2:4] = 4
    pred2[2:4, 3:5] = 4
    return [(gt1, pred1), (gt2, pred2)]


def test_per_class_per_image_and_dataset_averaging_by_hand():
    pairs = two_images_by_hand()
    acc = M.MetricAccumulator(tolerance=0.05)
    for gt, pred in pairs:
        acc.update(gt, pred)
    first, second = acc.images
    assert first.pred[:3].tolist() == [10, 6, 4] and first.gt[:3].tolist() == [6, 6, 0]
    assert first.matched[:3].tolist() == [6, 6, 0]
    assert second.gt[3:6].tolist() == second.pred[3:6].tolist() == [14, 8, 6]
    assert second.matched[3:6].tolist() == [10, 4, 6]
    assert first.image_bf("paper") == pytest.approx(7 / 8, rel=1e-12)
    assert first.image_bf("public") == pytest.approx(7 / 12, rel=1e-12)
    for rule in B.BF_RULES:
        assert second.image_bf(rule) == pytest.approx(31 / 42, rel=1e-12)
    # Dataset BF = mean of the image BFs (not of all class-image pairs: (3/4 + 1 + 5/7 + 1/2 + 1) / 5 differs).
    assert acc.boundary_f1("paper") == pytest.approx((7 / 8 + 31 / 42) / 2, rel=1e-12)
    assert acc.boundary_f1("public") == pytest.approx((7 / 12 + 31 / 42) / 2, rel=1e-12)
    assert (7 / 8 + 31 / 42) / 2 != pytest.approx((3 / 4 + 1 + 5 / 7 + 1 / 2 + 1) / 5)
    # Per class: the class's F1 averaged over the images where it counts.
    none = [None] * (K - 6)
    assert acc.per_class_boundary_f1("paper") == pytest.approx([3 / 4, 1, None, 5 / 7, 1 / 2, 1] + none)
    assert acc.per_class_boundary_f1("public") == pytest.approx([3 / 4, 1, 0, 5 / 7, 1 / 2, 1] + none)
    # The transcribed script gives the same numbers.
    gts, preds = [g for g, _ in pairs], [p for _, p in pairs]
    assert compute_bf_measure(gts, preds, "paper", 0.05)[0] == pytest.approx((7 / 8 + 31 / 42) / 2, rel=1e-12)
    assert compute_bf_measure(gts, preds, "script", 0.05)[0] == pytest.approx((7 / 12 + 31 / 42) / 2, rel=1e-12)


def test_tolerance_is_075_percent_of_the_diagonal():
    assert B.tolerance_pixels((360, 480)) == pytest.approx(4.5)
    assert B.tolerance_pixels((300, 400)) == pytest.approx(3.75)


def test_matching_within_tolerance_is_inclusive():
    bp, bg = np.zeros((1, 10), bool), np.zeros((1, 10), bool)
    bp[0, 0], bg[0, 3] = True, True
    assert B.match_boundaries(bp, bg, 3.0) == 1      # distance == tolerance counts (BSDS: d2 > max^2 skipped)
    assert B.match_boundaries(bp, bg, 2.99) == 0


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
    assert B.match_boundaries(bp, bg, 2.0) == 2 == oracle_matching(bp, bg, 2.0)


def test_matching_equals_hungarian_oracle_on_random_maps():
    rng = np.random.default_rng(7)
    suboptimal_warm_starts = 0
    for trial in range(60):
        h, w = rng.integers(5, 25, size=2)
        bp = rng.random((h, w)) < rng.uniform(0.05, 0.4)
        bg = rng.random((h, w)) < rng.uniform(0.05, 0.4)
        radius = float(rng.choice([0.5, 1.0, 1.5, 2.3, 3.0]))
        assert B.match_boundaries(bp, bg, radius) == oracle_matching(bp, bg, radius), trial
        # The vectorised greedy warm start alone is not always maximum: the augmenting step is exercised.
        dy, dx, _ = B._offsets(radius)
        pk, gk = np.flatnonzero(bp), np.flatnonzero(bg)
        if len(pk) and len(gk):
            table = np.full((h + 20) * (w + 20), -1)
            table[(gk // w + 10) * (w + 20) + gk % w + 10] = np.arange(len(gk))
            cand = table[((pk // w + 10) * (w + 20) + pk % w + 10)[:, None] + (dy * (w + 20) + dx)[None, :]]
            rows, rank = np.nonzero(cand >= 0)
            greedy = int((B._greedy_matching(rows, cand[rows, rank], rank, len(pk), len(gk))[0] >= 0).sum())
            suboptimal_warm_starts += greedy < oracle_matching(bp, bg, radius)
    assert suboptimal_warm_starts > 0


def camvid_pairs(camvid_dir, indices=(0, 5, 17)):
    """Real CamVid test labels at 90x120 (every 4th pixel) and a prediction made from each: shifted by a few
    pixels, with a rectangle of another class, and blocks of noise (so classes are missed, moved and invented)."""
    rng = np.random.default_rng(11)
    pairs = []
    for k, i in enumerate(indices):
        _, label = read_list(camvid_dir, "test")[i]
        gt = np.array(Image.open(label))[::4, ::4].copy()
        pred = np.roll(np.where(gt == VOID, 3, gt), (1 + k, -2), axis=(0, 1)).astype(np.uint8)
        pred[40:50, 10 + 20 * k:30 + 20 * k] = (9 + k) % K
        noise = np.kron(rng.random((15, 20)) < 0.08, np.ones((6, 6), bool))
        pred[noise] = rng.integers(0, K, int(noise.sum()))
        pairs.append((gt, pred))
    return pairs


@pytest.mark.parametrize("void_mode", B.BF_VOID_MODES)
def test_bf_equals_the_transcribed_script_on_real_camvid_labels(camvid_dir, monkeypatch, void_mode):
    """tools.boundary's per-image, per-class and dataset BF == computeBFmeasure.m transcribed (script rule) and
    its paper-rule reading, on three real label maps (void included), at the paper's 0.75 % and at 2 %.

    void_mode "keep" is the script as written (void is no class; the prediction is used as is).  "mask" is
    documented on tools.boundary.boundary_stats as: the prediction is set to void wherever the GT is void, then
    the script runs; the oracle does exactly that to its input."""
    pairs = camvid_pairs(camvid_dir)
    gts = [gt for gt, _ in pairs]
    preds = [pred if void_mode == "keep" else np.where(gt == VOID, VOID, pred) for gt, pred in pairs]
    assert any((gt == VOID).any() for gt in gts)
    for max_dist in (0.0075, 0.02):  # computeBFmeasure.m: maxDist = 0.0075
        for rule, script_rule in (("public", "script"), ("paper", "paper")):
            avg, per_image, f1, counted = compute_bf_measure(gts, preds, script_rule, max_dist)
            for small in (0, 10**12):  # the matcher solving every piece alone / all pieces together
                monkeypatch.setattr(B, "_SMALL_PIECE", small)
                acc = M.MetricAccumulator(tolerance=max_dist, void_mode=void_mode)
                for gt, pred in pairs:
                    acc.update(gt, pred)
                ours = [s.image_bf(rule) for s in acc.images]
                np.testing.assert_allclose(ours, per_image, rtol=1e-12, err_msg=f"{rule} {max_dist} {small}")
                for s, f_row, c_row in zip(acc.images, f1, counted):
                    np.testing.assert_allclose(s.f1()[c_row > 0], f_row[c_row > 0], rtol=1e-12)
                    assert s.counted(rule).tolist() == (c_row > 0).tolist()
                assert acc.boundary_f1(rule) == pytest.approx(avg, rel=1e-12)
                n = counted.sum(axis=0)
                expected_per_class = [float((f1[:, c] * counted[:, c]).sum() / n[c]) if n[c] else None
                                      for c in range(K)]
                ours_per_class = acc.per_class_boundary_f1(rule)
                assert [v is None for v in ours_per_class] == [v is None for v in expected_per_class]
                assert [v for v in ours_per_class if v is not None] == pytest.approx(
                    [v for v in expected_per_class if v is not None], rel=1e-12)
    # The rules and the tolerance really differ on these images (otherwise the loops above prove less).
    paper = compute_bf_measure(gts, preds, "paper")[1]
    script = compute_bf_measure(gts, preds, "script")[1]
    assert not np.allclose(paper, script)
    assert not np.allclose(compute_bf_measure(gts, preds, "paper", 0.02)[1], paper)


def test_piecewise_flow_equals_one_flow_on_a_full_image(camvid_dir, monkeypatch):
    # _maximum_matching solves big connected pieces one by one and small ones together; every grouping
    # must give the same maximum (checked against the crop oracle above for the all-together case).
    _, label = read_list(camvid_dir, "test")[0]
    gt = np.array(Image.open(label))
    pred = np.roll(gt, (3, 4), axis=(0, 1))
    results = []
    for small in (0, 500, 10**12):
        monkeypatch.setattr(B, "_SMALL_PIECE", small)
        s = B.boundary_stats(gt, pred)
        results.append((s.matched.tolist(), s.pred.tolist(), s.gt.tolist()))
    assert results[0] == results[1] == results[2]
    transposed = B.boundary_stats(pred, gt, void_mode="keep")  # matching is symmetric in its two sides
    assert transposed.matched.tolist() == B.boundary_stats(gt, pred, void_mode="keep").matched.tolist()


# ---------------------------------------------------------------- BF on hand-built images

def test_shifted_boundary_within_tolerance_scores_one():
    gt = two_halves()                      # 300 x 400: diagonal 500, tolerance 3.75 px
    pred = two_halves(edge=203)            # shifted 3 px
    s = B.boundary_stats(gt, pred)
    assert s.gt[:2].tolist() == [300, 300] and s.pred[:2].tolist() == [300, 300]
    assert s.f1()[:2].tolist() == [1.0, 1.0] and s.image_bf() == 1.0


def test_shifted_boundary_beyond_tolerance_scores_zero():
    s = B.boundary_stats(two_halves(), two_halves(edge=206))   # 6 px > 3.75 px
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
    s = B.boundary_stats(two_halves(), pred)
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
    s = B.boundary_stats(gt, pred)
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
