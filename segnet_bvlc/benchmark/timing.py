"""The generated nets as every benchmark times them: Input-fed, filled with random inputs, timed layer by layer.

tools.benchmark, tools.cpu_speed, tools.benchmark_data and tools.benchmark_layers all time these nets (built by
prototxt.build_net), not hand-built copies of them.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import caffe
import numpy as np
from prototxt import Options, build_net

from segnet_bvlc.core.device import set_caffe_mode
from segnet_bvlc.dataset.camvid import NUM_CLASSES


def caffe_on(gpu: int | None = None):
    """The caffe module in CPU mode unless --gpu is given (SEGNET_GPU does not apply: figures say their device)."""
    if gpu is None:
        caffe.set_mode_cpu()
        return caffe
    return set_caffe_mode(gpu)


def net_param(arch: str, split: str, batch: int, height: int, width: int, classes: int = NUM_CLASSES):
    """Input-fed NetParameter; the train net has an unweighted SoftmaxWithLoss (class weights cost nothing to time
    and would need a weights file)."""
    opts = Options(split=split, data="input", batch=batch, height=height, width=width, classes=classes)
    if split == "train":
        opts = opts.replace(class_weights="none")
    return build_net(arch, opts)


def write_prototxt(param, folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(str(param))
    return path


def fill_inputs(net, classes: int = NUM_CLASSES, seed: int = 0) -> None:
    """Random 0-255 images and labels 0..K-1: the cost of a pass does not depend on the values."""
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
