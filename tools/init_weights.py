"""`python -m tools.init_weights`: VGG16 ImageNet weights into ARCH's encoder, written as a caffemodel
(segnet_bvlc.training.init_weights)."""

import argparse
import json
import sys

from segnet_bvlc.core.errors import fail
from segnet_bvlc.dataset.camvid import HEIGHT, NUM_CLASSES, WIDTH
from segnet_bvlc.nets.weights_file import WeightsError
from segnet_bvlc.training.init_weights import write_initialised

TOOL = "init_weights"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.init_weights",
        description="Copy VGG16 ImageNet weights into ARCH's encoder and write them as a caffemodel (for "
                    "`caffe train --weights`); tools.train --init-weights does the same in-process.")
    p.add_argument("--vgg", required=True, help="VGG_ILSVRC_16_layers.caffemodel (553,432,081 bytes)")
    p.add_argument("--arch", required=True,
                   help="architecture, e.g. segnet, fcn, deconvnet, deeplab-largefov")
    p.add_argument("--out", required=True, help="output caffemodel")
    p.add_argument("--classes", type=int, default=NUM_CLASSES)
    p.add_argument("--height", type=int, default=HEIGHT)
    p.add_argument("--width", type=int, default=WIDTH)
    p.add_argument("--force", action="store_true", help="accept a file that is not the known VGG16 release")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    args = p.parse_args(argv)
    try:
        report = write_initialised(args.arch, args.vgg, args.out, args.classes, args.height, args.width, args.force)
    except WeightsError as e:
        fail(TOOL, str(e))
    print(f"{args.out}: {report}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
