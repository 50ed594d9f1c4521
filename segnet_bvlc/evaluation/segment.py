"""Segment images with a Caffe deploy net: label PNGs, CamVid-coloured PNGs, overlays and a class legend.

    python -m tools.segment --model DEPLOY.prototxt --weights W.caffemodel --out DIR IMAGES...
    python -m tools.segment --model DEPLOY.prototxt --weights W.caffemodel --out DIR --camvid DIR --list test
    python -m tools.segment ... --samples 40 [--seed 0]     Bayesian SegNet: Monte Carlo dropout

The parts, in the order of the data: deploy_net (loading the net through segnet_bvlc.nets.load, its input and
output blobs), predict (`predict_image`, the one prediction path: scores upsampled bilinearly, then the argmax),
monte_carlo (`--samples N`: the mean of N sampled softmax outputs and Bayesian SegNet's uncertainty) and
label_pngs (colours, overlays, uncertainty maps, legend). This module writes them for a list of images, and is
where the demo, the pipeline and tools.segment take those parts from.

`--samples N` (nets with Dropout layers: a `--dropout` run, a converted Bayesian SegNet) turns every Dropout
layer into layers.mc_dropout's MCDropout, runs N forwards and takes the mean of the N softmax outputs as the
scores; N=1 is a single sampled pass. Masks are reseeded from `--seed` before every image, so a run is
reproducible and an image gets the same result whatever else is in the list.

For every image NAME.ext, DIR receives NAME.png (labels 0..K-1, named like the CamVid ground truth, so
`tools.evaluate --pred DIR` scores them), NAME_colour.png and NAME_overlay.png; with --samples also
NAME_uncertainty.png and NAME_uncertainty_colour.png (label_pngs); DIR/legend.png once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from segnet_bvlc.core.files import out_folder_problem
from segnet_bvlc.evaluation.deploy_net import SegmentError, load_net, num_classes
from segnet_bvlc.evaluation.label_pngs import (
    UNCERTAINTY_PNG_SCALE,
    class_colours,
    class_names,
    colour_labels,
    legend,
    overlay,
    save_png,
    uncertainty_colour,
    uncertainty_png,
)
from segnet_bvlc.evaluation.monte_carlo import sample_probabilities
from segnet_bvlc.evaluation.predict import UPSAMPLE_MODES, Prediction, check_upsample, predict, predict_image

# What the callers (the demo, the pipeline, tools.segment, the tests) use, from one place.
__all__ = ["UNCERTAINTY_PNG_SCALE", "UPSAMPLE_MODES", "Prediction", "SegmentError", "class_colours",
           "class_names", "colour_labels", "load_net", "predict", "predict_image", "read_image",
           "sample_probabilities", "segment_images", "uncertainty_colour", "uncertainty_png"]


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SegmentError(f"{path}: cannot read the image (missing or not an image)")
    return image


def _check_inputs(out_dir: Path, paths: list[Path], upsample: str) -> None:
    problem = out_folder_problem(out_dir)
    if problem:
        raise SegmentError(problem)
    check_upsample(upsample)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise SegmentError(f"two input images are named '{dup}': their outputs would overwrite each other")


def segment_images(net, paths: Sequence[Path | str], out_dir: Path | str, alpha: float = 0.5,
                   interpolation: str = "auto", progress: bool = False, upsample: str = "bilinear",
                   samples: int = 0, seed: int | None = 0) -> list[dict]:
    """Segment every image; returns per image the paths written ({"image", "labels", "colour", "overlay"}, with
    samples also "uncertainty" and "uncertainty_colour") and "seconds" (the prediction's time)."""
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    _check_inputs(out_dir, paths, upsample)
    k = num_classes(net)
    written = []
    for path in tqdm(paths, desc="segment", unit="img", disable=not progress, file=sys.stderr):
        image = read_image(path)
        pred = predict_image(net, image, interpolation, upsample, samples, seed)
        outputs = {"image": str(path), "labels": out_dir / f"{path.stem}.png",
                   "colour": out_dir / f"{path.stem}_colour.png",
                   "overlay": out_dir / f"{path.stem}_overlay.png"}
        save_png(pred.labels, outputs["labels"])
        save_png(colour_labels(pred.labels, k), outputs["colour"])
        save_png(overlay(image, pred.labels, alpha), outputs["overlay"])
        if pred.uncertainty is not None:
            outputs["uncertainty"] = out_dir / f"{path.stem}_uncertainty.png"
            outputs["uncertainty_colour"] = out_dir / f"{path.stem}_uncertainty_colour.png"
            save_png(uncertainty_png(pred.uncertainty), outputs["uncertainty"])
            save_png(uncertainty_colour(pred.uncertainty), outputs["uncertainty_colour"])
        record = {key: str(v) for key, v in outputs.items()}
        record["seconds"] = pred.seconds
        written.append(record)
        if len(written) == 1:  # only once an image succeeded: a failed run leaves no lone legend
            save_png(legend(class_names(k), class_colours(k)), out_dir / "legend.png")
    return written
