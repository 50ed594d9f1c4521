"""Caffe builds and CPU settings side by side (`python -m tools.cpu_speed`): speed, and whether the numbers change.

Each (configuration, architecture) runs in a fresh child process (`child`, through `python -m tools.cpu_speed
--child`), the configurations interleaved round by round so that a change in the machine's load falls on all of
them alike; `run` takes the median over rounds, compares every child's outputs and gradients with the first
configuration's (`differences`) and writes OUT.md and OUT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import caffe  # which build: the one first on the child's PYTHONPATH (run_child)
import numpy as np

from segnet_bvlc.benchmark.machine import blas_in_use, machine_info, torch_info
from segnet_bvlc.benchmark.timing import fill_inputs, net_param, time_layers, write_prototxt
from segnet_bvlc.benchmark.torch_peer import time_torch_peer
from segnet_bvlc.core.device import caffe_prefix
from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.nets import load as nets


class SpeedError(SegnetError):
    """A one-line reason the comparison cannot run."""


def parse_config(text: str) -> dict:
    """LABEL=PREFIX[:VAR=VALUE...] as {"label", "prefix" (resolved), "env"}."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise SpeedError(f"--config '{text}': expected LABEL=PREFIX[:VAR=VALUE...]")
    prefix, *settings = rest.split(":")
    env = {}
    for s in settings:
        k, sep, v = s.partition("=")
        if not sep or not k:
            raise SpeedError(f"--config '{text}': '{s}' is not VAR=VALUE")
        env[k] = v
    prefix_path = Path(prefix).expanduser()
    if not (prefix_path / "python" / "caffe" / "__init__.py").is_file():
        raise SpeedError(f"--config '{text}': {prefix_path} is not a Caffe install prefix (no python/caffe)")
    return {"label": label, "prefix": str(prefix_path.resolve()), "env": env}


# ------------------------------------------------------------------------------------------ child
def child(args: argparse.Namespace) -> int:
    """In a fresh process: one architecture under this process's Caffe and environment."""
    caffe.set_mode_cpu()
    out = Path(args.child_out)
    param = net_param(args.arch, "train", 1, args.height, args.width)
    with tempfile.TemporaryDirectory(prefix="segnet-speed-") as tmp:
        proto = write_prototxt(param, Path(tmp), "train.prototxt")
        net = nets.load_net(proto, phase=caffe.TRAIN)
    weights = Path(args.weights)
    if weights.is_file():
        net.copy_from(str(weights))
    else:  # the first child of an architecture writes the weights every other child loads
        net.save(str(weights))
    result: dict = {"arch": args.arch, "prefix": caffe_prefix().name}
    fill_inputs(net)
    if args.peer:
        result["torch"] = time_torch_peer(param, net, args.repeats, 1)
        result["torch_info"] = torch_info()
    else:
        net.forward()
        net.backward()
        arrays = {f"blob/{k}": v.data.copy() for k, v in net.blobs.items()}
        arrays.update({f"grad/{k}/{i}": p.diff.copy() for k, ps in net.params.items() for i, p in enumerate(ps)})
        np.savez(out.with_suffix(".npz"), **arrays)
        t = time_layers(net, args.repeats, 1)
        result.update(forward_ms=t["forward_ms"], backward_ms=t["backward_ms"])
        result["blas"] = blas_in_use()
    out.with_suffix(".json").write_text(json.dumps(result))
    return 0


