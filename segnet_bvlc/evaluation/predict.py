"""The one prediction path: the evaluation (segnet_bvlc.pipeline), the web demo and tools.segment all call
`predict_image`.

The net's class probabilities (segnet_bvlc.evaluation.deploy_net) are resized bilinearly to the image's own size
(OpenCV INTER_LINEAR: pixel centres aligned, edges clamped, as PyTorch's `interpolate(align_corners=False)`) and
the argmax of the resized scores is the label: exactly what the evaluation scores. `upsample="nearest"` (the
argmax at the net's size, then enlarged by nearest neighbour: blocky boundaries) exists only as an explicit
option; it is not what the metrics measure. With `samples` the scores are the mean of Monte Carlo dropout
samples (segnet_bvlc.evaluation.monte_carlo), upsampled the same way, and the uncertainty map is resized
bilinearly to the image's size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from segnet_bvlc.evaluation.deploy_net import SegmentError, forward, net_input
from segnet_bvlc.evaluation.monte_carlo import sample_probabilities

UPSAMPLE_MODES = ("bilinear", "nearest")  # the first is the evaluation's and the default


def check_upsample(upsample: str) -> None:
    if upsample not in UPSAMPLE_MODES:
        raise SegmentError(f"unknown upsample '{upsample}' ({' or '.join(UPSAMPLE_MODES)})")


def net_probabilities(net, bgr_image: np.ndarray, interpolation: str = "auto") -> np.ndarray:
    """The net's class scores of one image at the net's own size (K x h x w float32): one forward."""
    return forward(net, net_input(net, bgr_image, interpolation))


def _resize(plane: np.ndarray, size: tuple[int, int], flag: int) -> np.ndarray:
    return plane if plane.shape == size else cv2.resize(plane, (size[1], size[0]), interpolation=flag)


def upsample_argmax(scores: np.ndarray, size: tuple[int, int], upsample: str = "bilinear"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Labels (H, W) uint8 and the winning class's score (H, W) float32 at `size` from K x h x w scores.

    "bilinear" (the evaluation's): every class's scores resized bilinearly to `size`, then the argmax (ties:
    the lowest class, as np.argmax); computed one class at a time, so a large image never holds K full-size
    planes. "nearest": the argmax at the net's size, enlarged by nearest neighbour (labels are never
    interpolated), and the winning score likewise."""
    check_upsample(upsample)
    if scores.ndim != 3:
        raise SegmentError(f"scores have shape {scores.shape}, expected K x H x W")
    if scores.shape[0] > 256:
        raise SegmentError(f"{scores.shape[0]} classes do not fit 8-bit label PNGs")
    size = tuple(int(s) for s in size)
    if upsample == "nearest":
        labels = scores.argmax(axis=0).astype(np.uint8)
        best = scores.max(axis=0).astype(np.float32)
        return _resize(labels, size, cv2.INTER_NEAREST), _resize(best, size, cv2.INTER_NEAREST)
    labels = np.zeros(size, np.uint8)
    best = _resize(np.ascontiguousarray(scores[0], dtype=np.float32), size, cv2.INTER_LINEAR).copy()
    for c in range(1, scores.shape[0]):
        up = _resize(np.ascontiguousarray(scores[c], dtype=np.float32), size, cv2.INTER_LINEAR)
        better = up > best
        labels[better] = c
        best[better] = up[better]
    return labels, best


@dataclass
class Prediction:
    """One image's prediction, at the image's size unless said otherwise."""

    labels: np.ndarray  # (H, W) uint8
    score: np.ndarray  # (H, W) float32: the winning class's upsampled score (probability)
    probabilities: np.ndarray  # (K, h, w) float32 at the net's size: `prob`, or its mean over the samples
    uncertainty: np.ndarray | None  # (H, W) float32 with samples: mean over classes of the sampled variance
    samples: int  # 0: one deterministic pass (BVLC Dropout is a copy in TEST)
    seconds: float  # resize + forward(s) + upsampling


def predict_image(net, bgr_image: np.ndarray, interpolation: str = "auto", upsample: str = "bilinear",
                  samples: int = 0, seed: int | None = 0) -> Prediction:
    """The prediction of one BGR uint8 image at its own size (see the module docstring). samples=0: one
    forward of `net` as it is; samples=N >= 1: Monte Carlo dropout over N forwards of a sampling net."""
    check_upsample(upsample)
    t0 = time.perf_counter()
    size = bgr_image.shape[:2]
    uncertainty = None
    if samples:
        probabilities, unc = sample_probabilities(net, bgr_image, samples, seed, interpolation)
        uncertainty = _resize(unc, size, cv2.INTER_LINEAR if upsample == "bilinear" else cv2.INTER_NEAREST)
    else:
        probabilities = net_probabilities(net, bgr_image, interpolation)
    labels, score = upsample_argmax(probabilities, size, upsample)
    return Prediction(labels, score, probabilities, uncertainty, samples, time.perf_counter() - t0)


def predict(net, bgr_image: np.ndarray, interpolation: str = "auto", upsample: str = "bilinear") -> np.ndarray:
    """Labels (H, W) uint8 of one BGR uint8 image at the image's own size: predict_image(...).labels."""
    return predict_image(net, bgr_image, interpolation, upsample).labels
