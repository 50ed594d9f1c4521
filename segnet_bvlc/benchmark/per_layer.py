"""Micro-benchmarks of the project's Python layers against PyTorch CPU, and their share of a SegNet step
(`python -m tools.benchmark_layers`; what is timed and how: that command's docstring).

PyTorch is optional (the test extra, not a run-time pin): it is imported only by the functions that time it.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import caffe
import numpy as np
from caffe import layers as L
from tqdm import tqdm

from layers.upsample import flat_indices, upsample_backward, upsample_forward
from segnet_bvlc.benchmark.timing import fill_inputs, net_param
from segnet_bvlc.dataset.camvid import HEIGHT, WIDTH
from segnet_bvlc.nets import load as nets

# SegNet at 360x480: (channels, pooled h, pooled w, unpooled h, unpooled w), from upsample1 to upsample5.
SEGNET_SHAPES = [
    (64, 180, 240, 360, 480),
    (128, 90, 120, 180, 240),
    (256, 45, 60, 90, 120),
    (512, 23, 30, 45, 60),
    (512, 12, 15, 23, 30),
]


def _interleaved_ms(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time in ms of each function over ``repeat`` rounds, after one warm-up round.

    The functions run in turn within each round, so all of them see the same background load (the machine
    this was written on has two cores shared with other work).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeat + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if r:  # round 0 warms caches, allocators and Caffe's lazy blob allocation
                times[name].append(elapsed)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _upsample_net(values: np.ndarray, mask: np.ndarray, top_diff: np.ndarray, h_out: int, w_out: int):
    """Our layer in a net: Input(values), Input(mask) -> Upsample, ready to time on that layer alone; (net, its
    index)."""
    n = caffe.NetSpec()
    n.values = L.Input(shape=dict(dim=list(values.shape)))
    n.mask = L.Input(shape=dict(dim=list(values.shape)))
    n.up = L.Python(n.values, n.mask, python_param=dict(
        module="layers.upsample", layer="Upsample",
        param_str=json.dumps({"upsample_h": h_out, "upsample_w": w_out})))
    proto = n.to_proto()
    proto.force_backward = True
    net = nets.net_from_param(proto, caffe.TEST)
    net.blobs["values"].data[...] = values
    net.blobs["mask"].data[...] = mask
    net.blobs["up"].diff[...] = top_diff
    return net, list(net._layer_names).index("up")


def _upsample_shape(c: int, h_in: int, w_in: int, h_out: int, w_out: int, batch: int, repeat: int) -> dict:
    """One unpooling shape: the times (ms) of every implementation, and whether all give PyTorch's numbers."""
    import torch  # optional: see the module docstring
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, c, h_out, w_out), dtype=np.float32))
    pooled, idx = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
    assert pooled.shape[-2:] == (h_in, w_in), f"{h_out}x{w_out} does not pool to {h_in}x{w_in}"
    del x
    values, mask = pooled.numpy(), idx.numpy().astype(np.float32)
    top_diff = rng.standard_normal((batch, c, h_out, w_out), dtype=np.float32)
    net, i = _upsample_net(values, mask, top_diff, h_out, w_out)

    # The pure functions with persistent output and index buffers, as the layer uses them.
    out = np.empty((batch, c, h_out, w_out), np.float32)
    grad = np.empty_like(values)
    index = np.empty((batch * c, h_in * w_in), np.int64)

    def pure_forward():
        flat_indices(mask, h_out, w_out, index)
        upsample_forward(values, mask, h_out, w_out, out=out, index=index)

    # PyTorch: forward allocates and zero-fills its output (Caffe reuses the top blob); backward is
    # autograd's gather into a new tensor.
    p = pooled.clone().requires_grad_()
    g = torch.from_numpy(top_diff)
    up = F.max_unpool2d(p, idx, 2, 2, output_size=(h_out, w_out))
    ms = _interleaved_ms(
        {
            "layer_forward": lambda: net._forward(i, i),
            "layer_backward": lambda: net._backward(i, i),
            "pure_forward": pure_forward,
            "pure_backward": lambda: upsample_backward(top_diff, mask, out=grad, index=index),
            "pure_backward_from_mask": lambda: upsample_backward(
                top_diff, mask, out=grad, index=flat_indices(mask, h_out, w_out, index)
            ),
            "torch_forward": lambda: F.max_unpool2d(p.detach(), idx, 2, 2, output_size=(h_out, w_out)),
            "torch_backward": lambda: torch.autograd.grad(up, p, g, retain_graph=True),
        },
        repeat,
    )
    torch_grad = torch.autograd.grad(up, p, g, retain_graph=True)[0].numpy()
    same = (
        np.array_equal(net.blobs["up"].data, up.detach().numpy())
        and np.array_equal(net.blobs["values"].diff, torch_grad)
        and np.array_equal(out, up.detach().numpy())
        and np.array_equal(grad, torch_grad)
    )
    return {"ms": ms, "same": bool(same)}