def run_child(config: dict | None, arch: str, cfg, work: Path, tag: str, peer: bool = False) -> dict:
    """`child`'s record from a fresh process under `config`'s Caffe and environment (None: PyTorch, as is)."""
    env = dict(os.environ, GLOG_minloglevel="2")
    if config is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(config["prefix"]) / "python"), str(ROOT)])
        env.update(config["env"])
    cmd = [sys.executable, "-m", "tools.cpu_speed", "--child", "--arch", arch, "--height", str(cfg.height),
           "--width", str(cfg.width), "--repeats", str(cfg.repeats), "--weights", str(work / f"{arch}.caffemodel"),
           "--child-out", str(work / tag)] + (["--peer"] if peer else [])
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SpeedError(f"{tag}: the child failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads((work / f"{tag}.json").read_text())


def differences(a: Path, b: Path) -> dict:
    """Largest absolute difference and largest relative one (to the array's largest magnitude) over every output
    and gradient; `identical` when every array is equal bit for bit."""
    x, y = np.load(a), np.load(b)
    worst_abs, worst_rel, identical = 0.0, 0.0, True
    for k in x.files:
        u, v = x[k], y[k]
        if not np.array_equal(u, v):
            identical = False
            d = float(np.max(np.abs(u.astype(np.float64) - v)))
            worst_abs = max(worst_abs, d)
            worst_rel = max(worst_rel, d / max(float(np.max(np.abs(u))), 1e-30))
    return {"identical": identical, "max_abs": worst_abs, "max_rel": worst_rel, "arrays": len(x.files)}


# ------------------------------------------------------------------------------------------ parent
def _rounds(cfg, configs: list[dict], archs: list[str], work: Path, progress: Callable[[str], None]):
    """Every child of every round, configurations interleaved: {(label, arch): [records]}, {arch: [peer records]}."""
    rows: dict = {(c["label"], a): [] for c in configs for a in archs}
    peer: dict = {a: [] for a in archs}
    for r in range(cfg.rounds):
        for a in archs:
            for c in configs:
                res = run_child(c, a, cfg, work, f"{c['label']}-{a}-{r}")
                rows[(c["label"], a)].append(res)
                progress(f"[cpu_speed] round {r + 1}/{cfg.rounds} {a} {c['label']}: forward "
                         f"{res['forward_ms']:.0f} ms, backward {res['backward_ms']:.0f} ms")
            if cfg.peer:
                res = run_child(None, a, cfg, work, f"torch-{a}-{r}", peer=True)
                peer[a].append(res)
                progress(f"[cpu_speed] round {r + 1}/{cfg.rounds} {a} torch: forward {res['torch']['forward_ms']:.0f}"
                         f" ms, backward {res['torch']['backward_ms']:.0f} ms")
    return rows, peer


def _result_row(c: dict, a: str, runs: list[dict], base: str, work: Path, peer_runs: list[dict] | None) -> dict:
    """One (configuration, architecture): medians over rounds, numerics against the baseline configuration's."""
    fwd = statistics.median(x["forward_ms"] for x in runs)
    bwd = statistics.median(x["backward_ms"] for x in runs)
    row = {"config": c["label"], "arch": a, "prefix": runs[0]["prefix"], "env": c["env"],
           "blas": runs[0]["blas"], "forward_ms": fwd, "backward_ms": bwd,
           "step_ms": fwd + bwd, "rounds_ms": [x["forward_ms"] + x["backward_ms"] for x in runs],
           "numerics_vs_" + base: differences(work / f"{base}-{a}-0.npz", work / f"{c['label']}-{a}-0.npz")}
    if peer_runs is not None:
        t = statistics.median(x["torch"]["forward_ms"] + x["torch"]["backward_ms"] for x in peer_runs)
        row["torch_fwd_bwd_ms"] = t
        row["caffe_over_torch"] = (fwd + bwd) / t
    return row


def run(cfg, progress: Callable[[str], None] = lambda line: None) -> dict:
    """The whole comparison; writes OUT.json and OUT.md and returns the record. `progress` gets a line per child."""
    configs = [parse_config(c) for c in cfg.config]
    if len({c["label"] for c in configs}) != len(configs):
        raise SpeedError("--config labels must differ")
    archs = [a.strip() for a in cfg.arch.split(",") if a.strip()]
    t0 = time.time()
    info = machine_info(None)
    with tempfile.TemporaryDirectory(prefix="segnet-speed-") as tmp:
        work = Path(tmp)
        rows, peer = _rounds(cfg, configs, archs, work, progress)
        base = configs[0]["label"]
        results = [_result_row(c, a, rows[(c["label"], a)], base, work, peer[a] if cfg.peer else None)
                   for a in archs for c in configs]
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = {"machine": info, "configs": configs, "archs": archs, "height": cfg.height, "width": cfg.width,
           "rounds": cfg.rounds, "repeats": cfg.repeats, "seconds": round(time.time() - t0, 1), "results": results,
           "torch": peer[archs[0]][0]["torch_info"] if cfg.peer else None,
           "command": "python -m tools.cpu_speed " + " ".join(sys.argv[1:])}
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cfg.out.with_suffix(".json"), json.dumps(out, indent=2) + "\n")
    write_text_atomic(cfg.out.with_suffix(".md"), markdown(out))
    return out


def markdown(r: dict) -> str:
    m = r["machine"]
    base = r["configs"][0]["label"]
    lines = [f"# Caffe CPU configurations side by side ({m['date']})", "",
             f"`{r['command']}`", "",
             f"Machine: {m['cpu']}, {m['cpus_usable']} usable CPUs, {m['memory_gib']} GiB; {m['os']}. Python "
             f"{m['python']}, numpy {m['numpy']}. Project commit {m['project_commit']}. Load average (1/5/15 min) at "
             f"the start {m['load_average_start']}, at the end {m['load_average_end']}. TRAIN nets at batch 1, "
             f"{r['height']}×{r['width']}; each figure is the median over {r['rounds']} rounds (configurations "
             f"interleaved) of a child's median of {r['repeats']} passes after 1 warm-up. Took {r['seconds']:.0f} s.",
             "", "Configurations:", ""]
    for c in r["configs"]:
        row = next(x for x in r["results"] if x["config"] == c["label"])
        env = " ".join(f"{k}={v}" for k, v in c["env"].items()) or "(environment as is)"
        lines.append(f"- **{c['label']}**: `{row['prefix']}`, {env}; BLAS: {row['blas']}")
    if r["torch"]:
        t = r["torch"]
        lines += ["", f"PyTorch {t['version']}, {t['threads']} threads ({'; '.join(t['config'])}): the same net, "
                      "weights and inputs (tools.torch_peer)."]
    head = "| arch | config | fwd ms | bwd ms | fwd+bwd ms | vs " + base + " | numerics vs " + base + " |"
    sep = "|---|---|---:|---:|---:|---:|---|"
    if r["torch"]:
        head += " PyTorch fwd+bwd ms | Caffe / PyTorch |"
        sep += "---:|---:|"
    lines += ["", head, sep]
    for x in r["results"]:
        b = next(y for y in r["results"] if y["arch"] == x["arch"] and y["config"] == base)
        n = x["numerics_vs_" + base]
        num = "bit-identical" if n["identical"] else f"max abs {n['max_abs']:.3g}, rel {n['max_rel']:.3g}"
        line = (f"| {x['arch']} | {x['config']} | {x['forward_ms']:.0f} | {x['backward_ms']:.0f} | "
                f"{x['step_ms']:.0f} | {b['step_ms'] / x['step_ms']:.2f}× | {num} |")
        if r["torch"]:
            line += f" {x['torch_fwd_bwd_ms']:.0f} | {x['caffe_over_torch']:.2f} |"
        lines.append(line)
    lines += ["", f"`vs {base}`: {base}'s time over this configuration's (above 1: faster). Numerics: every blob and "
                  "parameter gradient after one forward + backward on the same weights and inputs, against "
                  f"{base}'s (relative: to the array's largest magnitude)."]
    return "\n".join(lines) + "\n"
