"""CamVid class statistics and Eigen-Fergus median-frequency weights (SegNet paper §3.2, class balancing).

    python -m tools.class_weights --camvid data/CamVid [--split train] --json [--write-infogain H.binaryproto]

Definition used (Eigen & Fergus 2015, as SegNet-Tutorial issue #31 states it):

    freq(c)   = pixels of class c / total pixels of the training images in which c is present
    weight(c) = median(freq(0..10)) / freq(c)

- The median is over the 11 real classes' freq values (void excluded); 11 is odd, so it is the 6th smallest value,
  an actual class's frequency, and that class gets weight exactly 1.
- "Total pixels" (the denominator): every pixel of those images, void (label 11) included, i.e. H*W per image.
  Chosen because it is the literal definition, the images' size is what "total pixels of the images" means, and it
  is the reading that comes closer to the published SegNet-Tutorial weights on the public annotations (both
  readings' gaps are printed: `--denominator labelled` gives the other one). Neither reproduces the published
  values: SignSymbol is ~3.5 here vs 9.6446 published (caffe-segnet #37, SegNet-Tutorial #101; the shipped
  weights were likely computed on another annotation version). The loss layers therefore offer both sets.
- A class absent from every image would have freq 0; it gets weight 0 (it never occurs, so it never matters).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segnet_bvlc.core.files import atomic_path
from segnet_bvlc.core.paths import DATA
from segnet_bvlc.dataset.camvid import (
    CLASSES,
    NUM_CLASSES,
    PUBLISHED_WEIGHTS,
    VOID,
    CamVidError,
    read_label,
    read_list,
)

WEIGHTS_DIR = DATA / "class_weights"
PUBLISHED_PROTO = WEIGHTS_DIR / "camvid_published.binaryproto"
RECOMPUTED_PROTO = WEIGHTS_DIR / "camvid_recomputed.binaryproto"
RECOMPUTED_JSON = WEIGHTS_DIR / "camvid_recomputed.json"


def _caffe_pb2():
    # Imported lazily: pycaffe is heavy, and only the infogain files need its BlobProto message.
    from caffe.proto import caffe_pb2

    return caffe_pb2


def label_statistics(labels) -> dict:
    """Per-image class statistics summed over an iterable of H x W label arrays (values 0..VOID).

    pixel_counts[c]    pixels of class c (VOID + 1 entries, void last)
    image_counts[c]    images in which c occurs
    present_total[c]   all pixels (void included) of the images in which c occurs
    present_labelled[c] non-void pixels of the images in which c occurs
    """
    counts = np.zeros(VOID + 1, np.int64)
    images = np.zeros(VOID + 1, np.int64)
    present_total = np.zeros(VOID + 1, np.int64)
    present_labelled = np.zeros(VOID + 1, np.int64)
    n = 0
    for label in labels:
        hist = np.bincount(np.asarray(label).ravel(), minlength=VOID + 1)
        if hist.size > VOID + 1:
            raise CamVidError(f"label values must be 0..{VOID}, found {hist.size - 1}")
        present = hist > 0
        counts += hist
        images += present
        present_total[present] += label.size
        present_labelled[present] += label.size - hist[VOID]
        n += 1
    return {"images": n, "pixel_counts": counts, "image_counts": images, "present_total": present_total,
            "present_labelled": present_labelled}


def median_frequency_weights(pixel_counts, present_pixels) -> tuple[np.ndarray, np.ndarray, float]:
    """(freq, weights, median) over the NUM_CLASSES classes from per-class counts and per-class denominators."""
    counts = np.asarray(pixel_counts, np.float64)[:NUM_CLASSES]
    denominators = np.asarray(present_pixels, np.float64)[:NUM_CLASSES]
    freq = np.divide(counts, denominators, out=np.zeros(NUM_CLASSES), where=denominators > 0)
    median = float(np.median(freq))
    weights = np.divide(median, freq, out=np.zeros(NUM_CLASSES), where=freq > 0)
    return freq, weights, median


def compare(weights, reference) -> dict:
    """How far a weight vector is from a reference: per-class ratio, worst and mean |log ratio|."""
    weights, reference = np.asarray(weights, np.float64), np.asarray(reference, np.float64)
    ratio = weights / reference
    log = np.abs(np.log(ratio))
    return {"ratio": [round(float(r), 4) for r in ratio], "mean_abs_log_ratio": round(float(log.mean()), 4),
            "max_abs_log_ratio": round(float(log.max()), 4), "worst_class": CLASSES[int(log.argmax())]}


def compute(camvid_dir: Path | str, split: str = "train", denominator: str = "total",
            progress: bool | None = None) -> dict:
    """Everything `--json` prints; `denominator` picks which reading fills "median_frequency"."""
    pairs = read_list(camvid_dir, split)
    labels = (read_label(label) for _, label in tqdm(pairs, desc=f"{split} labels", unit="img", file=sys.stderr,
                                                     disable=(not progress) if progress is not None else None,
                                                     leave=False))
    stats = label_statistics(labels)
    readings = {}
    for name, key in (("total", "present_total"), ("labelled", "present_labelled")):
        freq, weights, median = median_frequency_weights(stats["pixel_counts"], stats[key])
        readings[name] = {"frequency": freq, "weights": weights, "median": median,
                          "vs_published": compare(weights, PUBLISHED_WEIGHTS)}
    chosen = readings[denominator]
    total = stats["pixel_counts"].sum()
    return {
        "classes": CLASSES,
        "pixel_counts": [int(c) for c in stats["pixel_counts"]],
        "median_frequency": [round(float(w), 6) for w in chosen["weights"]],
        "published": PUBLISHED_WEIGHTS,
        "split": split, "images": stats["images"], "camvid_dir": str(Path(camvid_dir).resolve()),
        "denominator": denominator,
        "definition": ("freq(c) = pixels of c / " + ("all pixels (void included)" if denominator == "total"
                       else "non-void pixels") + " of the images where c is present; weight(c) = "
                       f"median(freq over the {NUM_CLASSES} classes) / freq(c)"),
        "image_counts": [int(c) for c in stats["image_counts"]],
        "frequency": [round(float(f), 8) for f in chosen["frequency"]],
        "median": round(chosen["median"], 8),
        "natural_frequency": [round(float(c) / float(total), 8) for c in stats["pixel_counts"]],
        "readings": {name: {"median_frequency": [round(float(w), 6) for w in r["weights"]],
                            "median": round(r["median"], 8), "vs_published": r["vs_published"]}
                     for name, r in readings.items()},
    }


def write_infogain(weights, path: Path | str) -> Path:
    """H = diag(weights) as a 1x1xCxC BlobProto, the `infogain_loss_param.source` of BVLC's InfogainLoss.

    With `ignore_label: VOID` and VALID normalisation, InfogainLoss with this H is caffe-segnet's class-weighted
    SoftmaxWithLoss (loss = -sum w_y log p_y / N_valid). BVLC only checks count == C*C; 1x1xCxC also fits the
    legacy num/channels/height/width readers. Written to a temp file, then renamed into place.
    """
    weights = np.asarray(weights, np.float32)
    blob = _caffe_pb2().BlobProto()
    blob.shape.dim.extend([1, 1, weights.size, weights.size])
    blob.data.extend(np.diag(weights).ravel().tolist())
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob.SerializeToString())
    return Path(path)


def read_infogain(path: Path | str) -> np.ndarray:
    """The C x C matrix of an InfogainLoss binaryproto."""
    blob = _caffe_pb2().BlobProto()
    blob.ParseFromString(Path(path).read_bytes())
    data = np.asarray(blob.data, np.float32)
    side = int(round(np.sqrt(data.size)))
    if side * side != data.size:
        raise CamVidError(f"{path}: {data.size} values, not a square matrix")
    return data.reshape(side, side)
