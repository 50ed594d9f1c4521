"""The web demo as a user meets it, measured (`python -m tools.demo_measure`): the demo server on a run, driven
in Debian's headless Chromium, the time from a click on a gallery image to the result shown."""

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
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.log import logger
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.dataset.camvid import read_list

TOOL = "demo_measure"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
log = logger(TOOL).info


class MeasureError(SegnetError):
    """The measurement cannot be made: the server did not start, or the run cannot do what was asked."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(run: Path, camvid: Path, port: int, log_file) -> subprocess.Popen:
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
                raise MeasureError("the demo server did not start (see its log)") from None
            time.sleep(0.3)


def _time_clicks(page, url: str, run: Path, samples: list[int], stems: list[str]) -> dict[str, list[float]]:
    """Seconds from the click on each gallery image to the result shown, per sample count, each count on a fresh
    page (no image selected, nothing running)."""
    times: dict[str, list[float]] = {}
    for n in samples:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=60000)
        if n and page.is_disabled("#samples"):
            raise MeasureError(f"{run}: no dropout layers, so no Monte Carlo samples (--samples 0)")
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
    return times


def measure(run: Path, camvid: Path, samples: list[int], images: int, out: Path) -> dict:
    """Time the demo on `run` over the first `images` CamVid test images for each sample count: out/demo.json
    (every time, medians, load, machine) and out/demo.jpg (the page after the last image)."""
    from playwright.sync_api import sync_playwright  # optional: only this measurement drives a browser

    stems = [image.stem for image, _ in read_list(camvid, "test")[:images]]
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="segnet-demo-measure-") as tmp, \
            open(Path(tmp) / "server.log", "w") as server_log:
        server = _start_server(run, camvid, port, server_log)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch_persistent_context(
                    str(Path(tmp) / "profile"), executable_path=str(CHROMIUM), headless=True,
                    args=["--no-sandbox", "--disable-gpu"], viewport={"width": 1400, "height": 1000})
                page = browser.new_page()
                times = _time_clicks(page, f"http://127.0.0.1:{port}/", run, samples, stems)
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
