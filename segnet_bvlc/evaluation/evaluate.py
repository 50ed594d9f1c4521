"""Score label-PNG predictions against ground truth with the paper's metrics (G, C, mIoU, BF): the library of
`python -m tools.evaluate`, and what the pipeline and the training's validation call.

Predictions are single-channel label PNGs (the class indices, or the void label; any other value is refused)
named like the ground truth PNGs (CamVid `testannot/`); extra files in the prediction folder (e.g.
segnet_bvlc.evaluation.segment's `*_colour.png`) are ignored.  The metrics themselves live in
`segnet_bvlc.evaluation.metrics` and `segnet_bvlc.evaluation.boundary` (see there for how each is computed and
every interpretation).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.core.files import atomic_path, out_folder_problem, write_text_atomic
from segnet_bvlc.dataset import camvid
from segnet_bvlc.evaluation.boundary import (
    BF_RULES,
    BF_TOLERANCE,
    BoundaryStats,
    boundary_stats,
)
from segnet_bvlc.evaluation.metrics import AVERAGE_RULES, MetricAccumulator, confusion_matrix


class EvaluationError(SegnetError):
    """Bad evaluation input; the message names the file and the problem."""


# --------------------------------------------------------------------------------------------------------
# Reading label maps
# --------------------------------------------------------------------------------------------------------

def read_label_png(path: Path | str) -> np.ndarray:
    """A label PNG as an (H, W) integer array (segnet_bvlc.dataset.camvid.read_index_png); colour images are refused."""
    try:
        return camvid.read_index_png(path)
    except camvid.CamVidError as e:
        raise EvaluationError(str(e)) from None


def check_label_values(labels: np.ndarray, path: Path | str, num_classes: int, void: int, what: str) -> None:
    """EvaluationError naming `path` and the bad values unless every label is 0..num_classes-1 or `void`.

    Such a file is not a label map of this dataset (a colour or 0/255 mask, another class count): scoring
    it would count those pixels as silent misses."""
    values, counts = np.unique(labels, return_counts=True)
    bad = (values < 0) | (values >= num_classes)
    bad &= values != void
    if bad.any():
        shown = ", ".join(f"{v} ({c} px)" for v, c in zip(values[bad][:5], counts[bad][:5]))
        more = f" and {int(bad.sum()) - 5} more" if bad.sum() > 5 else ""
        raise EvaluationError(f"{path}: {what} values must be 0..{num_classes - 1} or {void} (void), found "
                              f"{shown}{more}")


def _read_pair(gt_path: Path, pred_path: Path, num_classes: int = camvid.NUM_CLASSES,
               void: int = camvid.VOID) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = read_label_png(gt_path), read_label_png(pred_path)
    if gt.shape != pred.shape:
        raise EvaluationError(f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from the ground "
                              f"truth {gt_path} ({gt.shape[1]}x{gt.shape[0]})")
    check_label_values(gt, gt_path, num_classes, void, "ground truth")
    check_label_values(pred, pred_path, num_classes, void, "prediction")
    return gt, pred


def match_files(pred_dir: Path | str, gt_paths: Sequence[Path | str]) -> list[tuple[Path, Path]]:
    """(gt, pred) path pairs, the prediction of each GT file being `pred_dir / gt.name`; all must exist."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: prediction folder not found")
    pairs = []
    for gt in map(Path, gt_paths):
        pred = pred_dir / gt.name
        if not pred.is_file():
            raise EvaluationError(f"{pred}: missing prediction for ground truth {gt}")
        pairs.append((gt, pred))
    if not pairs:
        raise EvaluationError(f"{pred_dir}: nothing to evaluate (no ground truth files)")
    return pairs


# --------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------

def _image_counts(args) -> tuple[np.ndarray, BoundaryStats | None]:
    """Confusion counts and boundary counts of one image; reads PNGs when given paths (worker function)."""
    gt, pred, num_classes, void, boundary, tolerance, bf_void = args
    if isinstance(gt, (str, Path)):
        gt, pred = _read_pair(Path(gt), Path(pred), num_classes, void)
    elif np.shape(gt) != np.shape(pred):
        raise EvaluationError(f"prediction {np.shape(pred)} and ground truth {np.shape(gt)} differ in size")
    cm = confusion_matrix(gt, pred, num_classes, void)
    stats = boundary_stats(gt, pred, num_classes, void, tolerance, bf_void) if boundary else None
    return cm, stats


