"""The paper's controlled benchmark on this machine: Table 1 (decoder variants) and Table 6 (compute and memory).

    python -m tools.benchmark [--arch a,b] [--camvid DIR] [--out results/benchmark] [--quick] [--json]
    python -m tools.benchmark --layer upsample [...]     # the Upsample layer micro-benchmark (tools.benchmark_layers)

For every architecture, at 360x480 with 11 classes (paper §3.3, Table 6 caption):
  params        weights + biases (prototxt.count_params: BatchNorm statistics excluded);
  model MB      size on disk of the deploy net's .caffemodel (10^6 bytes, as Caffe writes it; BN statistics included);
  fwd / bwd ms  the TRAIN net at batch 1 (Table 6: "caffe time", mini-batch 1), Input-fed, timed layer by layer
                (net._forward(i, i) / net._backward(i, i)); the sum over layers is one pass; median over --repeats
                passes after --warmup passes. The per-layer times give the share of our Python layers.
  caffe time    `caffe time -model train.prototxt -iterations N` (BVLC's own averages) alongside; in GPU mode
                pycaffe cannot synchronise the device per layer, so there the `caffe time` figure is the one to read;
  infer ms      the deploy net's forward at batch 1, median (Table 1's "inference time");
  memory MiB    peak resident memory of a child process that builds the net and runs it (deploy at batch 1 for
                inference; TRAIN at batch 4, forward + backward, for training; Table 6), minus that child's resident
                memory before the net was built. The paper read GPU memory from nvidia-smi (which includes the CUDA
                context); on a CPU the host RSS is the analogue. With --gpu, nvidia-smi's figure is recorded too.
  storage       Table 1's storage multiplier, from the architecture (see `storage_multiplier`).
Results go to OUT/benchmark.{md,csv,json,png}, with the paper's figures and the ratios between architectures
(different machines compare by ratio, not by absolute time).
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import gc
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tools import memory, nets, paper
from tools.runio import console_logging, fail, logger, set_caffe_mode

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------------------ the paper's figures
# The paper's figures (data/paper.json, docs/paper.md §1 and §5). Table 1: params (M), storage multiplier
# (None = "n/a"), inference time (ms, Titan, cuDNN v3). Table 6: forward ms, backward ms, training memory MB
# (batch 4), inference memory MB (batch 1), model size MB.
PAPER_TABLE1: dict[str, tuple[float, int | None, float]] = {
    arch: (row["params_m"], row["storage"], row["infer_ms"]) for arch, row in paper.table1().items()}
PAPER_TABLE6: dict[str, tuple[float, ...]] = {arch: tuple(row.values()) for arch, row in paper.table6().items()}
TABLE1_REFERENCE, TABLE6_REFERENCE = "segnet-basic", "segnet"
QUICK_ARCHS = ("segnet-basic", "fcn-basic")
OUTPUTS = ("benchmark.md", "benchmark.csv", "benchmark.json", "benchmark.png")


class BenchmarkError(RuntimeError):
    """A one-line reason the benchmark cannot run (bad option, missing input)."""


log = logger("benchmark").info


# ------------------------------------------------------------------------------------------ nets
def _caffe(gpu: int | None = None):
    """The benchmark runs on the CPU unless --gpu is given (SEGNET_GPU does not apply: figures say their device)."""
    import caffe

    if gpu is None:
        caffe.set_mode_cpu()
        return caffe
    return set_caffe_mode(gpu)


def net_param(arch: str, split: str, batch: int, height: int, width: int, classes: int = 11):
    """Input-fed NetParameter; the train net has an unweighted SoftmaxWithLoss (class weights cost nothing to time
    and would need a weights file)."""
    from prototxt import Options, build_net

    opts = Options(split=split, data="input", batch=batch, height=height, width=width, classes=classes)
    if split == "train":
        opts = opts.replace(class_weights="none")
    return build_net(arch, opts)


def write_prototxt(param, folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(str(param))
    return path


def fill_inputs(net, classes: int = 11, seed: int = 0) -> None:
    """Random 0-255 images and labels 0..K-1: the cost of a pass does not depend on the values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for name in net.inputs:
        blob = net.blobs[name]
        if name == "label":
            blob.data[...] = rng.integers(0, classes, size=blob.data.shape)
        else:
            blob.data[...] = rng.uniform(0, 255, size=blob.data.shape)


