"""The paper's controlled benchmark, whole: every Table 1 variant (or Table 3 network) trained, scored and set
beside the paper.

    python -m tools.study run --study table1 --preset quick --weighting both [--archs A,B] [--shard 1/2]
    python -m tools.study report --study table1 --preset quick
    python -m tools.study compare before=RUN_A after=RUN_B --out FOLDER

`run` trains one standard run folder per (architecture, weighting) under RESULTS/STUDY-PRESET/ARCH-WEIGHTING,
each made by the same pipeline as `make camvid-train` (tools.camvid_pipeline train, with the training split
scored too: the paper's Train columns), with the LMDBs converted once into RESULTS/STUDY-PRESET/lmdb and shared.
Finished runs are skipped, unfinished ones resumed: kill it at any moment and run the same command again. Runs
can be spread over machines with --archs or --shard i/n (the i-th of every n planned runs) and merged by
`report`, which reads whatever run folders are there.

`report` writes STUDY.md, .json, .csv and .png into the study folder: for every run G, C, mIoU, BF on the test
split and G, C, mIoU on the training split beside the paper's (data/paper.json) and the difference; params and
storage multiplier from the generated nets, inference time from RESULTS/benchmark/benchmark.json when
`make benchmark` has written it; the paper preset's training time estimated from the benchmark's measured
per-image step and from the paper's own GPU timings; the ranking of the variants by test mIoU and BF against the
paper's (Spearman, Kendall); and the paper's findings (docs/paper.md §1) checked on the measured table, each held /
not held.

Weightings: `mfb` trains with the published median-frequency class weights (data/camvid.json, SegNet-Tutorial's
`class_weighting`), `nf` with none (natural frequency), as Table 1's two column groups.
"""

from __future__ import annotations

import argparse
import collections
import csv
import ctypes
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from prototxt.protocol import FCN_BASIC_LR, settings
from segnet_bvlc.core import paper
from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.log import console_logging, logger
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.dataset.camvid import SPLIT_SIZES

TOOL = "study"
log = logger(TOOL).info
STUDIES = {
    "table1": tuple(paper.table1()),  # the paper's row order
    "table3": ("segnet", "fcn", "fcn-learnt-deconv", "deconvnet", "deeplab-largefov"),
}
WEIGHTINGS = {"mfb": "published", "nf": "none"}
DEFAULT_WEIGHTING = {"table1": "both", "table3": "nf"}  # Table 3 trained without class balancing
# The smoke preset checks the path, not a model: its LMDBs hold the first few images of each split, and a few
# images are scored per split.
SMALL = {"smoke": dict(train=8, val=4, evaluate=3)}
METRICS = {"G": "global_accuracy", "C": "class_average_accuracy", "mIoU": "mean_iou", "BF": "boundary_f1"}


class StudyError(RuntimeError):
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