def _evaluate(items: Iterable, total: int | None, *, num_classes: int, void: int, boundary: bool,
              bf_rule: str, bf_void: str, tolerance: float, workers: int, progress: bool,
              average: str) -> dict:
    if bf_rule not in BF_RULES:
        raise EvaluationError(f"unknown BF rule {bf_rule!r} (choose from {', '.join(BF_RULES)})")
    if average not in AVERAGE_RULES:
        raise EvaluationError(f"unknown average {average!r} (choose from {', '.join(AVERAGE_RULES)})")
    acc = MetricAccumulator(num_classes, void, boundary, tolerance, bf_void)
    jobs = ((gt, pred, num_classes, void, boundary, tolerance, bf_void) for gt, pred in items)
    bar = tqdm(total=total, desc="evaluate", unit="img", disable=not progress, file=sys.stderr, leave=False)
    try:
        if workers > 1:
            # Images are independent: BF (the costly part) parallelises over processes.
            with ProcessPoolExecutor(workers) as pool:
                results = pool.map(_image_counts, jobs, chunksize=4)
                for cm, stats in results:
                    acc.add(cm, stats)
                    bar.update()
        else:
            for job in jobs:
                acc.add(*_image_counts(job))
                bar.update()
    finally:
        bar.close()
    if acc.count == 0:
        raise EvaluationError("nothing to evaluate (no images)")
    return _result(acc, bf_rule, bf_void, tolerance, average)


def _result(acc: MetricAccumulator, bf_rule: str, bf_void: str, tolerance: float,
            average: str = "all") -> dict:
    s = acc.summary(bf_rule, average)
    names = (camvid.CLASSES if acc.num_classes == camvid.NUM_CLASSES
             else [f"class{i}" for i in range(acc.num_classes)])
    return {
        "global_accuracy": s["global_accuracy"],
        "class_average_accuracy": s["class_average_accuracy"],
        "mean_iou": s["mean_iou"],
        "boundary_f1": s["boundary_f1"],
        "per_class": [
            {"name": n, "accuracy": a, "iou": i, "boundary_f1": b, "pixels": p}
            for n, a, i, b, p in zip(names, s["per_class_accuracy"], s["per_class_iou"],
                                     s["per_class_boundary_f1"], s["per_class_pixels"])
        ],
        "num_images": s["num_images"],
        # How C and mIoU treat classes with no ground-truth pixel in the scored set (segnet_bvlc.evaluation.metrics).
        "average": average,
        "average_rule": AVERAGE_RULES[average],
        "absent_classes": [names[i] for i in s["absent_classes"]],
        "boundary_f1_rule": bf_rule if acc.boundary else None,
        "boundary_f1_void": bf_void if acc.boundary else None,
        "boundary_tolerance": tolerance if acc.boundary else None,
        "boundary_f1_by_rule": {r: acc.boundary_f1(r) for r in BF_RULES} if acc.boundary else None,
        # Rows: GT classes; columns: predicted classes, then "other" (void / out-of-range predictions).
        "confusion_matrix": s["confusion_matrix"],
    }


def _options(num_classes: int = camvid.NUM_CLASSES, void: int = camvid.VOID, boundary: bool = True,
             bf_rule: str = "paper", bf_void: str = "mask", tolerance: float = BF_TOLERANCE, workers: int = 1,
             progress: bool = False, average: str = "all") -> dict:
    return dict(num_classes=num_classes, void=void, boundary=boundary, bf_rule=bf_rule, bf_void=bf_void,
                tolerance=tolerance, workers=workers, progress=progress, average=average)


def evaluate_arrays(pairs: Iterable[tuple[np.ndarray, np.ndarray]], total: int | None = None,
                    **options) -> dict:
    """Metrics of in-memory (gt, pred) label maps, e.g. the training tool's validation predictions.

    Options: num_classes, void, boundary (False skips BF), bf_rule ("paper" | "public"), bf_void
    ("mask" | "keep"), tolerance (fraction of the diagonal), workers, progress, average ("all" | "present",
    how C and mIoU treat classes absent from the ground truth: segnet_bvlc.evaluation.metrics.AVERAGE_RULES).
    """
    if total is None and hasattr(pairs, "__len__"):
        total = len(pairs)
    return _evaluate(iter(pairs), total, **_options(**options))


