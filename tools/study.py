"""The paper's controlled benchmark, whole: every Table 1 variant (or Table 3 network) trained, scored and set
beside the paper.

    python -m tools.study run --study table1 --preset quick --weighting both [--archs A,B] [--shard 1/2]
    python -m tools.study report --study table1 --preset quick
    python -m tools.study compare before=RUN_A after=RUN_B --out FOLDER

`run` trains one standard run folder per (architecture, weighting) under RESULTS/STUDY-PRESET/ARCH-WEIGHTING,
each made by the same pipeline as `make camvid-train` (tools.camvid_pipeline train, with the training split
scored too: the paper's Train columns), with the LMDBs converted once into RESULTS/STUDY-PRESET/lmdb and shared.
Finished runs are skipped, unfinished ones resumed: kill it at any moment and run the same command again. Runs
can be spread over machines with --archs or --shard i/n (the i-th of every n planned runs) and merged by
`report`, which reads whatever run folders are there.

`report` writes STUDY.md, .json, .csv and .png into the study folder: for every run G, C, mIoU, BF on the test
split and G, C, mIoU on the training split beside the paper's (data/paper.json) and the difference; params and
storage multiplier from the generated nets, inference time from RESULTS/benchmark/benchmark.json when
`make benchmark` has written it; the paper preset's training time estimated from the benchmark's measured
per-image step and from the paper's own GPU timings; the ranking of the variants by test mIoU and BF against the
paper's (Spearman, Kendall); and the paper's findings (docs/paper.md §1) checked on the measured table, each held /
not held.

Weightings: `mfb` trains with the published median-frequency class weights (data/camvid.json, SegNet-Tutorial's
`class_weighting`), `nf` with none (natural frequency), as Table 1's two column groups.
"""


from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prototxt.protocol import settings
from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.log import console_logging
from segnet_bvlc.study.compare import compare
from segnet_bvlc.study.planning import DEFAULT_WEIGHTING, STUDIES, StudyError
from segnet_bvlc.study.report import report
from segnet_bvlc.study.runs import run

TOOL = "study"


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not i/n (e.g. 1/2)") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"'{text}': need 1 <= i <= n")
    return i, n


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(TOOL, __doc__, epilog_from=2)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "report"):
        s = sub.add_parser(name)
        s.add_argument("--study", choices=STUDIES, default="table1")
        s.add_argument("--preset", default="quick", help="quick (default), paper or smoke")
        s.add_argument("--results", type=Path, default=Path("results"), help="where study folders go")
    r = sub.choices["run"]
    r.add_argument("--weighting", choices=("nf", "mfb", "both"), help="default: both for table1, nf for table3")
    r.add_argument("--archs", help="comma-separated subset (default: every variant of the study)")
    r.add_argument("--shard", type=_shard, default=(1, 1), help="i/n: the i-th of every n planned runs")
    r.add_argument("--camvid", type=Path, default=Path("data/CamVid"))
    r.add_argument("--init-weights", help="VGG16 caffemodel for Table 3's encoders")
    r.add_argument("--no-report", dest="report", action="store_false", help="train only")
    c = sub.add_parser("compare", help="test metrics of finished run folders side by side")
    c.add_argument("runs", nargs="+", metavar="LABEL=RUN", help="a label and a finished run folder (its eval/test), "
                   "or a folder with a metrics.json (e.g. RUN/eval/test-mc40)")
    c.add_argument("--out", type=Path, required=True, help="folder for comparison.md and comparison.json")
    c.add_argument("--title", default="Runs compared")
    return parser


def _compare(args) -> int:
    pairs = [item.split("=", 1) for item in args.runs]
    if any(len(p) != 2 for p in pairs):
        raise StudyError("give each run as LABEL=RUN")
    compare({label: Path(folder) for label, folder in pairs}, args.out, args.title)
    return 0


def _run_or_report(args) -> int:
    settings(STUDIES[args.study][0], args.preset)  # an unknown preset fails here, before anything is written
    results = args.results.resolve()
    if args.command == "report":
        report(args.study, args.preset, results)
        return 0
    if not (args.camvid / "train.txt").is_file():
        raise StudyError(f"{args.camvid}: no train.txt - put CamVid there or set CAMVID=...")
    archs = [a for a in args.archs.split(",") if a] if args.archs else None
    code = run(args.study, args.preset, args.weighting or DEFAULT_WEIGHTING[args.study], args.camvid.resolve(),
               results, archs, args.shard, args.init_weights)
    if code >= 128 or not args.report:  # stopped: the report waits for the study to finish
        return code
    report(args.study, args.preset, results)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console_logging()
    if args.command == "compare":
        try:
            return _compare(args)
        except StudyError as e:
            fail(TOOL, str(e))
    try:
        return _run_or_report(args)
    except ValueError as e:  # StudyError and every other SegnetError
        fail(TOOL, str(e))
    except OSError as e:
        fail(TOOL, f"{e.filename or args.results}: {e.strerror or e}")


if __name__ == "__main__":
    sys.exit(main())
