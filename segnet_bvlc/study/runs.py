"""Training a study's planned runs: one `tools.camvid_pipeline train` child per (architecture, weighting), the
LMDBs shared; finished runs are skipped, unfinished ones resumed."""

from __future__ import annotations

import collections
import ctypes
import signal
import subprocess
import sys
import time
from pathlib import Path

from prototxt.protocol import settings
from segnet_bvlc.core import interrupt
from segnet_bvlc.core.errors import INTERRUPTED
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.lmdb_data.convert import convert
from segnet_bvlc.study.planning import SMALL, STUDIES, WEIGHTINGS, finished, log, plan, run_folder, study_dir

# How a stopped child ends (Ctrl-C, SIGTERM, a kill, the study's own end): the run resumes later. Any other death
# (an abort, a segfault) is the run's failure.
STOPPED_STATUSES = (130, 143)
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL)


def _die_with_parent() -> None:
    """The child gets SIGTERM when the study dies (even by SIGKILL): it snapshots and stops, so that a re-run
    never finds it still training (the run folder's lock would refuse the re-run meanwhile)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_command(folder: Path, arch: str, weighting: str, preset: str, camvid: Path, init_weights: str | None
                ) -> list[str]:
    cmd = [sys.executable, "-m", "tools.camvid_pipeline", "train", "--arch", arch, "--preset", preset,
           "--camvid", str(camvid), "--run", str(run_folder(folder, arch, weighting)), "--lmdb",
           str(folder / "lmdb"), "--class-weights", WEIGHTINGS[weighting], "--eval-train"]
    if preset in SMALL:
        cmd += ["--limit", str(SMALL[preset]["evaluate"])]
    if init_weights:
        cmd += ["--init-weights", init_weights]
    return cmd


def _train(cmd: list[str]) -> tuple[int, str | None, int | None]:
    """Run one pipeline child to its end: (its exit status, its last non-empty stderr line, the signal that
    stopped the study meanwhile or None). Its stderr is passed through. A signal to the study lets the child
    snapshot first: Ctrl-C reaches the child through the terminal's process group; any other signal is passed
    on to it."""
    child = subprocess.Popen(cmd, cwd=ROOT, preexec_fn=_die_with_parent, stderr=subprocess.PIPE, text=True,
                             bufsize=1)
    tail: collections.deque = collections.deque(maxlen=1)
    signum = None
    with interrupt.raising():
        try:
            for line in child.stderr:
                sys.stderr.write(line)
                if line.strip():
                    tail.append(line.strip())
            code = child.wait()
        except interrupt.Interrupted as stop:
            signum = stop.signum
            if signum != signal.SIGINT:
                child.send_signal(signum)
            code = child.wait()
    return code, (tail[0] if tail else None), signum


def run(study: str, preset: str, weighting: str, camvid: Path, results: Path, archs: list[str] | None = None,
        shard: tuple[int, int] = (1, 1), init_weights: str | None = None) -> int:
    """Train and score every planned run that is not finished: 0 when all are, 1 when some failed, 128 + N when
    stopped (by signal N to the study; 130 when only the child was stopped)."""
    folder = study_dir(results, study, preset)
    pairs = plan(study, weighting, archs, shard)
    if preset in SMALL:
        _small_lmdbs(folder / "lmdb", preset, camvid, STUDIES[study][0])
    failed = []
    for n, (arch, w) in enumerate(pairs, 1):
        target = run_folder(folder, arch, w)
        if finished(target):
            log(f"[study] {n}/{len(pairs)} {target.name}: finished")
            continue
        log(f"[study] {n}/{len(pairs)} {target.name}: {'resuming' if target.exists() else 'starting'}")
        t0 = time.perf_counter()
        code, last_line, signum = _train(run_command(folder, arch, w, preset, camvid, init_weights))
        if signum is not None or code in STOPPED_STATUSES or -code in STOPPING_SIGNALS:
            log(f"[study] stopped during {target.name}: run the same command again to finish")
            return 128 + signum if signum is not None else INTERRUPTED
        if code != 0:
            failed.append(f"{target.name} ({last_line or f'exit {code}'})")
            log(f"[study] {target.name} failed (exit {code}); going on with the others")
        else:
            log(f"[study] {target.name} done in {(time.perf_counter() - t0) / 60:.1f} min")
    if failed:
        log(f"[study] {len(failed)} run(s) failed: " + "; ".join(failed))
        return 1
    return 0


def _small_lmdbs(lmdb: Path, preset: str, camvid: Path, arch: str) -> None:
    """The first images of train and val at the preset's size (the pipeline takes LMDBs of its size as they are)."""
    p = settings(arch, preset)
    for split in ("train", "val"):
        if not (lmdb / split / "meta.json").is_file():
            convert(camvid, split, lmdb / split, height=p["height"], width=p["width"], limit=SMALL[preset][split],
                    progress=False)
