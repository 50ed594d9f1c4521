"""A few finished run folders side by side: their test metrics per class and overall, with the difference of
each to the first (e.g. the label-alignment measurement)."""

from __future__ import annotations

import json
from pathlib import Path

from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.dataset.camvid import HEIGHT, WIDTH
from segnet_bvlc.study.collect import METRICS
from segnet_bvlc.study.planning import StudyError, log
from segnet_bvlc.study.report import machine


def _scoring(run: Path) -> dict:
    """The metrics.json a folder stands for: its own, else its eval/test one."""
    path = run / "metrics.json" if (run / "metrics.json").is_file() else run / "eval" / "test" / "metrics.json"
    if not path.is_file():
        raise StudyError(f"{run}: not a finished run (no eval/test/metrics.json) nor a scored folder "
                         "(no metrics.json)")
    return json.loads(path.read_text())


def _markdown(runs: dict[str, Path], results: dict[str, dict], title: str) -> list[str]:
    labels = list(results)
    first = results[labels[0]]
    two = len(labels) == 2
    lines = [f"# {title}", "", f"Written by `python -m tools.study compare` from {', '.join(f'`{r}`' for r in runs.values())}"
             f" ({len(first.get('per_class', []))} classes, {first.get('images')} test images, scored at "
             f"{HEIGHT}×{WIDTH}).",
             "", "| | " + " | ".join(labels) + (" | difference |" if two else " |"),
             "|---|" + "---:|" * (len(labels) + two)]
    for name, key in METRICS.items():
        values = [100 * results[label][key] for label in labels]
        diff = f" | {values[1] - values[0]:+.2f}" if two else ""
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + diff + " |")
    if all(results[label].get("predict_seconds_per_image") for label in labels):
        lines.append("| s / image (load) | " + " | ".join(
            f"{results[label]['predict_seconds_per_image']:.2f} ({results[label].get('predict_load', 0):.1f})"
            for label in labels) + (" | |" if two else " |"))
        lines += ["", "s / image: the median time to predict one test image (resize, forward passes, upsampling to "
                  f"{HEIGHT}×{WIDTH}), with the load average when the scoring ended."]
    lines += ["", "Per class, IoU / BF (%):", "", "| class | " + " | ".join(labels) + " |",
              "|---|" + "---:|" * len(labels)]
    for i, c in enumerate(first.get("per_class", [])):
        cells = [f"{100 * results[label]['per_class'][i]['iou']:.1f} / "
                 f"{100 * (results[label]['per_class'][i]['boundary_f1'] or 0):.1f}" for label in labels]
        lines.append(f"| {c['name']} | " + " | ".join(cells) + " |")
    return lines


def compare(runs: dict[str, Path], out: Path, title: str) -> dict:
    """The test metrics of a few finished run folders side by side, per class and overall, with the difference
    of each to the first (e.g. the label-alignment measurement): out/comparison.{md,json}. A folder holding a
    metrics.json itself (e.g. a run's eval/test-mc40, Monte Carlo dropout) stands for that scoring."""
    results = {label: _scoring(run) for label, run in runs.items()}
    summary = {"title": title, "runs": {label: str(run) for label, run in runs.items()},
               "metrics": {label: {k: m[k] for k in METRICS.values()}
                           | {k: m.get(k) for k in ("samples", "predict_seconds_per_image", "predict_load")}
                           for label, m in results.items()},
               "machine": machine()}
    write_text_atomic(out / "comparison.md", "\n".join(_markdown(runs, results, title)) + "\n")
    write_text_atomic(out / "comparison.json", json.dumps(summary, indent=2) + "\n")
    log(f"[study] {out / 'comparison.md'}")
    return summary
