"""Caffe builds and CPU settings side by side: speed and whether the numbers change.

    python -m tools.cpu_speed --config base=PREFIX_A --config omp=PREFIX_B --config omp1=PREFIX_B:OMP_NUM_THREADS=1 \
        --arch segnet-basic,segnet-basic-single-channel-decoder --out results/cpu-speed/compare

A configuration is LABEL=PREFIX[:VAR=VALUE[:VAR=VALUE...]]: a Caffe install prefix (a folder of the build cache,
~/.cache/segnet-bvlc/bvlc-..., holding python/ and lib/) and environment settings for it (thread counts, a BLAS
preloaded with LD_PRELOAD). Each (configuration, architecture) runs in a fresh child process, the configurations
interleaved round by round so that a change in the machine's load falls on all of them alike. A child builds the
generated TRAIN net at batch 1 (segnet_bvlc.benchmark.timing.net_param), loads the same weights and inputs as
every other child, and times forward and backward (medians of its passes); the report takes the median over rounds.

Numerics: every child writes its net's outputs and every parameter gradient after one forward + backward; the
report gives, per configuration, the largest difference from the first configuration's (0 = bit-identical).
With --peer torch a child times the same net in PyTorch too (segnet_bvlc.benchmark.torch_peer), the ratio's
denominator.

Writes OUT.md and OUT.json: the machine, each configuration's Caffe build, BLAS and threads, the load at the start
and the end. Never time beside another heavy job: the load is recorded, not corrected for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segnet_bvlc.benchmark.cpu_speed import SpeedError, child, run
from segnet_bvlc.core.errors import fail
from segnet_bvlc.dataset.camvid import HEIGHT, WIDTH


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.cpu_speed", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--config", action="append", default=[], help="LABEL=PREFIX[:VAR=VALUE...]; the first is the "
                   "baseline (give it at least once)")
    p.add_argument("--arch", default="segnet-basic", help="comma-separated architectures")
    p.add_argument("--height", type=int, default=HEIGHT)
    p.add_argument("--width", type=int, default=WIDTH)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peer", action="store_true", help="also PyTorch (needs the test extra: make setup EXTRAS=test)")
    p.add_argument("--out", type=Path, default=Path("results/cpu-speed/compare"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child and not args.config:
        p.error("give at least one --config")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    try:
        run(args, progress=lambda line: print(line, flush=True))
    except SpeedError as e:
        return fail("cpu_speed", str(e))
    print(f"[cpu_speed] wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
