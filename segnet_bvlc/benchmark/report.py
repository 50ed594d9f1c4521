"""The benchmark's report: its measurements beside the paper's figures (data/paper.json), as Markdown, CSV, JSON
and a chart, written together or not at all."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from segnet_bvlc.core import paper

# ------------------------------------------------------------------------------------------ the paper's figures
# The paper's figures (data/paper.json, docs/paper.md §1 and §5). Table 1: params (M), storage multiplier
# (None = "n/a"), inference time (ms, Titan, cuDNN v3). Table 6: forward ms, backward ms, training memory MB
# (batch 4), inference memory MB (batch 1), model size MB.
PAPER_TABLE1: dict[str, tuple[float, int | None, float]] = {
    arch: (row["params_m"], row["storage"], row["infer_ms"]) for arch, row in paper.table1().items()}
PAPER_TABLE6: dict[str, tuple[float, ...]] = {arch: tuple(row.values()) for arch, row in paper.table6().items()}
TABLE1_REFERENCE, TABLE6_REFERENCE = "segnet-basic", "segnet"


# ------------------------------------------------------------------------------------------ report
def _ratio(a, b):
    return a / b if a is not None and b else None


def _f(x, fmt="{:.1f}"):
    return "—" if x is None else fmt.format(x)


def summarise(rows: list[dict]) -> dict:
    """Ratios to the reference architectures, ours next to the paper's."""
    by = {r["arch"]: r for r in rows}
    ratios = {"table6": [], "table1": []}
    ref6 = by.get(TABLE6_REFERENCE)
    if ref6:
        p = PAPER_TABLE6[TABLE6_REFERENCE]
        for arch, theirs in PAPER_TABLE6.items():
            r = by.get(arch)
            if not r or arch == TABLE6_REFERENCE:
                continue
            ratios["table6"].append({
                "arch": arch, "vs": TABLE6_REFERENCE,
                "forward": (_ratio(r["forward_ms"], ref6["forward_ms"]), theirs[0] / p[0]),
                "backward": (_ratio(r["backward_ms"], ref6["backward_ms"]), theirs[1] / p[1]),
                "train_memory": (_ratio(r["train_mem_mib"], ref6["train_mem_mib"]), theirs[2] / p[2]),
                "infer_memory": (_ratio(r["infer_mem_mib"], ref6["infer_mem_mib"]), theirs[3] / p[3]),
                "model_size": (_ratio(r["model_bytes"], ref6["model_bytes"]), theirs[4] / p[4]),
            })
    ref1 = by.get(TABLE1_REFERENCE)
    if ref1:
        p = PAPER_TABLE1[TABLE1_REFERENCE]
        for arch, theirs in PAPER_TABLE1.items():
            r = by.get(arch)
            if not r or arch == TABLE1_REFERENCE:
                continue
            ratios["table1"].append({
                "arch": arch, "vs": TABLE1_REFERENCE,
                "params": (_ratio(r["params"], ref1["params"]), theirs[0] / p[0]),
                "infer_time": (_ratio(r["infer_ms"], ref1["infer_ms"]), theirs[2] / p[2]),
            })
    return ratios


def _header(result: dict) -> str:
    m, cfg = result["machine"], result["config"]
    ob = m["openblas"]
    return (f"# SegNet benchmark ({m['date']})\n\n"
            f"Machine: {m['cpu'] or '?'}, {m['cpus_usable']} usable CPUs, {m['memory_gib']} GiB; {m['os']}. "
            f"Caffe: BVLC {m['caffe_version']} {m['caffe_build']} build ({m['caffe_prefix']}), run in {m['mode']} mode"
            f"{' on ' + m['gpu'] if m['gpu'] else ''}. OpenBLAS threads: {ob.get('threads')} "
            f"(OPENBLAS_NUM_THREADS={ob.get('OPENBLAS_NUM_THREADS')}; {ob.get('config') or 'build unknown'}). "
            f"Python {m['python']}, numpy {m['numpy']}, "
            f"protobuf {m['protobuf']}. Project commit {m['project_commit']}.\n\n"
            f"Input {cfg['height']}x{cfg['width']}, 11 classes; times are medians of {cfg['repeats']} passes after "
            f"{cfg['warmup']} warm-up; `caffe time` over {cfg['cli_iterations']} iterations; training memory at batch "
            f"{cfg['train_batch']}. Took {result['seconds']:.0f} s. Load average (1/5/15 min) at the start "
            f"{m.get('load_average_start')}, at the end {m.get('load_average_end')} on {m['cpus_usable']} CPUs: other "
            "processes skew the times.\n\n")