def _die_with_parent() -> None:
    """The child gets SIGTERM when the study dies (even by SIGKILL): it snapshots and stops, so that a re-run
    never finds it still training (the run folder's lock would refuse the re-run meanwhile)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_command(folder: Path, arch: str, weighting: str, preset: str, camvid: Path, init_weights: str | None
                ) -> list[str]:
    cmd = [sys.executable, "-m", "tools.camvid_pipeline", "train", "--arch", arch, "--preset", preset,
           "--camvid", str(camvid), "--run", str(run_folder(folder, arch, weighting)), "--lmdb",
           str(folder / "lmdb"), "--class-weights", WEIGHTINGS[weighting], "--eval-train"]
    if preset in SMALL:
        cmd += ["--limit", str(SMALL[preset]["evaluate"])]
    if init_weights:
        cmd += ["--init-weights", init_weights]
    return cmd


def run(study: str, preset: str, weighting: str, camvid: Path, results: Path, archs: list[str] | None = None,
        shard: tuple[int, int] = (1, 1), init_weights: str | None = None) -> int:
    """Train and score every planned run that is not finished; 0 when all are, 130 when stopped."""
    folder = study_dir(results, study, preset)
    pairs = plan(study, weighting, archs, shard)
    if preset in SMALL:
        _small_lmdbs(folder / "lmdb", preset, camvid, STUDIES[study][0])
    failed = []
    for n, (arch, w) in enumerate(pairs, 1):
        target = run_folder(folder, arch, w)
        if finished(target):
            log(f"[study] {n}/{len(pairs)} {target.name}: finished")
            continue
        log(f"[study] {n}/{len(pairs)} {target.name}: {'resuming' if target.exists() else 'starting'}")
        t0 = time.perf_counter()
        child = subprocess.Popen(run_command(folder, arch, w, preset, camvid, init_weights), cwd=ROOT,
                                 preexec_fn=_die_with_parent, stderr=subprocess.PIPE, text=True, bufsize=1)
        tail: collections.deque = collections.deque(maxlen=1)
        try:
            for line in child.stderr:  # passed through, the last line kept for the failure summary
                sys.stderr.write(line)
                if line.strip():
                    tail.append(line.strip())
            code = child.wait()
        except KeyboardInterrupt:  # Ctrl-C reaches the child too; let it snapshot
            code = child.wait()
        # Stopped (Ctrl-C, SIGTERM, a kill, the study's own end): resume later. Any other death (an abort, a
        # segfault) is the run's failure: the others go on.
        if code in (130, 143) or -code in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL):
            log(f"[study] stopped during {target.name}: run the same command again to finish")
            return 130
        if code != 0:
            failed.append(f"{target.name} ({tail[0] if tail else f'exit {code}'})")
            log(f"[study] {target.name} failed (exit {code}); going on with the others")
        else:
            log(f"[study] {target.name} done in {(time.perf_counter() - t0) / 60:.1f} min")
    if failed:
        log(f"[study] {len(failed)} run(s) failed: " + "; ".join(failed))
        return 1
    return 0


def _small_lmdbs(lmdb: Path, preset: str, camvid: Path, arch: str) -> None:
    """The first images of train and val at the preset's size (the pipeline takes LMDBs of its size as they are)."""
    from prototxt.protocol import settings
    from segnet_bvlc.lmdb_data.convert import convert

    p = settings(arch, preset)
    for split in ("train", "val"):
        if not (lmdb / split / "meta.json").is_file():
            convert(camvid, split, lmdb / split, height=p["height"], width=p["width"], limit=SMALL[preset][split],
                    progress=False)


# ------------------------------------------------------------------------------------------------ the report
def _metrics(path: Path) -> dict | None:
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    return {k: (None if m.get(v) is None else round(100 * m[v], 2)) for k, v in METRICS.items()}


