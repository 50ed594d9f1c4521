"""How much memory a training run will need, estimated before it starts, and the check that refuses a run that
cannot fit (rather than being killed by the kernel hours later, at its first validation).

The estimate is a count of what BVLC Caffe allocates, read off the nets built at the run's sizes (Caffe allocates
lazily, so building them costs almost nothing):

- every blob of the net: data, plus its diff while training;
- learnable parameters: data, diff and the SGD history while training, plus the transient protobuf copy and
  serialisation of a snapshot (two more), data alone for inference;
- layer internals: the im2col column buffer of each convolution (C_in·kh·kw × H_out·W_out floats, per layer,
  whatever the batch: at 360×480 a 7×7 64-channel convolution alone needs 2.2 GB) and of each deconvolution
  (C_out·kh·kw × H_in·W_in), BatchNorm's two copies of its input, the softmax's probabilities in the loss,
  dropout masks, max-pooling indices where no mask top is asked for;
- the training and validation images the data layers keep in RAM (uint8).

A validation runs with the solver released (segnet_bvlc.training.validation.Validator), so the peak is the larger of training and
validation (its statistics pass net at the training batch, then its scoring net at batch 1), not their sum.
The figures in the benchmark's memory report (tools.benchmark --memory) set the estimate beside measured peaks.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

from segnet_bvlc.core.device import gpu_device
from segnet_bvlc.core.log import logger

FLOAT = 4
GB = 1024 ** 3


def _conv_col(layer_param, bottom_shape, top_shape) -> int:
    """Floats in the im2col buffer of a (de)convolution; 0 for 1x1 stride-1 unpadded ones (Caffe skips im2col)."""
    p = layer_param.convolution_param
    k = list(p.kernel_size) or [p.kernel_h, p.kernel_w]
    kh, kw = (k[0], k[0]) if len(k) == 1 else (k[0], k[1])
    stride = list(p.stride) or [p.stride_h or 1]
    pad = list(p.pad) or [p.pad_h or 0]
    if kh == kw == 1 and all(s == 1 for s in stride) and all(q == 0 for q in pad):
        return 0
    if layer_param.type == "Deconvolution":
        return top_shape[1] * kh * kw * bottom_shape[2] * bottom_shape[3]
    return bottom_shape[1] * kh * kw * top_shape[2] * top_shape[3]


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def net_bytes(net, net_param, training: bool) -> dict:
    """{"blobs", "params", "internal", "total"} bytes that `net` needs to run forward (and backward when
    `training`). `net_param` is the NetParameter `net` was built from (for kernel sizes)."""
    by_name = {layer.name: layer for layer in net_param.layer}
    blobs = sum(b.count for b in net.blobs.values()) * FLOAT * (2 if training else 1)
    weights = sum(b.count for blobs_ in net.params.values() for b in blobs_) * FLOAT
    # Training: data, diff and SGD history, plus a snapshot's transient copy and serialisation (Caffe's ToProto).
    params = weights * (5 if training else 1)
    internal = python_top = 0
    for name, layer in zip(net._layer_names, net.layers):
        bottoms = [net.blobs[b].data.shape for b in net.bottom_names[name]]
        tops = [net.blobs[t].data.shape for t in net.top_names[name]]
        kind = layer.type
        if kind in ("Convolution", "Deconvolution"):
            internal += _conv_col(by_name[name], bottoms[0], tops[0]) * FLOAT
        elif kind == "BatchNorm":
            internal += 2 * _count(bottoms[0]) * FLOAT
        elif kind == "Scale" and net.bottom_names[name][0] == net.top_names[name][0]:
            internal += _count(bottoms[0]) * FLOAT  # an in-place Scale keeps a copy of its input
        elif kind == "Python":
            python_top = max(python_top, _count(tops[0]) * FLOAT)
        elif kind in ("SoftmaxWithLoss", "InfogainLoss"):
            internal += _count(bottoms[0]) * FLOAT
        elif kind == "Dropout":
            internal += _count(bottoms[0]) * 4
        elif kind == "Pooling" and len(tops) == 1:
            internal += _count(tops[0]) * 4
    # NumPy temporaries of the Python layers (the unpooling builds its output and index arrays): two of the
    # largest top at once, briefly.
    internal += 2 * python_top
    return {"blobs": blobs, "params": params, "internal": internal, "total": blobs + params + internal}


def lmdb_cache_bytes(source: str | Path) -> int:
    """RAM the data layer's cache of an LMDB pair takes (uint8 images and labels)."""
    meta = Path(source) / "meta.json"
    if not meta.is_file():
        return 0
    m = json.loads(meta.read_text())
    return int(m.get("count", 0)) * int(m.get("height", 0)) * int(m.get("width", 0)) * 4


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss() -> int:
    """Resident memory of this process now (bytes)."""
    return _status_bytes("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss() -> int:
    """Peak resident memory of this process's image (bytes): VmHWM. Not getrusage's ru_maxrss, which Linux keeps
    across execve, so a child started from a large parent would report the parent's peak as its own."""
    return _status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> int:
    """Reset this process's peak-RSS mark (Linux >= 4.0: `5` into /proc/self/clear_refs) and return the current RSS
    in bytes: the baseline for peak_rss(). Without the reset, the imports' transient peak would hide a small net's
    memory; where the reset is not allowed, the peak so far is the baseline instead."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return current_rss()
    except OSError:
        return peak_rss()


def estimate_run(cfg, train_prototxt: Path, deploy_prototxt: Path) -> dict:
    """Bytes a tools.train run with `cfg` will need at its peak. Validation runs with the solver released
    (segnet_bvlc.training.validation.Validator): its statistics pass net (forward only, training batch) and then its scoring net
    (batch 1), so the peak is the larger of training and validation, not their sum."""
    # Imported here, not above: the benchmark's measuring process imports this module for the RSS readers
    # before it loads Caffe (so its baseline leaves Caffe out), and these modules load Caffe.
    import caffe

    from segnet_bvlc.bn_stats import in_batch_mode
    from segnet_bvlc.nets.load import load_net_param, net_from_param
    from segnet_bvlc.training.nets import set_data_param

    train_param = load_net_param(train_prototxt)
    set_data_param(train_param, cache=False)  # the estimate counts the cache itself
    net = net_from_param(train_param, caffe.TRAIN)
    train = net_bytes(net, train_param, training=True)
    del net
    validation = {"total": 0}
    if cfg.val_source:
        deploy_param = load_net_param(deploy_prototxt)
        net = net_from_param(deploy_param)
        scoring = net_bytes(net, deploy_param, training=False)
        del net
        pass_param = in_batch_mode(deploy_param)
        pass_param.layer[0].input_param.shape[0].dim[0] = cfg.batch
        net = net_from_param(pass_param)
        statistics = net_bytes(net, pass_param, training=False)
        del net
        validation = max(scoring, statistics, key=lambda d: d["total"])
    gc.collect()
    data = lmdb_cache_bytes(cfg.train_source) + lmdb_cache_bytes(cfg.val_source)
    base = current_rss()
    return {"base": base, "training": train["total"], "validation": validation["total"], "data": data,
            "total": base + data + max(train["total"], validation["total"]), "training_detail": train}


def available_bytes() -> tuple[int | None, str]:
    """(free memory, where): the GPU's free memory when training runs on a GPU, else the host's MemAvailable."""
    gpu = gpu_device()
    if gpu and shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits",
                                  "-i", gpu], capture_output=True, text=True, timeout=30).stdout
            return int(out.split()[0]) * 1024 ** 2, f"GPU {gpu}"
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None, f"GPU {gpu}"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "this machine"
    except OSError:
        pass
    return None, "this machine"


def preflight(cfg) -> dict:
    """Estimate the run's peak memory and refuse it (RunError) when it exceeds what is free.

    The message gives the figures and the options: a smaller --batch, or --iter-size to keep the effective batch
    with less memory (BatchNorm then normalises with the statistics of the smaller batch: a deviation from the
    paper's protocol)."""
    # Imported here for the reason estimate_run gives (they load Caffe through the generators).
    from segnet_bvlc.training.config import RunError
    from segnet_bvlc.training.nets import write_nets

    limit_env = os.environ.get("SEGNET_MEMORY_LIMIT_GB")  # pretend the machine has this much free (tests)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_nets(cfg, Path(tmp))
        est = estimate_run(cfg, paths["train"], paths["deploy"])
    free, where = (float(limit_env) * GB, "SEGNET_MEMORY_LIMIT_GB") if limit_env else available_bytes()
    need = est["total"] * 1.15  # the estimate is within -10 % .. +6 % of measured peaks (results/memory)
    fits = free is None or need <= free
    summary = {"estimate_gb": need / GB, "free_gb": free / GB if free else None, "where": where, "fits": fits,
               "training_gb": est["training"] / GB, "validation_gb": est["validation"] / GB}
    logger("memory").info(f"[memory] estimated peak {need / GB:.1f} GB (training {est['training'] / GB:.1f} GB, validation "
        f"{est['validation'] / GB:.1f} GB, data {est['data'] / GB:.2f} GB); "
        + (f"{free / GB:.1f} GB free on {where}" if free else f"free memory on {where} unknown"))
    if not fits:
        per_image = max(est["training"] / cfg.batch, 1)  # conservative: column buffers do not grow with the batch
        batch_fits = max(int((free / 1.15 - est["base"] - est["data"]) // per_image), 0)
        options = []
        if batch_fits >= 1:
            options.append(f"--batch {batch_fits}")
            k = -(-cfg.batch // batch_fits)
            if k > 1:
                options.append(f"--batch {-(-cfg.batch // k)} --iter-size {k} (about the same effective batch; "
                               "BatchNorm then normalises with the smaller batch's statistics, a deviation)")
        options.append("--no-memory-check to try anyway")
        raise RunError(f"this run needs about {need / GB:.1f} GB but {where} has {free / GB:.1f} GB free; "
                       f"try {' or '.join(options)}")
    return summary
