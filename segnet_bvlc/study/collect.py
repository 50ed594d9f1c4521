"""What the finished run folders of a study measured: their test and training metrics, learning rate, training
time and the machine's load at their stage ends."""

from __future__ import annotations

import json
from pathlib import Path

from segnet_bvlc.study.planning import STUDIES, WEIGHTINGS, finished, run_folder

METRICS = {"G": "global_accuracy", "C": "class_average_accuracy", "mIoU": "mean_iou", "BF": "boundary_f1"}


def _metrics(path: Path) -> dict | None:
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    return {k: (None if m.get(v) is None else round(100 * m[v], 2)) for k, v in METRICS.items()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_seconds(run: Path) -> float:
    """Seconds a run spent training over all its starts, from scalars.jsonl: each logged interval's time per
    iteration times its iterations, plus each validation's seconds. Iterations redone after a kill (those past the
    last snapshot) count again: they are time the run took. timings.json's train_s counts only the starts that
    ended normally, so a run killed at a session's end would look shorter than it was."""
    log_every = json.loads((run / "config.json").read_text()).get("log_every", 1)
    total, previous = 0.0, 0
    for record in _jsonl(run / "scalars.jsonl"):
        if "time_per_iter_s" in record:
            step = record["iteration"] - previous if record["iteration"] > previous else log_every  # a new start
            total += record["time_per_iter_s"] * step
            previous = record["iteration"]
        total += record.get("seconds", 0.0) if "val_global_accuracy" in record else 0.0
    return total


def run_record(run: Path) -> dict:
    """One finished run: {"test": {G, C, mIoU, BF}, "train": {G, C, mIoU}, "lr", "train_minutes", ...}."""
    test, train = _metrics(run / "eval/test/metrics.json"), _metrics(run / "eval/train/metrics.json")
    train.pop("BF", None)
    timings = json.loads((run / "timings.json").read_text())
    loads = [s["load"] for s in _jsonl(run / "stages.jsonl") if "load" in s]
    state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {}
    config = json.loads((run / "config.json").read_text())
    return {
        "test": test, "train": train, "lr": config["base_lr"],
        "train_minutes": round(training_seconds(run) / 60, 1),
        "other_minutes": round(sum(v for k, v in timings.items() if k.startswith("all_invocations_")
                                   and k != "all_invocations_train_s") / 60, 1),
        "best_iteration": state.get("best_iteration"),
        "load_at_stage_ends": loads,
    }


def collect(folder: Path, study: str) -> dict:
    """{arch: {weighting: run_record}} for every finished run folder."""
    table: dict = {}
    for arch in STUDIES[study]:
        for w in WEIGHTINGS:
            run = run_folder(folder, arch, w)
            if finished(run):
                table.setdefault(arch, {})[w] = run_record(run)
    return table
