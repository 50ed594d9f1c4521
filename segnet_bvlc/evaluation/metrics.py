"""The paper's region metrics, G, C and mIoU from one pooled confusion matrix, and their accumulation over a split.

Pure NumPy/SciPy (no Caffe), so the training tool can score in-memory predictions.

G, C, mIoU are computed exactly as SegNet-Tutorial's `Scripts/compute_test_results.m` does:
  * one confusion matrix is accumulated over the whole split (pooled counts, not per-image means);
  * pixels whose ground truth is void (the VOID label) are dropped from both GT and prediction;
  * G = trace / number of non-void pixels;
  * C = sum of the per-class recalls / K and mIoU = sum of the per-class IoUs / K (K = NUM_CLASSES).  The divisor is
    always the number of classes: a class absent from the ground truth of the split scores 0 and still
    counts, where fcn's `score.py` (`np.nanmean`) would skip it as NaN.  When every class occurs in the
    ground truth, as in the CamVid test split, both give the same number; on a subset (`--limit`) or another
    data set they differ.  `average="present"` gives fcn's numbers instead (AVERAGE_RULES).

BF (boundary F1) is segnet_bvlc.evaluation.boundary's; MetricAccumulator pools both over a split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segnet_bvlc.dataset.camvid import NUM_CLASSES, VOID
from segnet_bvlc.evaluation.boundary import (
    BF_TOLERANCE,
    BF_VOID_MODES,
    BoundaryStats,
    boundary_stats,
    check_pair,
)

# How C and mIoU average the per-class values (the text goes into the output of segnet_bvlc.evaluation.evaluate).
AVERAGE_RULES = {
    "all": "all classes, absent count 0 (compute_test_results.m)",
    "present": "present classes only (fcn score.py's nanmean): C over the classes in the ground truth, "
               "mIoU over those in the ground truth or the prediction",
}


# --------------------------------------------------------------------------------------------------------
# Confusion matrix, G, C, mIoU
# --------------------------------------------------------------------------------------------------------

def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int = NUM_CLASSES,
                     void: int = VOID) -> np.ndarray:
    """Counts (K, K+1): rows are GT classes 0..K-1, columns predicted classes 0..K-1 and a last column
    for predictions outside 0..K-1 (void or anything else).

    GT pixels equal to `void` (or outside 0..K-1) are ignored, as compute_test_results.m does.  The
    extra column is always 0 for argmax outputs; a prediction there counts as a miss everywhere (the
    MATLAB script counts it as a miss in G but leaves it out of the row sums of C and mIoU, an edge case
    no network output reaches, which we do not copy).
    """
    gt, pred = check_pair(gt, pred)
    k = num_classes
    gt = gt.ravel().astype(np.int64)
    pred = pred.ravel().astype(np.int64)
    valid = (gt >= 0) & (gt < k) & (gt != void)
    p = pred[valid]
    p = np.where((p >= 0) & (p < k), p, k)
    return np.bincount(gt[valid] * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)


def _split(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(diagonal, GT row totals, predicted column totals over the K classes) of a (K,K) or (K,K+1) matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    if cm.ndim != 2 or cm.shape[1] not in (k, k + 1):
        raise ValueError(f"confusion matrix must be (K, K) or (K, K+1), got {cm.shape}")
    return np.diag(cm[:, :k]), cm.sum(axis=1), cm[:, :k].sum(axis=0)


def global_accuracy(cm: np.ndarray) -> float:
    """G: correctly classified non-void pixels / all non-void pixels of the split."""
    diag, rows, _ = _split(cm)
    total = rows.sum()
    return float(diag.sum() / total) if total else 0.0


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from the pooled matrix; 0 for a class absent from the ground truth."""
    diag, rows, _ = _split(cm)
    return np.divide(diag, rows, out=np.zeros_like(diag), where=rows > 0)


def _check_average(average: str) -> None:
    if average not in AVERAGE_RULES:
        raise ValueError(f"unknown average {average!r} (choose from {', '.join(AVERAGE_RULES)})")


def absent_classes(cm: np.ndarray) -> list[int]:
    """Classes with no pixel in the ground truth (their row of the matrix is empty)."""
    _, rows, _ = _split(cm)
    return np.flatnonzero(rows == 0).tolist()