def time_layers(net, repeats: int, warmup: int, backward: bool = True) -> dict:
    """Per-layer forward (and backward) times in ms: median over `repeats` passes after `warmup` passes.

    One pass is every layer in order through net._forward(i, i) (then net._backward(i, i) in reverse), so the
    sum over layers is a whole pass plus ~10 us of Python call overhead per layer.
    """
    n = len(net.layers)
    fwd = [[] for _ in range(n)]
    bwd = [[] for _ in range(n)]
    for r in range(warmup + repeats):
        for i in range(n):
            t = time.perf_counter()
            net._forward(i, i)
            if r >= warmup:
                fwd[i].append((time.perf_counter() - t) * 1e3)
        if backward:
            for i in reversed(range(n)):
                t = time.perf_counter()
                net._backward(i, i)
                if r >= warmup:
                    bwd[i].append((time.perf_counter() - t) * 1e3)
    names = list(net._layer_names)
    layers = [{"name": names[i], "type": net.layers[i].type, "forward_ms": statistics.median(fwd[i]),
               "backward_ms": statistics.median(bwd[i]) if backward else 0.0} for i in range(n)]
    passes_f = [sum(fwd[i][k] for i in range(n)) for k in range(repeats)]
    passes_b = [sum(bwd[i][k] for i in range(n)) for k in range(repeats)] if backward else [0.0]
    return {"forward_ms": statistics.median(passes_f), "backward_ms": statistics.median(passes_b),
            "forward_runs_ms": passes_f, "backward_runs_ms": passes_b, "layers": layers}


def storage_multiplier(param, channels: dict[str, int]) -> int:
    """Table 1's storage multiplier from the architecture (paper §3.1, docs/paper.md §1.2).

    The paper counts, for the first-layer encoder feature map only, what the decoder must keep from the encoder,
    in units of one float32 channel at that resolution (64 maps = 11 MB = 64 x 0.17 MB; the pooling indices cost
    0.17 MB, one unit). So, at the first Pooling layer:
      * float maps kept: its value top feeds a layer other than the next encoder layer (a skip). Following the
        skip through per-pixel layers (1x1 convolution, BatchNorm, Scale, ReLU, Crop, Dropout) the smallest channel
        count along the chain is what needs keeping (FCN-Basic keeps the 11-channel 1x1 reduction: 11);
      * else indices kept (its mask top is used, SegNet): 1;
      * else nothing kept: 0 (the paper writes "n/a" for FCN-Basic-NoAddition and 0 for the other two; a Crop
        that only takes the encoder map's shape keeps nothing).
    Skips and indices together count as the float maps (the paper: EncoderAddition = 64, not 65).
    """
    layers = list(param.layer)
    first = next((i for i, l in enumerate(layers) if l.type == "Pooling"), None)
    if first is None:
        return 0
    pool = layers[first]
    later = layers[first + 1:]

    def consumers(blob: str):
        # Readers of the blob's values: a Crop's second bottom only lends its shape; in-place layers keep channels.
        return [l for l in later if blob in (l.bottom[:1] if l.type == "Crop" else l.bottom) and l.top[:1] != [blob]]

    per_pixel = {"BatchNorm", "Scale", "ReLU", "Crop", "Dropout"}
    kept = 0
    for layer in consumers(pool.top[0])[1:]:  # the first consumer is the encoder's next layer; the rest are skips
        c = channels.get(pool.top[0], 0)
        while layer.type in per_pixel or (layer.type == "Convolution"
                                          and list(layer.convolution_param.kernel_size[:1]) == [1]):
            c = min(c, channels.get(layer.top[0], c))
            nxt = consumers(layer.top[0])
            if len(nxt) != 1 or nxt[0].bottom[0] != layer.top[0]:
                break
            layer = nxt[0]
        kept = max(kept, c)
    if kept:
        return kept
    return 1 if len(pool.top) > 1 and consumers(pool.top[1]) else 0


