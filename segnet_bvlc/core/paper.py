"""The paper's published numbers, read from data/paper.json: the one copy the generators (parameter counts), the
benchmark (Tables 1 and 6), the Table 1 / Table 3 study and the tests use. docs/paper.md says how each cell was
read from the paper."""

from __future__ import annotations

import json
from functools import cache

from segnet_bvlc.core.paths import DATA

PATH = DATA / "paper.json"
TABLE1_METRICS = {"test": ("G", "C", "mIoU", "BF"), "train": ("G", "C", "mIoU")}  # Table 1 has no Train BF
WEIGHTINGS = ("mfb", "nf")


@cache
def _data() -> dict:
    return json.loads(PATH.read_text())


def table1() -> dict[str, dict]:
    """arch -> {params_m, storage (None = "n/a"), infer_ms, mfb/nf: {test: {G, C, mIoU, BF}, train: {G, C, mIoU}}},
    in the paper's row order."""
    return {arch: _data()["table1"][arch] for arch in _data()["table1_order"]}


def table3() -> dict[str, dict]:
    """arch -> {"40k" | "80k" | "max": {G, C, mIoU, BF}, max_iter}."""
    return dict(_data()["table3"])


def table6() -> dict[str, dict[str, float]]:
    """arch -> {forward_ms, backward_ms, train_memory_mb, infer_memory_mb, model_mb}."""
    columns = _data()["table6_columns"]
    return {arch: dict(zip(columns, row)) for arch, row in _data()["table6"].items()}


def params(arch: str) -> float | None:
    """The published parameter count of `arch` (None where no figure is published)."""
    value = _data()["params_m"].get(arch)
    return None if value is None else value * 1e6