def class_average_accuracy(cm: np.ndarray, average: str = "all") -> float:
    """C: "all" = sum(per-class recall) / K (compute_test_results.m: `sum(diag(conf))/numClasses`);
    "present" = the mean over the classes present in the ground truth (0 if none)."""
    _check_average(average)
    acc = per_class_accuracy(cm)
    if average == "all":
        return float(acc.sum() / len(acc))
    present = _split(cm)[1] > 0
    return float(acc[present].mean()) if present.any() else 0.0


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """IoU_i = cf(i,i) / (row_i + col_i - cf(i,i)); 0 for a class absent from the GT (as the script)."""
    diag, rows, cols = _split(cm)
    union = rows + cols - diag
    return np.divide(diag, union, out=np.zeros_like(diag), where=rows > 0)


def mean_iou(cm: np.ndarray, average: str = "all") -> float:
    """mIoU: "all" = sum(IoU) / K (compute_test_results.m: `sum(intoverunion)/numClasses`); "present" = the
    mean over the classes whose union is not empty, i.e. in the ground truth or the prediction (0 if none)."""
    _check_average(average)
    iou = per_class_iou(cm)
    if average == "all":
        return float(iou.sum() / len(iou))
    diag, rows, cols = _split(cm)
    defined = rows + cols - diag > 0
    return float(iou[defined].mean()) if defined.any() else 0.0


# --------------------------------------------------------------------------------------------------------
# Accumulation over a split
# --------------------------------------------------------------------------------------------------------

@dataclass
class MetricAccumulator:
    """Pools the confusion matrix over a split and keeps each image's boundary counts.

    acc = MetricAccumulator(); for gt, pred in pairs: acc.update(gt, pred); acc.summary()
    """

    num_classes: int = NUM_CLASSES
    void: int = VOID
    boundary: bool = True
    tolerance: float = BF_TOLERANCE
    void_mode: str = "mask"
    cm: np.ndarray = field(init=False)
    images: list[BoundaryStats] = field(init=False, default_factory=list)
    count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.cm = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)
        if self.void_mode not in BF_VOID_MODES:
            raise ValueError(f"unknown void mode {self.void_mode!r} (choose from {', '.join(BF_VOID_MODES)})")

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        stats = None
        if self.boundary:
            stats = boundary_stats(gt, pred, self.num_classes, self.void, self.tolerance, self.void_mode)
        self.add(confusion_matrix(gt, pred, self.num_classes, self.void), stats)

    def add(self, cm: np.ndarray, stats: BoundaryStats | None) -> None:
        """Add one image's counts computed elsewhere (e.g. in a worker process)."""
        self.cm += cm
        if self.boundary:
            if stats is None:
                raise ValueError("boundary statistics missing for an image")
            self.images.append(stats)
        self.count += 1

    def boundary_f1(self, rule: str = "paper") -> float | None:
        """Dataset BF: the mean of the image BFs.  Images where no class counts (all-void GT) are left out
        (computeBFmeasure.m would add a 0 for them; no CamVid image is all void)."""
        if not self.boundary:
            return None
        scores = [s for s in (im.image_bf(rule) for im in self.images) if s is not None]
        return float(np.mean(scores)) if scores else None

    def per_class_boundary_f1(self, rule: str = "paper") -> list[float | None]:
        """Each class's F1 averaged over the images where the class counts (None where it never does)."""
        if not self.boundary or not self.images:
            return [None] * self.num_classes
        f1 = np.stack([im.f1() for im in self.images])
        counted = np.stack([im.counted(rule) for im in self.images])
        n = counted.sum(axis=0)
        sums = np.where(counted, f1, 0.0).sum(axis=0)
        return [float(s / c) if c else None for s, c in zip(sums, n)]

    def summary(self, rule: str = "paper", average: str = "all") -> dict:
        """Fractions in [0, 1]; per-class lists in class-index order; `average` as AVERAGE_RULES."""
        return {
            "global_accuracy": global_accuracy(self.cm),
            "class_average_accuracy": class_average_accuracy(self.cm, average),
            "mean_iou": mean_iou(self.cm, average),
            "average": average,
            "absent_classes": absent_classes(self.cm),
            "boundary_f1": self.boundary_f1(rule),
            "per_class_accuracy": per_class_accuracy(self.cm).tolist(),
            "per_class_iou": per_class_iou(self.cm).tolist(),
            "per_class_boundary_f1": self.per_class_boundary_f1(rule),
            "per_class_pixels": self.cm.sum(axis=1).tolist(),
            "confusion_matrix": self.cm.tolist(),
            "num_images": self.count,
        }