def _all_architectures(rows: list[dict]) -> str:
    out = ["## All architectures\n\n",
           "| arch | params | model MB | fwd ms | bwd ms | caffe time fwd / bwd ms | infer ms | infer MiB | train MiB "
           "| storage | Python layers % fwd / bwd |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"]
    for r in rows:
        ct = r.get("caffe_time")
        out.append(f"| {r['arch']} | {r['params']:,} | {r['model_bytes'] / 1e6:.1f} | {r['forward_ms']:.1f} | "
                   f"{r['backward_ms']:.1f} | {_f(ct and ct['forward_ms'])} / {_f(ct and ct['backward_ms'])} | "
                   f"{r['infer_ms']:.1f} | {r['infer_mem_mib']:.0f} | {r['train_mem_mib']:.0f} | "
                   f"{r['storage_multiplier']} | "
                   f"{100 * r['python_forward_share']:.1f} / {100 * r['python_backward_share']:.1f} |\n")
    return "".join(out)


def _paper_tables(by: dict[str, dict]) -> str:
    """Table 6 and Table 1, ours beside the paper's, for the architectures measured."""
    out = []
    t6 = [a for a in PAPER_TABLE6 if a in by]
    if t6:
        out.append("\n## Table 6 side by side (paper: GPU, cuDNN v3 era; ours: this machine)\n\n")
        out.append("| arch | fwd ms ours / paper | bwd ms ours / paper | train mem ours MiB / paper MB | "
                   "infer mem ours MiB / paper MB | model MB ours / paper |\n|---|---:|---:|---:|---:|---:|\n")
        for a in t6:
            r, p = by[a], PAPER_TABLE6[a]
            out.append(f"| {a} | {r['forward_ms']:.1f} / {p[0]} | {r['backward_ms']:.1f} / {p[1]} | "
                       f"{r['train_mem_mib']:.0f} / {p[2]} | {r['infer_mem_mib']:.0f} / {p[3]} | "
                       f"{r['model_bytes'] / 1e6:.1f} / {p[4]} |\n")
    t1 = [a for a in PAPER_TABLE1 if a in by]
    if t1:
        out.append("\n## Table 1 side by side\n\n")
        out.append("| arch | params M ours / paper | storage ours / paper | infer ms ours / paper |\n"
                   "|---|---:|---:|---:|\n")
        for a in t1:
            r, p = by[a], PAPER_TABLE1[a]
            out.append(f"| {a} | {r['params'] / 1e6:.3f} / {p[0]} | {r['storage_multiplier']} / "
                       f"{'n/a' if p[1] is None else p[1]} | {r['infer_ms']:.1f} / {p[2]} |\n")
    return "".join(out)


