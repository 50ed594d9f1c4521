"""A study's report from the finished runs in its folder: STUDY.json (everything), STUDY.md (report_text),
STUDY.csv (one row per run) and STUDY.png (figures)."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from segnet_bvlc.core import paper
from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.provenance import provenance
from segnet_bvlc.study.collect import collect
from segnet_bvlc.study.costs import architecture_columns, paper_preset_estimate
from segnet_bvlc.study.figures import plot
from segnet_bvlc.study.findings import cell, findings, rank_agreement
from segnet_bvlc.study.planning import STUDIES, WEIGHTINGS, StudyError, log, run_folder, study_dir
from segnet_bvlc.study.report_text import render_markdown


def machine() -> dict:
    """The provenance record with the load and the time of writing. `processor` is platform.processor() as it
    is (empty where the platform does not say; the text falls back on `machine`), as the reports have always
    recorded it."""
    record = {**provenance(), "processor": platform.processor()}
    return {**record, "machine": platform.machine(), "load_now": round(os.getloadavg()[0], 2),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _paper_cell(study: str, arch: str, w: str, split: str, metric: str):
    if study == "table1":
        return paper.table1()[arch][w][split].get(metric)
    return paper.table3()[arch]["max"].get(metric) if split == "test" else None


def _rows(study: str, table: dict, archs: list[str], columns: dict) -> list[dict]:
    """One row per run: the architecture's columns, the run's record and each metric beside the paper's."""
    rows = []
    for a in archs:
        for w in WEIGHTINGS:
            if w not in table[a]:
                continue
            row = {"arch": a, "weighting": w, **columns[a], **{k: v for k, v in table[a][w].items()
                                                                if k not in ("test", "train")}}
            for split, names in paper.TABLE1_METRICS.items():
                for m in names:
                    ours, theirs = cell(table, a, w, split, m), _paper_cell(study, a, w, split, m)
                    row[f"{split}_{m}"] = ours
                    row[f"paper_{split}_{m}"] = theirs
                    row[f"diff_{split}_{m}"] = None if ours is None or theirs is None else round(ours - theirs, 2)
            rows.append(row)
    return rows


def _ranking(study: str, table: dict, archs: list[str]) -> dict:
    """Per weighting and test metric (mIoU, BF): our order of the variants, the paper's and their agreement."""
    ranking = {}
    for w in WEIGHTINGS:
        for m in ("mIoU", "BF"):
            ours = {a: cell(table, a, w, "test", m) for a in archs}
            theirs = {a: _paper_cell(study, a, w, "test", m) for a in archs}
            ranking[f"{w} test {m}"] = {**rank_agreement(ours, theirs),
                                        "ours": sorted((a for a in ours if ours[a] is not None),
                                                       key=lambda a: -ours[a]),
                                        "paper": sorted(theirs, key=lambda a: -(theirs[a] or 0))}
    return ranking


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    keys = [k for k in rows[0] if k != "load_at_stage_ends"]
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def report(study: str, preset: str, results: Path) -> dict:
    """Write STUDY.{md,json,csv,png} into the study folder from the finished runs there."""
    folder = study_dir(results, study, preset)
    if not folder.is_dir():
        raise StudyError(f"{folder}: no such study folder (run `python -m tools.study run` first)")
    table = collect(folder, study)
    if not table:
        raise StudyError(f"{folder}: no finished run yet")
    archs = [a for a in STUDIES[study] if a in table]
    columns = {a: architecture_columns(a, results) for a in archs}
    rows = _rows(study, table, archs, columns)
    any_run = run_folder(folder, archs[0], next(iter(table[archs[0]])))
    images = {split: json.loads((any_run / "eval" / split / "metrics.json").read_text()).get("images")
              for split in ("test", "train")}
    result = {"study": study, "preset": preset, "images": images, "runs": rows,
              "ranking": _ranking(study, table, archs),
              "paper_preset_estimate": paper_preset_estimate(study, archs, columns, results),
              "findings": findings(table) if study == "table1" else [], "machine": machine(),
              "missing": [f"{a}-{w}" for a in STUDIES[study] for w in WEIGHTINGS if w not in table.get(a, {})]}
    write_text_atomic(folder / f"{study}.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(folder / f"{study}.md", render_markdown(result))
    _write_csv(folder / f"{study}.csv", rows)
    plot(result, folder / f"{study}.png")
    log(f"[study] {len(rows)} runs reported: {folder / (study + '.md')}")
    return result
