"""The report's figure: each weighting's test mIoU and BF per variant, ours beside the paper's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segnet_bvlc.core.files import atomic_path
from segnet_bvlc.study.planning import WEIGHTINGS


def plot(r: dict, path: Path) -> None:
    """A PNG of horizontal bars, one panel per (weighting, metric) with runs, from a report's result."""
    import matplotlib  # heavy and optional: only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(w, m) for w in WEIGHTINGS for m in ("mIoU", "BF") if any(x["weighting"] == w for x in r["runs"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    for ax, (w, m) in zip(axes[0], panels):
        rows = [x for x in r["runs"] if x["weighting"] == w]
        y = np.arange(len(rows))
        ax.barh(y - 0.2, [x[f"test_{m}"] or 0 for x in rows], 0.4, label="ours")
        ax.barh(y + 0.2, [x[f"paper_test_{m}"] or 0 for x in rows], 0.4, label="paper")
        ax.set_yticks(y, [x["arch"] for x in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{w.upper()} test {m} (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