def evaluate_files(pairs: Sequence[tuple[Path, Path]], **options) -> dict:
    """Metrics of (gt path, pred path) PNG pairs."""
    return _evaluate(pairs, len(pairs), **_options(**options))


def evaluate_dirs(pred_dir: Path | str, gt_dir: Path | str, **options) -> dict:
    """Every `*.png` of `gt_dir` against the file of the same name in `pred_dir`."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise EvaluationError(f"{gt_dir}: ground truth folder not found")
    gts = sorted(gt_dir.glob("*.png"))
    if not gts:
        raise EvaluationError(f"{gt_dir}: no ground truth PNGs")
    return evaluate_files(match_files(pred_dir, gts), **options)


def score_predictions(pred_dir: Path | str, camvid_dir: Path | str, split: str = "test", **options) -> dict:
    """The ground truth of a CamVid split list (segnet_bvlc.dataset.camvid.read_list) against `pred_dir / <label name>`."""
    labels = [label for _, label in camvid.read_list(camvid_dir, split)]
    return evaluate_files(match_files(pred_dir, labels), **options)


# --------------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------------

def _pct(value: float | None) -> str:
    return "   -" if value is None else f"{100 * value:5.1f}"


def format_table(result: dict) -> str:
    """The per-class table in the paper's Table 2 column order, then the summary, in percent."""
    by_name = {c["name"]: c for c in result["per_class"]}
    order = [n for n in camvid.PAPER_TABLE2_ORDER if n in by_name] + [n for n in by_name
                                                                    if n not in camvid.PAPER_TABLE2_ORDER]
    width = max(len(n) for n in by_name) + 2
    lines = [f"{'class':<{width}} {'accuracy':>8} {'IoU':>6} {'BF':>6}"]
    for name in order:
        c = by_name[name]
        note = "" if c.get("pixels", 1) else "  (absent from the ground truth)"
        lines.append(f"{name:<{width}} {_pct(c['accuracy']):>8} {_pct(c['iou']):>6} "
                     f"{_pct(c['boundary_f1']):>6}{note}")
    lines.append("")
    lines.append(f"{'G':>6} {'C':>6} {'mIoU':>6} {'BF':>6}")
    lines.append(f"{_pct(result['global_accuracy']):>6} {_pct(result['class_average_accuracy']):>6} "
                 f"{_pct(result['mean_iou']):>6} {_pct(result['boundary_f1']):>6}")
    rule = result.get("boundary_f1_rule")
    lines.append(f"({result['num_images']} images; BF: {rule} rule, void {result.get('boundary_f1_void')})"
                 if rule else f"({result['num_images']} images; BF not computed)")
    if result.get("absent_classes"):
        lines.append(f"(C and mIoU: {result['average_rule']}; absent from the ground truth: "
                     f"{', '.join(result['absent_classes'])})")
    return "\n".join(lines)


def save_confusion_png(result: dict, path: Path | str) -> None:
    """Row-normalised confusion matrix (GT rows, predicted columns) with class names, as a PNG."""
    # Imported here: matplotlib is heavy and only the written outputs need it, not the scoring.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(result["confusion_matrix"], dtype=np.float64)
    names = [c["name"] for c in result["per_class"]]
    columns = names + ["other"]
    if cm.shape[1] > len(names) and not cm[:, len(names):].any():
        cm, columns = cm[:, :len(names)], names  # no void/out-of-range prediction: drop the empty column
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(columns), 1 + 0.55 * len(names)), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    for i in range(norm.shape[0]):
        for j in range(norm.shape[1]):
            if norm[i, j] >= 0.005:
                ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"G {100 * result['global_accuracy']:.1f}  C {100 * result['class_average_accuracy']:.1f}  "
                 f"mIoU {100 * result['mean_iou']:.1f}  (% of GT row)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


plot_confusion = save_confusion_png  # the name segnet_bvlc.pipeline uses


def write_outputs(result: dict, out_dir: Path | str) -> None:
    """`metrics.json` (the result) and `confusion_matrix.png` in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    save_confusion_png(result, out_dir / "confusion_matrix.png")


def check_out_folder(path: Path) -> None:
    """EvaluationError unless `path` can take metrics.json and confusion_matrix.png."""
    problem = out_folder_problem(path)
    if problem:
        raise EvaluationError(problem)