def training_seconds(run: Path) -> float:
    """Seconds a run spent training over all its starts, from scalars.jsonl: each logged interval's time per
    iteration times its iterations, plus each validation's seconds. Iterations redone after a kill (those past the
    last snapshot) count again: they are time the run took. timings.json's train_s counts only the starts that
    ended normally, so a run killed at a session's end would look shorter than it was."""
    log_every = json.loads((run / "config.json").read_text()).get("log_every", 1)
    total, previous = 0.0, 0
    for line in (run / "scalars.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "time_per_iter_s" in record:
            step = record["iteration"] - previous if record["iteration"] > previous else log_every  # a new start
            total += record["time_per_iter_s"] * step
            previous = record["iteration"]
        total += record.get("seconds", 0.0) if "val_global_accuracy" in record else 0.0
    return total


def collect(folder: Path, study: str) -> dict:
    """{arch: {weighting: {"test": {G, C, mIoU, BF}, "train": {G, C, mIoU}, "minutes": ..., "load": ...}}}
    for every finished run folder."""
    table: dict = {}
    for arch in STUDIES[study]:
        for w in WEIGHTINGS:
            run = run_folder(folder, arch, w)
            if not finished(run):
                continue
            test, train = _metrics(run / "eval/test/metrics.json"), _metrics(run / "eval/train/metrics.json")
            train.pop("BF", None)
            timings = json.loads((run / "timings.json").read_text())
            stages = [json.loads(line) for line in (run / "stages.jsonl").read_text().splitlines() if line.strip()]
            loads = [s["load"] for s in stages if "load" in s]
            state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {}
            config = json.loads((run / "config.json").read_text())
            table.setdefault(arch, {})[w] = {
                "test": test, "train": train, "lr": config["base_lr"],
                "train_minutes": round(training_seconds(run) / 60, 1),
                "other_minutes": round(sum(v for k, v in timings.items() if k.startswith("all_invocations_")
                                           and k != "all_invocations_train_s") / 60, 1),
                "best_iteration": state.get("best_iteration"),
                "load_at_stage_ends": loads,
            }
    return table


def architecture_columns(arch: str, results: Path) -> dict:
    """Params and storage multiplier from the generated net; from the benchmark's JSON if any
    (RESULTS/benchmark/benchmark.json): inference ms, the training step's forward + backward ms at batch 1 and
    the paper preset's training time estimated from them (`paper_preset_hours`)."""
    import caffe

    from prototxt import count_params
    from segnet_bvlc.benchmark import measure as benchmark
    from segnet_bvlc.nets.load import net_from_param

    deploy = benchmark.net_param(arch, "deploy", 1, 64, 96)
    net = net_from_param(benchmark.net_param(arch, "train", 1, 64, 96), phase=caffe.TRAIN)
    channels = {name: blob.data.shape[1] for name, blob in net.blobs.items() if blob.data.ndim == 4}
    del net
    row = {"params_m": round(count_params(deploy) / 1e6, 3), "storage": benchmark.storage_multiplier(deploy, channels),
           "infer_ms": None, "step_ms": None, "paper_preset_hours": None}
    bench = results / "benchmark" / "benchmark.json"
    if bench.is_file():
        for r in json.loads(bench.read_text()).get("rows", []):
            if r.get("arch") == arch and r.get("infer_ms") is not None:
                row["infer_ms"] = round(r["infer_ms"], 1)
            if r.get("arch") == arch and r.get("forward_ms") is not None and r.get("backward_ms") is not None:
                row["step_ms"] = round(r["forward_ms"] + r["backward_ms"], 1)
                row["paper_preset_hours"] = round(paper_preset_hours(arch, row["step_ms"], r["infer_ms"]), 2)
    return row


def benchmark_device(results: Path) -> str | None:
    """What RESULTS/benchmark/benchmark.json was measured on, in words (None without one)."""
    bench = results / "benchmark" / "benchmark.json"
    if not bench.is_file():
        return None
    m = json.loads(bench.read_text()).get("machine", {})
    where = m.get("gpu") if m.get("mode") == "GPU" else f"{m.get('cpu')}, {m.get('cpus_usable')} CPUs"
    return (f"{where} ({m.get('mode')} mode, {m.get('caffe_prefix')}), {m.get('date')}, "
            f"load {m.get('load_average_start')}")


def paper_preset_hours(arch: str, step_ms: float, infer_ms: float) -> float:
    """Hours one run of the paper preset takes where a training step of one image (forward + backward at
    360x480, batch 1) takes `step_ms` and a validation image's forward `infer_ms`: max_iter steps of `batch`
    images, plus a forward pass over CamVid's validation split every val_every iterations. BVLC Caffe's
    convolutions loop over the images of a batch, so a step of B images is taken as B one-image steps: an
    estimate from measured batch-1 times, not a measurement at batch 12. BatchNorm statistics and scoring come on
    top (minutes)."""
    s = settings(arch, "paper")
    seconds = (s["max_iter"] * s["batch"] * step_ms
               + (s["max_iter"] // s["val_every"]) * SPLIT_SIZES["val"] * infer_ms) / 1000
    return seconds / 3600


def paper_gpu_step_ms(arch: str) -> float:
    """A training step of one image on the paper's GPU, from its own measurements: Table 1's inference time of
    `arch` times (forward + backward) / forward of SegNet in Table 6 (the only encoder-decoder of this family
    timed there, 2.16)."""
    segnet = paper.table6()["segnet"]
    return paper.table1()[arch]["infer_ms"] * (segnet["forward_ms"] + segnet["backward_ms"]) / segnet["forward_ms"]


def rank_agreement(ours: dict[str, float], theirs: dict[str, float]) -> dict:
    """Spearman's rho and Kendall's tau between two scorings of the same variants (SciPy)."""
    from scipy import stats

    keys = [k for k in ours if k in theirs and ours[k] is not None]
    if len(keys) < 3:
        return {"n": len(keys), "spearman": None, "kendall": None}
    a, b = [ours[k] for k in keys], [theirs[k] for k in keys]
    return {"n": len(keys), "spearman": round(float(stats.spearmanr(a, b).statistic), 3),
            "kendall": round(float(stats.kendalltau(a, b).statistic), 3)}


def _get(table: dict, arch: str, w: str, split: str, metric: str):
    return table.get(arch, {}).get(w, {}).get(split, {}).get(metric)


def findings(table: dict) -> list[dict]:
    """The paper's Table 1 findings (docs/paper.md §1), each checked on `table` ({arch: {w: {test, train}}}).
    MFB test columns unless said. A finding whose runs are missing is "not measured"."""
    t = lambda a, m, w="mfb": _get(table, a, w, "test", m)  # noqa: E731
    out = []

    def check(text: str, archs: list[str], holds) -> None:
        values = {f"{a} {w} {m}": t(a, m, w) for a, w, m in archs}
        if any(v is None for v in values.values()):
            out.append({"finding": text, "status": "not measured", "values": values})
        else:
            out.append({"finding": text, "status": "held" if holds() else "not held", "values": values})

    variants = list(STUDIES["table1"])
    lowest = lambda m: min(variants, key=lambda a: t(a, m))  # noqa: E731
    check("Bilinear-Interpolation has the lowest mIoU and BF",
          [(a, "mfb", m) for a in variants for m in ("mIoU", "BF")],
          lambda: lowest("mIoU") == "bilinear-interpolation" and lowest("BF") == "bilinear-interpolation")
    top2 = {"fcn-basic-no-dim-reduction", "segnet-basic-encoder-addition"}
    check("The two variants that keep encoder maps in full (FCN-Basic-NoDimReduction, "
          "SegNet-Basic-EncoderAddition) are the top two by mIoU",
          [(a, "mfb", "mIoU") for a in variants],
          lambda: set(sorted(variants, key=lambda a: -t(a, "mIoU"))[:2]) == top2)
    check("SegNet-Basic and FCN-Basic (compressed encoder information) beat FCN-Basic-NoAddition (none) on mIoU "
          "and BF",
          [(a, "mfb", m) for a in ("segnet-basic", "fcn-basic", "fcn-basic-no-addition") for m in ("mIoU", "BF")],
          lambda: all(t(a, m) > t("fcn-basic-no-addition", m) for a in ("segnet-basic", "fcn-basic")
                      for m in ("mIoU", "BF")))
    check("SegNet-Basic beats SegNet-Basic-SingleChannelDecoder (a larger decoder helps) on mIoU and BF",
          [(a, "mfb", m) for a in ("segnet-basic", "segnet-basic-single-channel-decoder") for m in ("mIoU", "BF")],
          lambda: all(t("segnet-basic", m) > t("segnet-basic-single-channel-decoder", m) for m in ("mIoU", "BF")))
    check("MFB raises C and lowers G against NF for SegNet-Basic",
          [("segnet-basic", w, m) for w in ("mfb", "nf") for m in ("G", "C")],
          lambda: t("segnet-basic", "C") > t("segnet-basic", "C", "nf")
          and t("segnet-basic", "G") < t("segnet-basic", "G", "nf"))
    return out


def _paper_cell(study: str, arch: str, w: str, split: str, metric: str):
    if study == "table1":
        return paper.table1()[arch][w][split].get(metric)
    return paper.table3()[arch]["max"].get(metric) if split == "test" else None


def machine() -> dict:
    from segnet_bvlc.core.provenance import provenance

    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "processor": platform.processor(),
            "load_now": round(os.getloadavg()[0], 2),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return {**provenance(), **info}


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
    rows = []
    for a in archs:
        for w in WEIGHTINGS:
            if w not in table[a]:
                continue
            row = {"arch": a, "weighting": w, **columns[a], **{k: v for k, v in table[a][w].items()
                                                                if k not in ("test", "train")}}
            for split, names in paper.TABLE1_METRICS.items():
                for m in names:
                    ours, theirs = _get(table, a, w, split, m), _paper_cell(study, a, w, split, m)
                    row[f"{split}_{m}"] = ours
                    row[f"paper_{split}_{m}"] = theirs
                    row[f"diff_{split}_{m}"] = None if ours is None or theirs is None else round(ours - theirs, 2)
            rows.append(row)
    ranking = {}
    for w in WEIGHTINGS:
        for m in ("mIoU", "BF"):
            ours = {a: _get(table, a, w, "test", m) for a in archs}
            theirs = {a: _paper_cell(study, a, w, "test", m) for a in archs}
            ranking[f"{w} test {m}"] = {**rank_agreement(ours, theirs),
                                        "ours": sorted((a for a in ours if ours[a] is not None),
                                                       key=lambda a: -ours[a]),
                                        "paper": sorted(theirs, key=lambda a: -(theirs[a] or 0))}
    any_run = run_folder(folder, archs[0], next(iter(table[archs[0]])))
    images = {split: json.loads((any_run / "eval" / split / "metrics.json").read_text()).get("images")
              for split in ("test", "train")}
    estimate = {"device": benchmark_device(results), "paper_preset": {k: settings(archs[0], "paper")[k] for k in
                                                                       ("batch", "max_iter", "val_every")},
                "archs": {a: {"step_ms": columns[a]["step_ms"], "hours": columns[a]["paper_preset_hours"],
                              "paper_gpu_step_ms": round(paper_gpu_step_ms(a), 1) if study == "table1" else None,
                              "paper_gpu_hours": round(paper_preset_hours(a, paper_gpu_step_ms(a),
                                                                          paper.table1()[a]["infer_ms"]), 2)
                              if study == "table1" else None} for a in archs}}
    result = {"study": study, "preset": preset, "images": images, "runs": rows, "ranking": ranking,
              "paper_preset_estimate": estimate,
              "findings": findings(table) if study == "table1" else [], "machine": machine(),
              "missing": [f"{a}-{w}" for a in STUDIES[study] for w in WEIGHTINGS if w not in table.get(a, {})]}
    write_text_atomic(folder / f"{study}.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(folder / f"{study}.md", render_markdown(result))
    _write_csv(folder / f"{study}.csv", rows)
    _plot(result, folder / f"{study}.png")
    log(f"[study] {len(rows)} runs reported: {folder / (study + '.md')}")
    return result


def _fmt(v) -> str:
    return "—" if v is None else f"{v:g}" if isinstance(v, int) else f"{v:.1f}"


def render_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# {r['study']} at the {r['preset']} preset, beside the paper", "",
             f"Written by `python -m tools.study report --study {r['study']} --preset {r['preset']}` on "
             f"{m.get('written')}: {m.get('cpus')} CPUs ({m.get('processor') or m.get('machine')}), load "
             f"{m.get('load_now')} when the report was written; each run's load at its stage ends is in the JSON. "
             f"Ours / paper (difference), percentages; {r['images']['test']} test and {r['images']['train']} "
             "training images scored at 360×480.", ""]
    for w in WEIGHTINGS:
        rows = [x for x in r["runs"] if x["weighting"] == w]
        if not rows:
            continue
        lines += [f"## {w.upper()} ({'median-frequency class weights' if w == 'mfb' else 'no class weights'})", "",
                  "| variant | params M | storage | infer ms | lr | test G | test C | test mIoU | test BF | train G | "
                  "train C | train mIoU | best iter | train min |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in rows:
            cells = []
            for split, names in paper.TABLE1_METRICS.items():
                for k in names:
                    ours, theirs = x[f"{split}_{k}"], x[f"paper_{split}_{k}"]
                    cells.append(f"{_fmt(ours)} / {_fmt(theirs)}" + ("" if x[f"diff_{split}_{k}"] is None
                                                                     else f" ({x[f'diff_{split}_{k}']:+.1f})"))
            storage = "n/a" if x["storage"] is None else x["storage"]
            infer = f"{_fmt(x['infer_ms'])} / {_fmt(paper.table1().get(x['arch'], {}).get('infer_ms'))}"
            lines.append(f"| {x['arch']} | {x['params_m']:.3f} | {storage} | {infer} | {x['lr']:g} | "
                         + " | ".join(cells)
                         + f" | {_fmt(x['best_iteration'])} | {_fmt(x['train_minutes'])} |")
        lines.append("")
    if len({x["lr"] for x in r["runs"]}) > 1:
        lines += ["lr: each run's learning rate. The paper trains every variant at 0.1; the FCN-Basic family diverges "
                  f"there in this reading and trains at {FCN_BASIC_LR:g} (docs/paper.md §9.4).", ""]
    if any(x["infer_ms"] is None for x in r["runs"]):
        lines += ["infer ms: the deploy net's forward at batch 1, 360×480, from `make benchmark` "
                  "(RESULTS/benchmark/benchmark.json; — where it has not run) / the paper's (an NVIDIA Titan).", ""]
    else:
        lines += [f"infer ms: the deploy net's forward at batch 1, 360×480, on {r['paper_preset_estimate']['device']} "
                  "(`make benchmark`) / the paper's (an NVIDIA Titan, cuDNN v3).", ""]
    lines += _estimate_markdown(r)
    lines += ["## Ranking by test score against the paper's", "",
              "| columns | runs | Spearman ρ | Kendall τ | ours, best first |", "|---|---:|---:|---:|---|"]
    for key, v in r["ranking"].items():
        if v["n"]:
            lines.append(f"| {key} | {v['n']} | {_fmt(v['spearman'])} | {_fmt(v['kendall'])} | "
                         f"{', '.join(v['ours'])} |")
    if r["findings"]:
        lines += ["", "## The paper's findings, checked on this table (MFB test columns unless said)", ""]
        for f in r["findings"]:
            values = ", ".join(f"{k} {_fmt(v)}" for k, v in f["values"].items()) if len(f["values"]) <= 6 else \
                "see the table"
            lines.append(f"- **{f['status']}**: {f['finding']} ({values})")
    if r["missing"]:
        lines += ["", f"Not finished yet: {', '.join(r['missing'])}."]
    return "\n".join(lines) + "\n"


def _estimate_markdown(r: dict) -> list[str]:
    """The paper preset's training time per run, estimated from measured per-image step times."""
    e = r["paper_preset_estimate"]
    p = e["paper_preset"]
    ours = [a for a, v in e["archs"].items() if v["hours"] is not None]
    theirs = [a for a, v in e["archs"].items() if v["paper_gpu_hours"] is not None]
    if not ours and not theirs:
        return []
    lines = ["## The paper preset's training time, estimated", "",
             f"One run of the paper preset is {p['max_iter']:,} iterations of {p['batch']} images at 360×480 and a "
             f"validation pass over the {SPLIT_SIZES['val']} validation images every {p['val_every']:,} iterations "
             "(`tools.study.paper_preset_hours`: a step of B images taken as B one-image steps). Per-image step = "
             "forward + backward of the TRAIN net at batch 1.", "",
             "| variant | step ms, this benchmark | hours per run | step ms, the paper's GPU | hours per run |",
             "|---|---:|---:|---:|---:|"]
    for a, v in e["archs"].items():
        lines.append(f"| {a} | {_fmt(v['step_ms'])} | {_fmt(v['hours'])} | {_fmt(v['paper_gpu_step_ms'])} | "
                     f"{_fmt(v['paper_gpu_hours'])} |")
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


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    keys = [k for k in rows[0] if k != "load_at_stage_ends"]
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from segnet_bvlc.core.files import atomic_path

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


# ------------------------------------------------------------------------------------------------ two runs
def compare(runs: dict[str, Path], out: Path, title: str) -> dict:
    """The test metrics of a few finished run folders side by side, per class and overall, with the difference
    of each to the first (e.g. the label-alignment measurement): out/comparison.{md,json}. A folder holding a
    metrics.json itself (e.g. a run's eval/test-mc40, Monte Carlo dropout) stands for that scoring."""
    results = {}
    for label, run in runs.items():
        path = run / "metrics.json" if (run / "metrics.json").is_file() else run / "eval" / "test" / "metrics.json"
        if not path.is_file():
            raise StudyError(f"{run}: not a finished run (no eval/test/metrics.json) nor a scored folder "
                             "(no metrics.json)")
        results[label] = json.loads(path.read_text())
    labels = list(results)
    first = results[labels[0]]
    lines = [f"# {title}", "", f"Written by `python -m tools.study compare` from {', '.join(f'`{r}`' for r in runs.values())}"
             f" ({len(first.get('per_class', []))} classes, {first.get('images')} test images, scored at 360×480).",
             "", "| | " + " | ".join(labels) + (" | difference |" if len(labels) == 2 else " |"),
             "|---|" + "---:|" * (len(labels) + (len(labels) == 2))]
    for key, name in (("global_accuracy", "G"), ("class_average_accuracy", "C"), ("mean_iou", "mIoU"),
                      ("boundary_f1", "BF")):
        values = [100 * results[label][key] for label in labels]
        diff = f" | {values[1] - values[0]:+.2f}" if len(values) == 2 else ""
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + diff + " |")
    if all(results[label].get("predict_seconds_per_image") for label in labels):
        lines.append("| s / image (load) | " + " | ".join(
            f"{results[label]['predict_seconds_per_image']:.2f} ({results[label].get('predict_load', 0):.1f})"
            for label in labels) + (" | |" if len(labels) == 2 else " |"))
        lines += ["", "s / image: the median time to predict one test image (resize, forward passes, upsampling to "
                  "360×480), with the load average when the scoring ended."]
    lines += ["", "Per class, IoU / BF (%):", "", "| class | " + " | ".join(labels) + " |",
              "|---|" + "---:|" * len(labels)]
    for i, c in enumerate(first.get("per_class", [])):
        cells = [f"{100 * results[label]['per_class'][i]['iou']:.1f} / "
                 f"{100 * (results[label]['per_class'][i]['boundary_f1'] or 0):.1f}" for label in labels]
        lines.append(f"| {c['name']} | " + " | ".join(cells) + " |")
    summary = {"title": title, "runs": {label: str(run) for label, run in runs.items()},
               "metrics": {label: {k: results[label][k] for k in ("global_accuracy", "class_average_accuracy",
                                                                   "mean_iou", "boundary_f1")}
                           | {k: results[label].get(k) for k in ("samples", "predict_seconds_per_image", "predict_load")}
                           for label in labels},
               "machine": machine()}
    write_text_atomic(out / "comparison.md", "\n".join(lines) + "\n")
    write_text_atomic(out / "comparison.json", json.dumps(summary, indent=2) + "\n")
    log(f"[study] {out / 'comparison.md'}")
    return summary


# ------------------------------------------------------------------------------------------------ command line
def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not i/n (e.g. 1/2)") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"'{text}': need 1 <= i <= n")
    return i, n


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(TOOL, __doc__, epilog_from=2)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "report"):
        s = sub.add_parser(name)
        s.add_argument("--study", choices=STUDIES, default="table1")
        s.add_argument("--preset", default="quick", help="quick (default), paper or smoke")
        s.add_argument("--results", type=Path, default=Path("results"), help="where study folders go")
    r = sub.choices["run"]
    r.add_argument("--weighting", choices=("nf", "mfb", "both"), help="default: both for table1, nf for table3")
    r.add_argument("--archs", help="comma-separated subset (default: every variant of the study)")
    r.add_argument("--shard", type=_shard, default=(1, 1), help="i/n: the i-th of every n planned runs")
    r.add_argument("--camvid", type=Path, default=Path("data/CamVid"))
    r.add_argument("--init-weights", help="VGG16 caffemodel for Table 3's encoders")
    r.add_argument("--no-report", dest="report", action="store_false", help="train only")
    c = sub.add_parser("compare", help="test metrics of finished run folders side by side")
    c.add_argument("runs", nargs="+", metavar="LABEL=RUN", help="a label and a finished run folder (its eval/test), "
                   "or a folder with a metrics.json (e.g. RUN/eval/test-mc40)")
    c.add_argument("--out", type=Path, required=True, help="folder for comparison.md and comparison.json")
    c.add_argument("--title", default="Runs compared")
    args = parser.parse_args(argv)
    console_logging()
    if args.command == "compare":
        try:
            pairs = [item.split("=", 1) for item in args.runs]
            if any(len(p) != 2 for p in pairs):
                raise StudyError("give each run as LABEL=RUN")
            compare({label: Path(run) for label, run in pairs}, args.out, args.title)
            return 0
        except StudyError as e:
            fail(TOOL, str(e))
    try:
        from prototxt.protocol import settings

        settings(STUDIES[args.study][0], args.preset)
        results = args.results.resolve()
        if args.command == "run":
            if not (args.camvid / "train.txt").is_file():
                raise StudyError(f"{args.camvid}: no train.txt - put CamVid there or set CAMVID=...")
            archs = [a for a in args.archs.split(",") if a] if args.archs else None
            code = run(args.study, args.preset, args.weighting or DEFAULT_WEIGHTING[args.study],
                       args.camvid.resolve(), results, archs, args.shard, args.init_weights)
            if code == 130 or not args.report:
                return code
            report(args.study, args.preset, results)
            return code
        report(args.study, args.preset, results)
        return 0
    except (StudyError, ValueError) as e:
        fail(TOOL, str(e))
    except OSError as e:
        fail(TOOL, f"{e.filename or args.results}: {e.strerror or e}")


if __name__ == "__main__":
    sys.exit(main())
