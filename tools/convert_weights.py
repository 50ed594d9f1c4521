"""`python -m tools.convert_weights`: a released caffe-segnet caffemodel as BVLC weights for our deploy net.

What is converted and how: segnet_bvlc.nets.convert.
"""

from __future__ import annotations

import argparse
import json
import sys

from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.log import console_logging
from segnet_bvlc.dataset.camvid import HEIGHT, NUM_CLASSES, WIDTH
from segnet_bvlc.nets.caffemodel import KNOWN_FILES
from segnet_bvlc.nets.convert import convert, log
from segnet_bvlc.nets.load import WeightsError

TOOL = "convert_weights"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.convert_weights",
        description="Convert a released caffe-segnet caffemodel (SegNet Model Zoo) into BVLC Caffe weights "
                    "for our generated deploy net, plus that deploy prototxt (OUT with .prototxt).",
        epilog="Known files: " + "; ".join(f"{k.filename} ({k.size:,} bytes, {k.description})"
                                           for k in KNOWN_FILES))
    p.add_argument("--weights", required=True,
                   help="the caffe-segnet caffemodel (user-supplied; never downloaded)")
    p.add_argument("--arch", required=True, help="architecture of the file, e.g. segnet or segnet-basic")
    p.add_argument("--out", required=True,
                   help="output caffemodel; the deploy prototxt is written next to it")
    p.add_argument("--classes", type=int, help=f"classes of the file (default: known file's, else {NUM_CLASSES})")
    p.add_argument("--height", type=int, help=f"deploy input height (default: known file's, else {HEIGHT})")
    p.add_argument("--width", type=int, help=f"deploy input width (default: known file's, else {WIDTH})")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold the BN affine into the convolutions (a net without BatchNorm/Scale layers)")
    p.add_argument("--force", action="store_true",
                   help="accept a file whose size/sha256 is not a known release")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("classes", "height", "width"):
        value = getattr(args, name)
        if value is not None and value < 1:
            fail(TOOL, f"--{name} must be positive, got {value}")
    console_logging()
    try:
        report = convert(args.weights, args.arch, args.out, args.classes, args.height, args.width,
                         args.force, args.fold_bn)
    except WeightsError as e:
        fail(TOOL, str(e))
    except OSError as e:
        fail(TOOL, f"{e.filename or args.out}: {e.strerror or e}")
    for note in report["notes"]:
        log(note)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