def _ratio_tables(ratios: dict) -> str:
    out = []
    if ratios["table6"] or ratios["table1"]:
        out.append("\n## Ratios between architectures (ours / paper): compare these across machines\n\n")
    if ratios["table6"]:
        out.append(f"| arch / {TABLE6_REFERENCE} | forward | backward | train memory | infer memory | model size |\n"
                   "|---|---:|---:|---:|---:|---:|\n")
        for x in ratios["table6"]:
            cells = " | ".join(f"{_f(x[k][0], '{:.2f}')} / {x[k][1]:.2f}"
                               for k in ("forward", "backward", "train_memory", "infer_memory", "model_size"))
            out.append(f"| {x['arch']} | {cells} |\n")
        out.append("\n")
    if ratios["table1"]:
        out.append(f"| arch / {TABLE1_REFERENCE} | params | inference time |\n|---|---:|---:|\n")
        for x in ratios["table1"]:
            out.append(f"| {x['arch']} | {_f(x['params'][0], '{:.2f}')} / {x['params'][1]:.2f} | "
                       f"{_f(x['infer_time'][0], '{:.2f}')} / {x['infer_time'][1]:.2f} |\n")
    return "".join(out)


def _torch_peer(rows: list[dict], machine: dict) -> str:
    peers = [r for r in rows if r.get("torch")]
    if not peers:
        return ""
    t = machine.get("torch", {})
    out = [f"\n## PyTorch on the same machine, same run (tools.torch_peer; PyTorch {t.get('version')}, "
           f"{t.get('threads')} threads; {'; '.join(t.get('config', []))})\n\n",
           "The same generated TRAIN net at batch 1, its weights and inputs, in PyTorch (checked against Caffe's blobs "
           "and gradients by tests/test_torch_peer.py). Caffe / PyTorch above 1 means Caffe is slower.\n\n",
           "| arch | Caffe fwd / bwd ms | PyTorch fwd / bwd ms | PyTorch SGD step ms | Caffe / PyTorch fwd | bwd | "
           "fwd + bwd |\n|---|---:|---:|---:|---:|---:|---:|\n"]
    for r in peers:
        p = r["torch"]
        out.append(f"| {r['arch']} | {r['forward_ms']:.1f} / {r['backward_ms']:.1f} | {p['forward_ms']:.1f} / "
                   f"{p['backward_ms']:.1f} | {p['step_ms']:.1f} | {r['forward_ms'] / p['forward_ms']:.2f} | "
                   f"{r['backward_ms'] / p['backward_ms']:.2f} | "
                   f"{(r['forward_ms'] + r['backward_ms']) / (p['forward_ms'] + p['backward_ms']):.2f} |\n")
    return "".join(out)


def _python_layers(rows: list[dict], by: dict[str, dict], data: dict | None) -> str:
    """Our Python layers' cost in SegNet (else the first net that has any), with the data layer where timed."""
    seg = by.get("segnet") or next((r for r in rows if r["python_layers"]), None)
    if not (seg and seg["python_layers"]):
        return ""
    out = [f"\n## Cost of our Python layers in {seg['arch']} (TRAIN net, batch 1)\n\n",
           "| layer | fwd ms | bwd ms | % of fwd | % of bwd |\n|---|---:|---:|---:|---:|\n"]
    for l in seg["python_layers"]:
        out.append(f"| {l['name']} | {l['forward_ms']:.2f} | {l['backward_ms']:.2f} | "
                   f"{100 * l['forward_ms'] / seg['forward_ms']:.1f} | "
                   f"{100 * l['backward_ms'] / seg['backward_ms'] if seg['backward_ms'] else 0:.1f} |\n")
    if data:
        share = data["forward_ms"] / (data["forward_ms"] + seg["forward_ms"])
        out.append(f"| data (CamVidData, LMDB, batch 1) | {data['forward_ms']:.2f} | 0 | {100 * share:.1f} | 0 |\n")
    else:
        out.append("\n(The CamVidData layer was not timed: no CamVid folder given.)\n")
    return "".join(out)


NOTES = ("\nNotes: fwd/bwd are the TRAIN net (BatchNorm in batch-statistics mode, unweighted SoftmaxWithLoss), "
         "Input-fed. Memory is the peak RSS of a child process above its RSS before building the net (the paper: "
         "nvidia-smi GPU memory). Model MB is the deploy .caffemodel (BatchNorm statistics included). Storage is "
         "Table 1's multiplier derived from the net (tools/benchmark_measure.py `storage_multiplier`).\n")