# ------------------------------------------------------------------------------------------ child processes
def child_main(args) -> int:
    """Runs in a fresh process: build one net, run it, report peak memory (and for infer: time, model size)."""
    import numpy as np

    caffe = _caffe(args.gpu)
    baseline = memory.reset_peak_rss()
    with tempfile.TemporaryDirectory(prefix="segnet-bench-") as tmp:
        split = "deploy" if args.child == "infer" else "train"
        param = net_param(args.arch, split, args.batch, args.height, args.width)
        proto = write_prototxt(param, Path(tmp), f"{split}.prototxt")
        net = nets.load_net(proto, phase=caffe.TEST if split == "deploy" else caffe.TRAIN)
        fill_inputs(net)
        out: dict = {"arch": args.arch, "child": args.child, "batch": args.batch}
        if args.child == "infer":
            model = Path(tmp) / "deploy.caffemodel"
            net.save(str(model))
            out["model_bytes"] = model.stat().st_size
            times = []
            for r in range(args.warmup + args.repeats):
                t = time.perf_counter()
                net.forward()
                if args.gpu is not None:
                    np.asarray(net.blobs[net.outputs[0]].data)  # sync the device before reading the clock
                if r >= args.warmup:
                    times.append((time.perf_counter() - t) * 1e3)
            out["infer_ms"] = statistics.median(times)
        else:
            net.forward()
            net.backward()
        out["peak_mib"] = (memory.peak_rss() - baseline) / 2 ** 20
        out["baseline_mib"] = baseline / 2 ** 20
        if args.gpu is not None:
            out["gpu_mib"] = _nvidia_smi_mib(os.getpid())
    print(json.dumps(out))
    return 0


def _nvidia_smi_mib(pid: int) -> float | None:
    try:
        text = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return None