def benchmark_upsample(
    shapes: list[tuple[int, int, int, int, int]] | None = None,
    repeat: int = 5,
    batch: int = 4,
    torch_threads: int = 1,
    progress: bool = True,
) -> list[dict]:
    """Forward/backward times (ms) of our Upsample layer, its pure functions and PyTorch's max_unpool2d.

    ``shapes``: (C, H_in, W_in, H_out, W_out) tuples, default SegNet's five at 360x480. One dict per shape.
    """
    import torch  # optional: see the module docstring

    caffe.set_mode_cpu()
    torch.set_num_threads(torch_threads)
    rows = []
    bar = tqdm(shapes or SEGNET_SHAPES, desc="upsample", disable=not progress, file=sys.stderr)
    for c, h_in, w_in, h_out, w_out in bar:
        case = _upsample_shape(c, h_in, w_in, h_out, w_out, batch, repeat)
        ms = case["ms"]
        rows.append(
            {
                "shape_in": [batch, c, h_in, w_in],
                "shape_out": [batch, c, h_out, w_out],
                **{f"{name}_ms": round(v, 3) for name, v in ms.items()},
                "ratio_forward": round(ms["layer_forward"] / ms["torch_forward"], 3),
                "ratio_backward": round(ms["layer_backward"] / ms["torch_backward"], 3),
                "ratio_total": round(
                    (ms["layer_forward"] + ms["layer_backward"])
                    / (ms["torch_forward"] + ms["torch_backward"]),
                    3,
                ),
                "identical_to_torch": case["same"],
                "torch_threads": torch_threads,
                "repeat": repeat,
            }
        )
    return rows


def summarize_upsample(rows: list[dict]) -> dict:
    """Summed times over all shapes (one SegNet pass through every unpooling) and the ratios of the sums."""
    keys = ("layer_forward_ms", "layer_backward_ms", "torch_forward_ms", "torch_backward_ms")
    total = {k: round(sum(r[k] for r in rows), 3) for k in keys}
    ours_f, ours_b = total["layer_forward_ms"], total["layer_backward_ms"]
    torch_f, torch_b = total["torch_forward_ms"], total["torch_backward_ms"]
    total["ratio_forward"] = round(ours_f / torch_f, 3)
    total["ratio_backward"] = round(ours_b / torch_b, 3)
    total["ratio_total"] = round((ours_f + ours_b) / (torch_f + torch_b), 3)
    return total