def markdown(result: dict) -> str:
    """benchmark.md: the machine and settings, every table, ours beside the paper's."""
    rows = result["rows"]
    by = {r["arch"]: r for r in rows}
    return (_header(result) + _all_architectures(rows) + _paper_tables(by) + _ratio_tables(result["ratios"])
            + _torch_peer(rows, result["machine"]) + _python_layers(rows, by, result.get("data_layer")) + NOTES)


CSV_FIELDS = ["arch", "params", "model_bytes", "forward_ms", "backward_ms", "caffe_time_forward_ms",
              "caffe_time_backward_ms", "infer_ms", "infer_mem_mib", "train_mem_mib", "storage_multiplier",
              "python_forward_share", "python_backward_share", "paper_params_m", "paper_storage", "paper_infer_ms",
              "paper_forward_ms", "paper_backward_ms", "paper_train_mem_mb", "paper_infer_mem_mb", "paper_size_mb",
              "torch_forward_ms", "torch_backward_ms", "torch_step_ms", "caffe_over_torch"]


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        t1 = PAPER_TABLE1.get(r["arch"], (None, None, None))
        t6 = PAPER_TABLE6.get(r["arch"], (None,) * 5)
        ct = r.get("caffe_time") or {}
        peer = r.get("torch") or {}
        ratio = ((r["forward_ms"] + r["backward_ms"]) / (peer["forward_ms"] + peer["backward_ms"])) if peer else None
        writer.writerow({k: r.get(k) for k in CSV_FIELDS if k in r} | {
            "caffe_time_forward_ms": ct.get("forward_ms"), "caffe_time_backward_ms": ct.get("backward_ms"),
            "paper_params_m": t1[0], "paper_storage": t1[1], "paper_infer_ms": t1[2], "paper_forward_ms": t6[0],
            "paper_backward_ms": t6[1], "paper_train_mem_mb": t6[2], "paper_infer_mem_mb": t6[3],
            "paper_size_mb": t6[4], "torch_forward_ms": peer.get("forward_ms"),
            "torch_backward_ms": peer.get("backward_ms"), "torch_step_ms": peer.get("step_ms"),
            "caffe_over_torch": ratio})
    return out.getvalue()


def chart(result: dict, path: Path) -> None:
    import matplotlib  # heavy: only the chart needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["arch"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    ax.bar(x - 0.2, [r["forward_ms"] for r in rows], 0.4, label="forward")
    ax.bar(x + 0.2, [r["backward_ms"] for r in rows], 0.4, label="backward")
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("ms (batch 1, median)")
    ax.set_title(f"{result['machine']['caffe_build']} Caffe, {result['machine']['mode']} mode, "
                 f"{result['config']['height']}x{result['config']['width']}")
    ax.legend()
    ax = axes[1]
    items = [(f"{x['arch']}\n{k}", *x[k]) for x in result["ratios"]["table6"] for k in ("forward", "backward")]
    items += [(f"{x['arch']}\ninfer", *x["infer_time"]) for x in result["ratios"]["table1"]]
    if items:
        y = np.arange(len(items))
        ax.barh(y - 0.2, [i[1] or 0 for i in items], 0.4, label="ours")
        ax.barh(y + 0.2, [i[2] for i in items], 0.4, label="paper")
        ax.set_yticks(y, [i[0] for i in items], fontsize=7)
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.invert_yaxis()
        ax.set_xlabel(f"time ratio to {TABLE6_REFERENCE} (Table 6) / {TABLE1_REFERENCE} (Table 1)")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no reference architecture measured:\nno ratios", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict, out: Path) -> None:
    """All four files into a temporary sibling folder, then swapped in: never a half-written results folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        (staging / "benchmark.md").write_text(markdown(result))
        (staging / "benchmark.csv").write_text(csv_text(result["rows"]))
        (staging / "benchmark.json").write_text(json.dumps(result, indent=1))
        chart(result, staging / "benchmark.png")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        staging.rename(out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
