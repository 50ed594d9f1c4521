"""BatchNorm statistics for inference from one full pass over the training set, as the paper does.

The paper (§4, "BN statistics at test") makes a complete pass through the training data before every evaluation
and uses the resulting statistics at test time; SegNet-Tutorial's `compute_bn_statistics.py` does it. BVLC's
BatchNorm keeps a moving average while training instead, which is only an approximation of that: this tool
replaces it with the statistics of a full pass.

How the pass runs: every BatchNorm layer normalises with its mini-batch statistics during the pass (BVLC
`use_global_stats: false`, caffe-segnet's LEARN mode), exactly as `compute_bn_statistics.py` runs the train net,
so each layer sees the inputs it saw in training. Two ways of turning the pass into statistics:

- `exact` (default): pooled sums over every pixel of every image, so mean = E[x] and variance = E[x²] − E[x]²
  over the whole training set (N·H·W values per channel), with the unbiased factor m/(m−1), m the total count.
- `tutorial`: SegNet-Tutorial's rule: the average of the per-batch means and the average of the per-batch
  variances times m/(m−1), m the N·H·W of one batch. The script's iteration count `N//bs + N%bs` over a list
  that wraps round (every batch full, some images twice) is not reproduced: every image is used once, so the
  last batch may be partial. Each batch then counts as a sample of its own m_b values: its unbiased variance
  uses its own factor m_b/(m_b−1), and batches are averaged weighted by m_b, so a partial batch's images
  weigh as much as any others. With only full batches this is exactly the script's rule
  (docs/bn_statistics.md).

The statistics are written into BVLC BatchNorm blobs (mean, variance, scale factor 1). `fold_batchnorm` also
writes a deploy net without BatchNorm, its statistics folded into the following Scale layer:
γ' = γ/√(var+ε), β' = β − γ·mean/√(var+ε) (what SegNet-Tutorial's script does to the fork's BN blobs).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.core.files import atomic_path, write_text_atomic
from segnet_bvlc.lmdb_data.pairs import META, PairReader
from segnet_bvlc.nets.load import load_net_param, net_from_param

RULES = ("exact", "tutorial")


class BatchNormStatsError(SegnetError):
    """Inputs the statistics cannot be computed from; the message names the file or setting."""


def _caffe_pb2():
    # Imported lazily: pycaffe is heavy, and Moments and the rules work without it.
    from caffe.proto import caffe_pb2

    return caffe_pb2


def check_inputs(model: Path, weights: Path, source: Path, batch: int) -> None:
    """BatchNormStatsError naming the first input that cannot be used (before anything heavy is loaded)."""
    for path in (model, weights):
        if not path.is_file():
            raise BatchNormStatsError(f"{path}: not found")
    if batch < 1:
        raise BatchNormStatsError(f"--batch must be >= 1, got {batch}")
    if not (source / META).is_file():
        raise BatchNormStatsError(f"{source}: not an LMDB pair (no meta.json inside; make one with "
                                  "tools.camvid_to_lmdb)")


def batchnorm_layers(net_param) -> list:
    return [layer for layer in net_param.layer if layer.type == "BatchNorm"]


def in_batch_mode(net_param):
    """A copy of `net_param` whose BatchNorm layers use mini-batch statistics (the pass's mode)."""
    copy = _caffe_pb2().NetParameter()
    copy.CopyFrom(net_param)
    for layer in batchnorm_layers(copy):
        layer.batch_norm_param.use_global_stats = False
    copy.ClearField("state")
    return copy


class Moments:
    """Per-channel statistics of one BatchNorm input, accumulated batch by batch.

    result("exact") pools every value; result("tutorial") averages the batches' means and unbiased variances
    (each with its own m_b = N·H·W), weighted by m_b: the script's rule when every batch is full, and a
    partial last batch counts in proportion to its size.
    """

    def __init__(self):
        self.count = 0
        self.sum = self.sumsq = None
        self.batch_means: list[np.ndarray] = []
        self.batch_vars: list[np.ndarray] = []  # biased (divided by m_b)
        self.batch_counts: list[int] = []  # m_b = N·H·W of each batch

    def add(self, x: np.ndarray) -> None:
        x = x.astype(np.float64, copy=False)
        axes = (0,) + tuple(range(2, x.ndim))
        m = x.size // x.shape[1]
        s, ss = x.sum(axis=axes), np.square(x).sum(axis=axes)
        if self.sum is None:
            self.sum, self.sumsq = np.zeros_like(s), np.zeros_like(ss)
        self.sum += s
        self.sumsq += ss
        self.count += m
        self.batch_means.append(s / m)
        self.batch_vars.append(ss / m - np.square(s / m))
        self.batch_counts.append(m)

    def result(self, rule: str = "exact") -> tuple[np.ndarray, np.ndarray]:
        if self.count < 2:
            raise BatchNormStatsError("BatchNorm statistics need at least two values per channel")
        if rule == "exact":
            mean = self.sum / self.count
            var = (self.sumsq / self.count - np.square(mean)) * self.count / (self.count - 1)
        elif rule == "tutorial":
            m = np.array(self.batch_counts, dtype=np.float64)[:, None]
            if (m < 2).any():
                raise BatchNormStatsError("the tutorial rule needs at least two values per channel in every batch")
            weight = m / m.sum()
            mean = (weight * np.array(self.batch_means)).sum(axis=0)
            var = (weight * np.array(self.batch_vars) * m / (m - 1)).sum(axis=0)
        else:
            raise BatchNormStatsError(f"unknown rule '{rule}' (exact or tutorial)")
        return mean, np.maximum(var, 0.0)


def _segments(net, bn_names: list[str]) -> list[tuple[str | None, str, str, str]]:
    """For each BatchNorm: (first layer of the segment before it, the layer just before it, bn name, input blob)."""
    names = list(net._layer_names)
    bottoms = {name: net.bottom_names[name] for name in names}
    segments, start = [], None
    for bn in bn_names:
        i = names.index(bn)
        segments.append((start, names[i - 1], bn, bottoms[bn][0]))
        start = bn
    return segments


def accumulate(net, batches: Iterable[dict[str, np.ndarray]], progress=None) -> dict[str, Moments]:
    """Run `net` (BatchNorm in batch mode) over `batches` ({blob: array}); the moments of each BN's input.

    The net is run segment by segment so each BatchNorm's input is read before an in-place BatchNorm overwrites it;
    every layer reshapes to the fed batch as it runs (so the last batch may be smaller), and the pass stops at the
    last BatchNorm: nothing after it (scores) is computed.
    """
    bn_names = [name for name, layer in zip(net._layer_names, net.layers) if layer.type == "BatchNorm"]
    if not bn_names:
        raise BatchNormStatsError("the net has no BatchNorm layer")
    moments = {name: Moments() for name in bn_names}
    segments = _segments(net, bn_names)
    for feed in batches:
        for blob, array in feed.items():
            if net.blobs[blob].data.shape != array.shape:
                net.blobs[blob].reshape(*array.shape)
            net.blobs[blob].data[...] = array
        for start, before, bn, blob in segments:
            net.forward(start=start, end=before)
            moments[bn].add(net.blobs[blob].data)
        if progress is not None:
            progress.update(1)
    return moments


def write_statistics(net, moments: dict[str, Moments], rule: str = "exact") -> None:
    """Store the statistics in the BatchNorm blobs (BVLC divides blobs 0 and 1 by blob 2, the scale factor)."""
    for name, m in moments.items():
        mean, var = m.result(rule)
        blobs = net.params[name]
        blobs[0].data[...] = mean
        blobs[1].data[...] = var
        blobs[2].data[...] = 1.0


def fold_batchnorm(net_param, net) -> tuple[object, dict[str, list[np.ndarray]]]:
    """A deploy NetParameter without BatchNorm layers and the Scale parameters with the statistics folded in.

    Every BatchNorm must be followed by a Scale (bias_term) reading its top, which is how the generators emit them.
    """
    folded = _caffe_pb2().NetParameter()
    folded.CopyFrom(net_param)
    layers = list(folded.layer)
    rename: dict[str, str] = {}
    params: dict[str, list[np.ndarray]] = {}
    keep = []
    for i, layer in enumerate(layers):
        if layer.type == "BatchNorm":
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if nxt is None or nxt.type != "Scale" or list(nxt.bottom) != list(layer.top):
                raise BatchNormStatsError(f"BatchNorm '{layer.name}' is not followed by a Scale on its top; "
                                          "cannot fold")
            eps = layer.batch_norm_param.eps if layer.batch_norm_param.HasField("eps") else 1e-5
            b = net.params[layer.name]
            factor = float(b[2].data[0])
            factor = 0.0 if factor == 0 else 1.0 / factor
            mean, var = b[0].data * factor, b[1].data * factor
            gamma, beta = net.params[nxt.name][0].data, net.params[nxt.name][1].data
            inv = 1.0 / np.sqrt(var + eps)
            params[nxt.name] = [gamma * inv, beta - gamma * mean * inv]
            if layer.top[0] != layer.bottom[0]:
                rename[layer.top[0]] = layer.bottom[0]
            continue
        for j, bottom in enumerate(layer.bottom):
            layer.bottom[j] = rename.get(bottom, bottom)
        keep.append(layer)
    del folded.layer[:]
    folded.layer.extend(keep)
    return folded, params


def compute(model: Path, weights: Path, batches: Iterable[dict[str, np.ndarray]], out: Path,
            rule: str = "exact", folded_out: Path | None = None, total: int | None = None) -> dict:
    """Full pass over `batches` with the net of `model`; writes `out` (and a folded deploy pair)."""
    net_param = load_net_param(model)
    batch_param = in_batch_mode(net_param)
    net = net_from_param(batch_param, weights=weights)
    with tqdm(total=total, desc="BN statistics", unit="batch", file=sys.stderr, disable=None) as bar:
        moments = accumulate(net, batches, bar)
    write_statistics(net, moments, rule)
    with atomic_path(out) as tmp:
        net.save(str(tmp))
    summary = {"weights": str(out), "rule": rule, "layers": len(moments),
               "values_per_channel": {k: m.count for k, m in moments.items()}}
    if folded_out is not None:
        summary.update(write_folded(net_param, net, folded_out))
    return summary


def write_folded(net_param, net, folded_out: Path) -> dict:
    """The BatchNorm-folded deploy pair of `net` (statistics already in its BatchNorm blobs): folded_out and
    folded_out.prototxt."""
    import caffe  # heavy: only the folded net needs it directly

    folded_param, params = fold_batchnorm(net_param, net)
    folded_model = folded_out.with_suffix(".prototxt")
    write_text_atomic(folded_model, str(folded_param))
    folded_net = caffe.Net(str(folded_model), caffe.TEST)
    for name in folded_net.params:
        source = params.get(name) or [b.data for b in net.params[name]]
        for blob, value in zip(folded_net.params[name], source):
            blob.data[...] = value
    with atomic_path(folded_out) as tmp:
        folded_net.save(str(tmp))
    return {"folded_weights": str(folded_out), "folded_model": str(folded_model)}


def lmdb_batches(source: Path, batch: int, data_blob: str = "data", label_blob: str | None = None
                 ) -> tuple[Iterator[dict[str, np.ndarray]], int]:
    """Batches of an LMDB pair in list order (images raw 0–255 BGR as the data layer gives them)."""
    reader = PairReader(source)
    n = len(reader)

    def gen():
        with reader:
            for i in range(0, n, batch):
                chunk = [reader[j] for j in range(i, min(i + batch, n))]
                feed = {data_blob: np.stack([img for img, _ in chunk]).astype(np.float32)}
                if label_blob:
                    feed[label_blob] = np.stack([lab for _, lab in chunk]).astype(np.float32)
                yield feed

    return gen(), -(-n // batch)