def benchmark_segnet_basic_share(
    repeat: int = 3, height: int = HEIGHT, width: int = WIDTH, progress: bool = True
) -> dict:
    """Time of the 4 Upsample layers (forward+backward) as a share of a SegNet-Basic forward+backward."""
    caffe.set_mode_cpu()
    # The generated SegNet-Basic TRAIN net (Input-fed, unweighted loss), as `make benchmark` times it.
    net = nets.net_from_param(net_param("segnet-basic", "train", 1, height, width), caffe.TRAIN)
    fill_inputs(net)
    names = list(net._layer_names)
    ups = [i for i, name in enumerate(names) if name.startswith("upsample")]

    def step():
        net.forward()
        net.backward()

    whole, fwd, bwd = [], {i: [] for i in ups}, {i: [] for i in ups}
    for r in tqdm(range(repeat + 1), desc="segnet-basic", disable=not progress, file=sys.stderr):
        start = time.perf_counter()
        step()
        elapsed = time.perf_counter() - start
        # Each Upsample layer alone, right after a full pass, on the blobs that pass left.
        for i in ups:
            t0 = time.perf_counter()
            net._forward(i, i)
            t1 = time.perf_counter()
            net._backward(i, i)
            t2 = time.perf_counter()
            if r:
                fwd[i].append(t1 - t0)
                bwd[i].append(t2 - t1)
        if r:
            whole.append(elapsed)
    whole_ms = 1e3 * statistics.median(whole)
    per_layer = {
        names[i]: {
            "forward_ms": round(1e3 * statistics.median(fwd[i]), 3),
            "backward_ms": round(1e3 * statistics.median(bwd[i]), 3),
        }
        for i in ups
    }
    upsample_ms = sum(v["forward_ms"] + v["backward_ms"] for v in per_layer.values())
    return {
        "input": [1, 3, height, width],
        "whole_forward_backward_ms": round(whole_ms, 1),
        "upsample_forward_backward_ms": round(upsample_ms, 3),
        "upsample_share_percent": round(100 * upsample_ms / whole_ms, 3),
        "upsample_layers": per_layer,
        "repeat": repeat,
    }


def print_upsample(rows: list[dict], share: dict | None, out) -> None:
    """The table of `benchmark_upsample`'s rows (and the SegNet-Basic share) on `out`."""
    head = (
        f"{'in (N,C,H,W)':>20} {'out HxW':>9} | {'layer f':>8} {'layer b':>8} | "
        f"{'pure f':>7} {'pure b':>7} | {'torch f':>8} {'torch b':>8} | "
        f"{'ratio f':>7} {'ratio b':>7} {'f+b':>6} same"
    )
    threads = rows[0]["torch_threads"]
    print(f"Upsample vs PyTorch max_unpool2d (ms, median; torch threads {threads})", file=out)
    print(head, file=out)
    for r in rows:
        print(
            f"{str(tuple(r['shape_in'])):>20} {r['shape_out'][2]:>4}x{r['shape_out'][3]:<4} | "
            f"{r['layer_forward_ms']:8.1f} {r['layer_backward_ms']:8.1f} | "
            f"{r['pure_forward_ms']:7.1f} {r['pure_backward_ms']:7.1f} | "
            f"{r['torch_forward_ms']:8.1f} {r['torch_backward_ms']:8.1f} | "
            f"{r['ratio_forward']:7.2f} {r['ratio_backward']:7.2f} {r['ratio_total']:6.2f} "
            f"{r['identical_to_torch']}",
            file=out,
        )
    total = summarize_upsample(rows)
    print(
        f"{'all shapes':>30} | {total['layer_forward_ms']:8.1f} {total['layer_backward_ms']:8.1f} | "
        f"{'':>15} | {total['torch_forward_ms']:8.1f} {total['torch_backward_ms']:8.1f} | "
        f"{total['ratio_forward']:7.2f} {total['ratio_backward']:7.2f} {total['ratio_total']:6.2f}",
        file=out,
    )
    if share:
        print(
            f"SegNet-Basic 1x3x360x480 forward+backward: {share['whole_forward_backward_ms']:.0f} ms; "
            f"4 Upsample layers: {share['upsample_forward_backward_ms']:.1f} ms "
            f"= {share['upsample_share_percent']:.2f} %",
            file=out,
        )