def run_child(kind: str, arch: str, batch: int, cfg: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "tools.benchmark", "--child", kind, "--arch", arch, "--batch", str(batch),
           "--height", str(cfg.height), "--width", str(cfg.width), "--repeats", str(cfg.repeats),
           "--warmup", str(cfg.warmup)]
    if cfg.gpu is not None:
        cmd += ["--gpu", str(cfg.gpu)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchmarkError(f"{arch}: the {kind} child process failed ({proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ caffe time
def caffe_time(prototxt: Path, iterations: int, gpu: int | None) -> dict:
    """BVLC's `caffe time` (TRAIN phase): its 'Average Forward pass' and 'Average Backward pass' in ms."""
    exe = ROOT / ".venv" / "bin" / "caffe"
    if not exe.exists():
        raise BenchmarkError(f"{exe}: missing; run `make setup`")
    cmd = [str(exe), "time", "-model", str(prototxt), "-iterations", str(iterations)]
    if gpu is not None:
        cmd += ["-gpu", str(gpu)]
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    text = proc.stdout + proc.stderr
    found = {key: re.search(rf"Average {label} pass: ([0-9.]+) ms", text)
             for key, label in (("forward_ms", "Forward"), ("backward_ms", "Backward"))}
    if proc.returncode != 0 or not all(found.values()):
        tail = (text.strip().splitlines() or ["(no output)"])[-1]
        raise BenchmarkError(f"caffe time on {prototxt.name} failed ({proc.returncode}): {tail}")
    return {key: float(m.group(1)) for key, m in found.items()} | {"iterations": iterations}


# ------------------------------------------------------------------------------------------ the data layer
def time_data_layer(camvid: Path, height: int, width: int, repeats: int, warmup: int, gpu: int | None,
                    limit: int = 8) -> dict:
    """CamVidData (LMDB decode into the float32 tops) at batch 1, from an LMDB of `limit` CamVid train images."""
    from tools.camvid_to_lmdb import convert

    caffe = _caffe(gpu)
    with tempfile.TemporaryDirectory(prefix="segnet-bench-data-") as tmp:
        lmdb = Path(tmp) / "lmdb"
        convert(camvid, "train", lmdb, height=height, width=width, limit=limit, progress=False)
        params = json.dumps({"source": str(lmdb), "batch_size": 1, "seed": 1, "shuffle": True})
        proto = Path(tmp) / "data.prototxt"
        proto.write_text('layer { name: "data" type: "Python" top: "data" top: "label"\n'
                         '  python_param { module: "layers.camvid_data" layer: "CamVidData"\n'
                         f'    param_str: {json.dumps(params)} }} }}\n')
        net = nets.load_net(proto, phase=caffe.TRAIN)
        times = []
        for r in range(warmup + max(repeats, 5)):  # cheap: always at least 5 timed batches
            t = time.perf_counter()
            net.forward()
            if r >= warmup:
                times.append((time.perf_counter() - t) * 1e3)
        del net
    return {"forward_ms": statistics.median(times), "images": limit}


# ------------------------------------------------------------------------------------------ one architecture
def measure(arch: str, cfg: argparse.Namespace, tmp: Path) -> dict:
    from prototxt import count_params

    caffe = _caffe(cfg.gpu)
    deploy = net_param(arch, "deploy", 1, cfg.height, cfg.width)
    train = net_param(arch, "train", 1, cfg.height, cfg.width)
    row: dict = {"arch": arch, "params": count_params(deploy)}
    proto = write_prototxt(train, tmp, f"{arch}-train.prototxt")
    net = nets.load_net(proto, phase=caffe.TRAIN)
    fill_inputs(net)
    channels = {name: blob.data.shape[1] for name, blob in net.blobs.items() if blob.data.ndim == 4}
    row["storage_multiplier"] = storage_multiplier(deploy, channels)
    timing = time_layers(net, cfg.repeats, cfg.warmup)
    del net
    gc.collect()
    row.update(forward_ms=timing["forward_ms"], backward_ms=timing["backward_ms"],
               forward_runs_ms=timing["forward_runs_ms"], backward_runs_ms=timing["backward_runs_ms"])
    py = [l for l in timing["layers"] if l["type"] == "Python"]
    row["python_layers"] = py
    row["python_forward_share"] = sum(l["forward_ms"] for l in py) / timing["forward_ms"]
    row["python_backward_share"] = (sum(l["backward_ms"] for l in py) / timing["backward_ms"]
                                    if timing["backward_ms"] else 0.0)
    row["layers"] = timing["layers"]
    if cfg.cli_iterations:
        row["caffe_time"] = caffe_time(proto, cfg.cli_iterations, cfg.gpu)
    infer = run_child("infer", arch, 1, cfg)
    row.update(model_bytes=infer["model_bytes"], infer_ms=infer["infer_ms"], infer_mem_mib=infer["peak_mib"],
               infer_gpu_mib=infer.get("gpu_mib"))
    train_child = run_child("train", arch, cfg.train_batch, cfg)
    row.update(train_mem_mib=train_child["peak_mib"], train_gpu_mib=train_child.get("gpu_mib"))
    return row


# ------------------------------------------------------------------------------------------ machine
def openblas_info() -> dict:
    """Threads and build of the OpenBLAS that Caffe links (numpy bundles its own, reported separately)."""
    info: dict = {"OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                  "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    name = ctypes.util.find_library("openblas")
    try:
        lib = ctypes.CDLL(name or "libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        info.update(threads=lib.openblas_get_num_threads(), config=lib.openblas_get_config().decode())
    except (OSError, AttributeError):
        info["threads"] = None
    return info


def machine_info(gpu: int | None) -> dict:
    import caffe
    import numpy
    import google.protobuf

    cpu = ""
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name")), "")
    except OSError:
        pass
    mem_gib = None
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem_gib = round(kib / 2**20, 1)
    except (OSError, AttributeError):
        pass
    prefix = Path(caffe.__file__).resolve().parent.parent.parent
    # "unknown" where there is no git (the Docker image) or no repository (an unpacked archive).
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    gpu_name = None
    if gpu is not None:
        q = subprocess.run(["nvidia-smi", f"--id={gpu}", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True)
        gpu_name = q.stdout.strip() or None
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(), "os": platform.platform(), "cpu": cpu,
        "cpus_usable": len(os.sched_getaffinity(0)), "memory_gib": mem_gib,
        "caffe_build": "CUDA" if "-cuda" in prefix.name else "CPU", "caffe_prefix": prefix.name,
        "caffe_version": getattr(caffe, "__version__", "?"), "mode": "GPU" if gpu is not None else "CPU",
        "gpu": gpu_name, "python": platform.python_version(), "numpy": numpy.__version__,
        "protobuf": google.protobuf.__version__, "openblas": openblas_info(),
        "project_commit": commit,
        # Other processes on the machine skew absolute times (and, as they come and go, the ratios too).
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


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
        for arch, paper in PAPER_TABLE6.items():
            r = by.get(arch)
            if not r or arch == TABLE6_REFERENCE:
                continue
            ratios["table6"].append({
                "arch": arch, "vs": TABLE6_REFERENCE,
                "forward": (_ratio(r["forward_ms"], ref6["forward_ms"]), paper[0] / p[0]),
                "backward": (_ratio(r["backward_ms"], ref6["backward_ms"]), paper[1] / p[1]),
                "train_memory": (_ratio(r["train_mem_mib"], ref6["train_mem_mib"]), paper[2] / p[2]),
                "infer_memory": (_ratio(r["infer_mem_mib"], ref6["infer_mem_mib"]), paper[3] / p[3]),
                "model_size": (_ratio(r["model_bytes"], ref6["model_bytes"]), paper[4] / p[4]),
            })
    ref1 = by.get(TABLE1_REFERENCE)
    if ref1:
        p = PAPER_TABLE1[TABLE1_REFERENCE]
        for arch, paper in PAPER_TABLE1.items():
            r = by.get(arch)
            if not r or arch == TABLE1_REFERENCE:
                continue
            ratios["table1"].append({
                "arch": arch, "vs": TABLE1_REFERENCE,
                "params": (_ratio(r["params"], ref1["params"]), paper[0] / p[0]),
                "infer_time": (_ratio(r["infer_ms"], ref1["infer_ms"]), paper[2] / p[2]),
            })
    return ratios


def markdown(result: dict) -> str:
    m, cfg, rows = result["machine"], result["config"], result["rows"]
    ob = m["openblas"]
    out = io.StringIO()
    w = out.write
    w(f"# SegNet benchmark ({m['date']})\n\n")
    w(f"Machine: {m['cpu'] or '?'}, {m['cpus_usable']} usable CPUs, {m['memory_gib']} GiB; {m['os']}. "
      f"Caffe: BVLC {m['caffe_version']} {m['caffe_build']} build ({m['caffe_prefix']}), run in {m['mode']} mode"
      f"{' on ' + m['gpu'] if m['gpu'] else ''}. OpenBLAS threads: {ob.get('threads')} "
      f"(OPENBLAS_NUM_THREADS={ob.get('OPENBLAS_NUM_THREADS')}). Python {m['python']}, numpy {m['numpy']}, "
      f"protobuf {m['protobuf']}. Project commit {m['project_commit']}.\n\n")
    w(f"Input {cfg['height']}x{cfg['width']}, 11 classes; times are medians of {cfg['repeats']} passes after "
      f"{cfg['warmup']} warm-up; `caffe time` over {cfg['cli_iterations']} iterations; training memory at batch "
      f"{cfg['train_batch']}. Took {result['seconds']:.0f} s. Load average (1/5/15 min) at the start "
      f"{m.get('load_average_start')}, at the end {m.get('load_average_end')} on {m['cpus_usable']} CPUs: other "
      "processes skew the times.\n\n")
    w("## All architectures\n\n")
    w("| arch | params | model MB | fwd ms | bwd ms | caffe time fwd / bwd ms | infer ms | infer MiB | train MiB "
      "| storage | Python layers % fwd / bwd |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for r in rows:
        ct = r.get("caffe_time")
        w(f"| {r['arch']} | {r['params']:,} | {r['model_bytes'] / 1e6:.1f} | {r['forward_ms']:.1f} | "
          f"{r['backward_ms']:.1f} | {_f(ct and ct['forward_ms'])} / {_f(ct and ct['backward_ms'])} | "
          f"{r['infer_ms']:.1f} | {r['infer_mem_mib']:.0f} | {r['train_mem_mib']:.0f} | {r['storage_multiplier']} | "
          f"{100 * r['python_forward_share']:.1f} / {100 * r['python_backward_share']:.1f} |\n")
    by = {r["arch"]: r for r in rows}
    t6 = [a for a in PAPER_TABLE6 if a in by]
    if t6:
        w("\n## Table 6 side by side (paper: GPU, cuDNN v3 era; ours: this machine)\n\n")
        w("| arch | fwd ms ours / paper | bwd ms ours / paper | train mem ours MiB / paper MB | "
          "infer mem ours MiB / paper MB | model MB ours / paper |\n|---|---:|---:|---:|---:|---:|\n")
        for a in t6:
            r, p = by[a], PAPER_TABLE6[a]
            w(f"| {a} | {r['forward_ms']:.1f} / {p[0]} | {r['backward_ms']:.1f} / {p[1]} | "
              f"{r['train_mem_mib']:.0f} / {p[2]} | {r['infer_mem_mib']:.0f} / {p[3]} | "
              f"{r['model_bytes'] / 1e6:.1f} / {p[4]} |\n")
    t1 = [a for a in PAPER_TABLE1 if a in by]
    if t1:
        w("\n## Table 1 side by side\n\n")
        w("| arch | params M ours / paper | storage ours / paper | infer ms ours / paper |\n|---|---:|---:|---:|\n")
        for a in t1:
            r, p = by[a], PAPER_TABLE1[a]
            w(f"| {a} | {r['params'] / 1e6:.3f} / {p[0]} | {r['storage_multiplier']} / "
              f"{'n/a' if p[1] is None else p[1]} | {r['infer_ms']:.1f} / {p[2]} |\n")
    ratios = result["ratios"]
    if ratios["table6"] or ratios["table1"]:
        w("\n## Ratios between architectures (ours / paper): compare these across machines\n\n")
    if ratios["table6"]:
        w(f"| arch / {TABLE6_REFERENCE} | forward | backward | train memory | infer memory | model size |\n"
          "|---|---:|---:|---:|---:|---:|\n")
        for x in ratios["table6"]:
            cells = " | ".join(f"{_f(x[k][0], '{:.2f}')} / {x[k][1]:.2f}"
                               for k in ("forward", "backward", "train_memory", "infer_memory", "model_size"))
            w(f"| {x['arch']} | {cells} |\n")
        w("\n")
    if ratios["table1"]:
        w(f"| arch / {TABLE1_REFERENCE} | params | inference time |\n|---|---:|---:|\n")
        for x in ratios["table1"]:
            w(f"| {x['arch']} | {_f(x['params'][0], '{:.2f}')} / {x['params'][1]:.2f} | "
              f"{_f(x['infer_time'][0], '{:.2f}')} / {x['infer_time'][1]:.2f} |\n")
    seg = by.get("segnet") or next((r for r in rows if r["python_layers"]), None)
    if seg and seg["python_layers"]:
        w(f"\n## Cost of our Python layers in {seg['arch']} (TRAIN net, batch 1)\n\n")
        w("| layer | fwd ms | bwd ms | % of fwd | % of bwd |\n|---|---:|---:|---:|---:|\n")
        for l in seg["python_layers"]:
            w(f"| {l['name']} | {l['forward_ms']:.2f} | {l['backward_ms']:.2f} | "
              f"{100 * l['forward_ms'] / seg['forward_ms']:.1f} | "
              f"{100 * l['backward_ms'] / seg['backward_ms'] if seg['backward_ms'] else 0:.1f} |\n")
        data = result.get("data_layer")
        if data:
            share = data["forward_ms"] / (data["forward_ms"] + seg["forward_ms"])
            w(f"| data (CamVidData, LMDB, batch 1) | {data['forward_ms']:.2f} | 0 | {100 * share:.1f} | 0 |\n")
        else:
            w("\n(The CamVidData layer was not timed: no CamVid folder given.)\n")
    w("\nNotes: fwd/bwd are the TRAIN net (BatchNorm in batch-statistics mode, unweighted SoftmaxWithLoss), Input-fed. "
      "Memory is the peak RSS of a child process above its RSS before building the net (the paper: nvidia-smi "
      "GPU memory). Model MB is the deploy .caffemodel (BatchNorm statistics included). Storage is Table 1's "
      "multiplier derived from the net (tools/benchmark.py `storage_multiplier`).\n")
    return out.getvalue()


CSV_FIELDS = ["arch", "params", "model_bytes", "forward_ms", "backward_ms", "caffe_time_forward_ms",
              "caffe_time_backward_ms", "infer_ms", "infer_mem_mib", "train_mem_mib", "storage_multiplier",
              "python_forward_share", "python_backward_share", "paper_params_m", "paper_storage", "paper_infer_ms",
              "paper_forward_ms", "paper_backward_ms", "paper_train_mem_mb", "paper_infer_mem_mb", "paper_size_mb"]


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        t1 = PAPER_TABLE1.get(r["arch"], (None, None, None))
        t6 = PAPER_TABLE6.get(r["arch"], (None,) * 5)
        ct = r.get("caffe_time") or {}
        writer.writerow({k: r.get(k) for k in CSV_FIELDS if k in r} | {
            "caffe_time_forward_ms": ct.get("forward_ms"), "caffe_time_backward_ms": ct.get("backward_ms"),
            "paper_params_m": t1[0], "paper_storage": t1[1], "paper_infer_ms": t1[2], "paper_forward_ms": t6[0],
            "paper_backward_ms": t6[1], "paper_train_mem_mb": t6[2], "paper_infer_mem_mb": t6[3],
            "paper_size_mb": t6[4]})
    return out.getvalue()


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

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


# ------------------------------------------------------------------------------------------ CLI
def run(cfg: argparse.Namespace) -> dict:
    from prototxt import ARCHS
    from tqdm import tqdm

    archs = cfg.archs
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        raise BenchmarkError(f"--arch: unknown architecture(s) {', '.join(unknown)} (known: {', '.join(ARCHS)})")
    if cfg.camvid is not None and not cfg.camvid.exists():
        # `make benchmark` always passes CAMVID (default data/CamVid): without CamVid, everything else still runs.
        log(f"benchmark: no CamVid at {cfg.camvid}: the CamVidData layer is not timed")
        cfg.camvid = None
    if cfg.camvid is not None and not (cfg.camvid / "train.txt").is_file():
        raise BenchmarkError(f"{cfg.camvid}: not a CamVid folder (no train.txt); omit --camvid to skip the data layer")
    start = time.perf_counter()
    result: dict = {"machine": machine_info(cfg.gpu),
                    "config": {k: getattr(cfg, k) for k in ("height", "width", "repeats", "warmup", "cli_iterations",
                                                           "train_batch", "quick", "gpu")} | {"archs": archs},
                    "rows": []}
    with tempfile.TemporaryDirectory(prefix="segnet-bench-") as tmp:
        bar = tqdm(archs, desc="benchmark", unit="arch", file=sys.stderr, disable=not sys.stderr.isatty())
        for arch in bar:
            bar.set_postfix_str(arch)
            t = time.perf_counter()
            row = measure(arch, cfg, Path(tmp))
            result["rows"].append(row)
            log(f"{arch}: fwd {row['forward_ms']:.1f} ms, bwd {row['backward_ms']:.1f} ms, infer "
                f"{row['infer_ms']:.1f} ms, {row['infer_mem_mib']:.0f} / {row['train_mem_mib']:.0f} MiB "
                f"({time.perf_counter() - t:.0f} s)")
    if cfg.camvid is not None:
        result["data_layer"] = time_data_layer(cfg.camvid, cfg.height, cfg.width, cfg.repeats, cfg.warmup, cfg.gpu)
    result["ratios"] = summarise(result["rows"])
    result["seconds"] = time.perf_counter() - start
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark", description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (and README) for what is measured and how.")
    parser.add_argument("--arch", help="comma-separated architectures (default: all; --quick: "
                        + ",".join(QUICK_ARCHS) + ")")
    parser.add_argument("--camvid", type=Path,
                        help="CamVid folder: times the CamVidData layer on a few real images (skipped if absent)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmark"), help="results folder")
    parser.add_argument("--height", type=int, help="input height (default 360; --quick 64)")
    parser.add_argument("--width", type=int, help="input width (default 480; --quick 96)")
    parser.add_argument("--repeats", type=int, help="timed passes per measurement (default 3; --quick 1)")
    parser.add_argument("--warmup", type=int, help="untimed passes first (default 1; --quick 0)")
    parser.add_argument("--cli-iterations", type=int,
                        help="`caffe time` iterations, 0 to skip (default 2; the paper: 10; --quick 1)")
    parser.add_argument("--train-batch", type=int, default=4, help="batch of the training-memory run (Table 6: 4)")
    parser.add_argument("--gpu", type=int, help="run in GPU mode on this device (needs the CUDA build)")
    parser.add_argument("--quick", action="store_true", help="small input, one repeat, two architectures (tests)")
    parser.add_argument("--layer", choices=["upsample"],
                        help="instead: the layer micro-benchmark of tools.benchmark_layers")
    parser.add_argument("--json", action="store_true", help="print the result JSON on stdout")
    parser.add_argument("--child", choices=["infer", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    console_logging()
    quick = args.quick
    defaults = {"height": (360, 64), "width": (480, 96), "repeats": (3, 1), "warmup": (1, 0), "cli_iterations": (2, 1)}
    for key, (full, small) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, small if quick else full)
    args.archs = [a.strip() for a in args.arch.split(",") if a.strip()] if args.arch else None
    for key in ("height", "width", "repeats", "train_batch"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.cli_iterations < 0:
        parser.error("--warmup and --cli-iterations must be >= 0")
    if args.gpu is not None:
        from tools.runio import gpu_problem

        if gpu_problem(args.gpu):
            parser.error(gpu_problem(args.gpu))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    if args.layer:
        from tools import benchmark_layers

        forwarded = ["--layer", args.layer, "--repeat", str(max(args.repeats, 1))] + (["--json"] if args.json else [])
        return benchmark_layers.main(forwarded)
    if args.archs is None:
        from prototxt import ARCHS

        args.archs = list(QUICK_ARCHS) if args.quick else list(ARCHS)
    from tools.evaluate import EvaluationError, check_out_folder

    try:
        check_out_folder(args.out)  # before the long measurements
        result = run(args)
        write_outputs(result, args.out)
    except (BenchmarkError, EvaluationError) as e:
        fail("benchmark", str(e), code=1)
    except OSError as e:
        fail("benchmark", f"{e.filename or args.out}: {e.strerror or e}", code=1)
    log(f"wrote {', '.join(str(args.out / f) for f in OUTPUTS)}")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
