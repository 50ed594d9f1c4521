"""STUDY.md: a study's report as Markdown, from the result `report.report` writes to STUDY.json."""

from __future__ import annotations

import collections

from prototxt.protocol import FCN_BASIC_LR
from segnet_bvlc.core import paper
from segnet_bvlc.dataset.camvid import HEIGHT, SPLIT_SIZES, WIDTH
from segnet_bvlc.study.planning import WEIGHTINGS

SIZE = f"{HEIGHT}×{WIDTH}"  # the size every image is scored at


def fmt(v) -> str:
    """A cell: — for a missing value, integers as they are, other numbers to one decimal."""
    return "—" if v is None else f"{v:g}" if isinstance(v, int) else f"{v:.1f}"


def render_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# {r['study']} at the {r['preset']} preset, beside the paper", "",
             f"Written by `python -m tools.study report --study {r['study']} --preset {r['preset']}` on "
             f"{m.get('written')}: {m.get('cpus')} CPUs ({m.get('processor') or m.get('machine')}), load "
             f"{m.get('load_now')} when the report was written; each run's load at its stage ends is in the JSON. "
             f"Ours / paper (difference), percentages; {r['images']['test']} test and {r['images']['train']} "
             f"training images scored at {SIZE}.", ""]
    for w in WEIGHTINGS:
        lines += _weighting_table(r, w)
    lines += _column_notes(r)
    lines += _estimate_markdown(r)
    lines += _ranking_and_findings(r)
    if r["missing"]:
        lines += ["", f"Not finished yet: {', '.join(r['missing'])}."]
    return "\n".join(lines) + "\n"


def _weighting_table(r: dict, w: str) -> list[str]:
    """The runs of one weighting, each metric ours / the paper's (difference)."""
    rows = [x for x in r["runs"] if x["weighting"] == w]
    if not rows:
        return []
    lines = [f"## {w.upper()} ({'median-frequency class weights' if w == 'mfb' else 'no class weights'})", "",
             "| variant | params M | storage | infer ms | lr | test G | test C | test mIoU | test BF | train G | "
             "train C | train mIoU | best iter | train min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in rows:
        cells = []
        for split, names in paper.TABLE1_METRICS.items():
            for k in names:
                ours, theirs = x[f"{split}_{k}"], x[f"paper_{split}_{k}"]
                cells.append(f"{fmt(ours)} / {fmt(theirs)}" + ("" if x[f"diff_{split}_{k}"] is None
                                                               else f" ({x[f'diff_{split}_{k}']:+.1f})"))
        storage = "n/a" if x["storage"] is None else x["storage"]
        infer = f"{fmt(x['infer_ms'])} / {fmt(paper.table1().get(x['arch'], {}).get('infer_ms'))}"
        lines.append(f"| {x['arch']} | {x['params_m']:.3f} | {storage} | {infer} | {x['lr']:g} | "
                     + " | ".join(cells)
                     + f" | {fmt(x['best_iteration'])} | {fmt(x['train_minutes'])} |")
    return lines + [""]


def _column_notes(r: dict) -> list[str]:
    """What the lr and infer ms columns are."""
    lines = []
    if len({x["lr"] for x in r["runs"]}) > 1:
        lines += ["lr: each run's learning rate. The paper trains every variant at 0.1; the FCN-Basic family diverges "
                  f"there in this reading and trains at {FCN_BASIC_LR:g} (docs/paper.md §9.4).", ""]
    if any(x["infer_ms"] is None for x in r["runs"]):
        lines += [f"infer ms: the deploy net's forward at batch 1, {SIZE}, from `make benchmark` "
                  "(RESULTS/benchmark/benchmark.json; — where it has not run) / the paper's (an NVIDIA Titan).", ""]
    else:
        lines += [f"infer ms: the deploy net's forward at batch 1, {SIZE}, on {r['paper_preset_estimate']['device']} "
                  "(`make benchmark`) / the paper's (an NVIDIA Titan, cuDNN v3).", ""]
    return lines


def _ranking_and_findings(r: dict) -> list[str]:
    lines = ["## Ranking by test score against the paper's", "",
             "| columns | runs | Spearman ρ | Kendall τ | ours, best first |", "|---|---:|---:|---:|---|"]
    for key, v in r["ranking"].items():
        if v["n"]:
            lines.append(f"| {key} | {v['n']} | {fmt(v['spearman'])} | {fmt(v['kendall'])} | "
                         f"{', '.join(v['ours'])} |")
    if r["findings"]:
        lines += ["", "## The paper's findings, checked on this table (MFB test columns unless said)", ""]
        for f in r["findings"]:
            values = ", ".join(f"{k} {fmt(v)}" for k, v in f["values"].items()) if len(f["values"]) <= 6 else \
                "see the table"
            lines.append(f"- **{f['status']}**: {f['finding']} ({values})")
    return lines


def _estimate_markdown(r: dict) -> list[str]:
    """The paper preset's training time per run, estimated from measured per-image step times."""
    e = r["paper_preset_estimate"]
    p = e["paper_preset"]
    ours = [a for a, v in e["archs"].items() if v["hours"] is not None]
    theirs = [a for a, v in e["archs"].items() if v["paper_gpu_hours"] is not None]
    if not ours and not theirs:
        return []
    # The text names the function as the reports always have: the report is kept byte for byte.
    lines = ["## The paper preset's training time, estimated", "",
             f"One run of the paper preset is {p['max_iter']:,} iterations of {p['batch']} images at {SIZE} and a "
             f"validation pass over the {SPLIT_SIZES['val']} validation images every {p['val_every']:,} iterations "
             "(`tools.study.paper_preset_hours`: a step of B images taken as B one-image steps). Per-image step = "
             "forward + backward of the TRAIN net at batch 1.", "",
             "| variant | step ms, this benchmark | hours per run | step ms, the paper's GPU | hours per run |",
             "|---|---:|---:|---:|---:|"]
    for a, v in e["archs"].items():
        lines.append(f"| {a} | {fmt(v['step_ms'])} | {fmt(v['hours'])} | {fmt(v['paper_gpu_step_ms'])} | "
                     f"{fmt(v['paper_gpu_hours'])} |")
    weightings = max(collections.Counter(x["arch"] for x in r["runs"]).values())  # runs per variant in the plan

    def total(key: str) -> float:
        return weightings * sum(v[key] for v in e["archs"].values() if v[key] is not None)

    lines += ["", f"- This benchmark: {e['device'] or 'none yet (`make benchmark`; `GPU=0` on a GPU machine)'}"
              + (f"; all {weightings * len(ours)} runs: {total('hours'):.0f} hours." if ours else ".")]
    if theirs:
        lines.append("- The paper's GPU: Table 1's inference time × (forward + backward) / forward of SegNet in Table 6 "
                     "(an NVIDIA Titan with cuDNN v3, 2015; a modern GPU is faster, by how much only `make benchmark "
                     f"GPU=0` there says); all {weightings * len(theirs)} runs: {total('paper_gpu_hours'):.0f} hours.")
    return lines + [""]
