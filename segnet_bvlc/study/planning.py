"""What a study is: its variants, its weightings, the runs it plans and the folders they go to."""

from __future__ import annotations

from pathlib import Path

from segnet_bvlc.core import paper
from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.core.log import logger

log = logger("study").info  # every part of the study logs as the command does
STUDIES = {
    "table1": tuple(paper.table1()),  # the paper's row order
    "table3": ("segnet", "fcn", "fcn-learnt-deconv", "deconvnet", "deeplab-largefov"),
}
WEIGHTINGS = {"mfb": "published", "nf": "none"}
DEFAULT_WEIGHTING = {"table1": "both", "table3": "nf"}  # Table 3 trained without class balancing
# The smoke preset checks the path, not a model: its LMDBs hold the first few images of each split, and a few
# images are scored per split.
SMALL = {"smoke": dict(train=8, val=4, evaluate=3)}


class StudyError(SegnetError):
    """A one-line reason the study cannot go on."""


def study_dir(results: Path, study: str, preset: str) -> Path:
    return results / f"{study}-{preset}"


def plan(study: str, weighting: str, archs: list[str] | None = None, shard: tuple[int, int] = (1, 1)
         ) -> list[tuple[str, str]]:
    """(arch, weighting) pairs in the order they run: weighting-major so that a partial study has whole columns.
    `shard` (i, n) keeps every n-th pair starting at the i-th (1-based)."""
    known = STUDIES[study]
    archs = list(archs or known)
    unknown = [a for a in archs if a not in known]
    if unknown:
        raise StudyError(f"--archs: {', '.join(unknown)} not in {study} (choose from {', '.join(known)})")
    weightings = list(WEIGHTINGS) if weighting == "both" else [weighting]
    pairs = [(a, w) for w in weightings for a in known if a in archs]
    i, n = shard
    return pairs[i - 1::n]


def run_folder(folder: Path, arch: str, weighting: str) -> Path:
    return folder / f"{arch}-{weighting}"


def finished(run: Path) -> bool:
    return all((run / p).is_file() for p in ("eval/test/metrics.json", "eval/train/metrics.json", "timings.json"))
