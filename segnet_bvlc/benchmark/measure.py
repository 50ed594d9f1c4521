"""The benchmark's measurements (tools.benchmark runs them; tools.benchmark_report renders them).

What each figure is and how it is taken: tools/benchmark.py's docstring and docs/benchmark.md. `run_child`
re-enters `python -m tools.benchmark --child` so that each memory figure comes from a fresh process.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from segnet_bvlc.core.device import set_caffe_mode
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.nets import load as nets
from segnet_bvlc.training import memory


class BenchmarkError(RuntimeError):
    """A one-line reason the benchmark cannot run (bad option, missing input)."""



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
    from segnet_bvlc.lmdb_data.convert import convert

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
    if getattr(cfg, "peer", None) == "torch":  # right after Caffe's, same process, weights and inputs
        row["torch"] = time_torch_peer(train, net, cfg.repeats, cfg.warmup)
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


# ------------------------------------------------------------------------------------------ the PyTorch peer
def torch_info() -> dict:
    """PyTorch's version, threads and the BLAS / CPU kernels its build uses (torch.__config__.show())."""
    import torch

    shown = torch.__config__.show()
    keep = [line.strip(" -") for line in shown.splitlines() if "CPU capability" in line]
    keep += re.findall(r"\b((?:BLAS_INFO|LAPACK_INFO|USE_MKLDNN|USE_OPENMP)=[^,]*)", shown)
    return {"version": torch.__version__, "threads": torch.get_num_threads(), "config": keep}


def time_torch_peer(param, net, repeats: int, warmup: int) -> dict:
    """Forward, backward and a whole SGD step (momentum 0.9) of the net's PyTorch twin (tools.torch_peer), on the
    caffe.Net's weights and inputs: medians over `repeats` after `warmup` steps, in ms."""
    import torch  # tools.benchmark.run has checked that it is installed

    from segnet_bvlc.benchmark.torch_peer import PeerError, TorchPeer

    try:
        peer = TorchPeer(param)
    except PeerError as e:
        raise BenchmarkError(f"--peer torch: {e}") from None
    peer.load_from_caffe(net)
    inputs = {name: torch.from_numpy(net.blobs[name].data.copy()) for name in net.inputs}
    (loss,) = [layer.top[0] for layer in peer.layers if layer.type == "SoftmaxWithLoss"]
    optimiser = torch.optim.SGD(peer.parameters(), lr=1e-12, momentum=0.9)
    fwd, bwd, step = [], [], []
    for r in range(warmup + repeats):
        optimiser.zero_grad()
        t0 = time.perf_counter()
        out = peer.forward(inputs)
        t1 = time.perf_counter()
        out[loss].backward()
        t2 = time.perf_counter()
        optimiser.step()
        t3 = time.perf_counter()
        if r >= warmup:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            step.append((t3 - t0) * 1e3)
    return {"forward_ms": statistics.median(fwd), "backward_ms": statistics.median(bwd),
            "step_ms": statistics.median(step)}


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
    import google.protobuf
    import numpy

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
