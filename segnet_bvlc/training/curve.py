"""A run's training curve (curve.png) from its scalars.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from segnet_bvlc.core.files import atomic_path


def plot_curve(run: Path) -> Path | None:
    """curve.png: training loss and validation accuracy against iterations."""
    path = run / "scalars.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train_r = [r for r in records if "loss" in r]
    val_r = [r for r in records if "val_global_accuracy" in r]
    if not train_r:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r["iteration"] for r in train_r], [r["loss"] for r in train_r], color="tab:blue", label="train loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss", color="tab:blue")
    if val_r:
        ax2 = ax.twinx()
        for key, colour in (("val_global_accuracy", "tab:green"), ("val_class_average_accuracy", "tab:orange"),
                            ("val_mean_iou", "tab:red")):
            ax2.plot([r["iteration"] for r in val_r], [100 * r[key] for r in val_r], "o-", color=colour,
                     label=key.replace("val_", "val ").replace("_", " "))
        ax2.set_ylabel("validation (%)")
        ax2.set_ylim(0, 100)
        ax2.legend(loc="lower right", fontsize=8)
    ax.set_title(run.name)
    fig.tight_layout()
    out = run / "curve.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
