"""Monte Carlo dropout for stock BVLC Caffe: caffe-segnet's ``sample_weights_test``, as a Python layer.

Bayesian SegNet (Kendall, Badrinarayanan and Cipolla, BMVC 2017) keeps dropout on at test time and averages
the softmax of several stochastic forward passes. caffe-segnet does it with a flag of its Dropout layer,
``dropout_param { sample_weights_test: true }``, which makes the TEST phase draw a new Bernoulli mask on every
forward exactly as TRAIN does (``src/caffe/layers/dropout_layer.cpp``). BVLC's Dropout has no such flag: in
TEST it copies its input. This layer is the sampling one::

    layer { name: "encdrop3" type: "Python" bottom: "pool3" top: "pool3"
            python_param { module: "layers.mc_dropout" layer: "MCDropout"
                           param_str: '{"dropout_ratio": 0.5}' } }

Forward, in every phase: ``top = bottom * mask * scale``, where each element of ``mask`` is 1 with
probability ``1 - dropout_ratio`` (Caffe's ``caffe_rng_bernoulli(count, 1 - threshold, mask)``), drawn anew on
every forward, and ``scale = 1 / (1 - dropout_ratio)`` rounded to float32 as Caffe's ``scale_``. Backward:
``bottom_diff = top_diff * mask * scale`` with the mask of the last forward. In place is fine.

Randomness: NumPy's PCG64 generator, one per layer, instead of Caffe's global Boost RNG (so the masks are not
bit-for-bit caffe-segnet's; their distribution is). ``param_str`` may give ``"seed"``; without it a layer
starts from fresh OS entropy. ``seed_net(net, seed)`` reseeds every MCDropout layer of a built net from
``(seed, layer index)``, so a sequence of forwards is reproducible, and the masks a layer draws do not depend
on how the forwards are batched: one forward at batch N draws the same numbers, in the same order, as N
forwards at batch 1.

``sampling_net_param(net_param)`` turns any net's Dropout layers into MCDropout layers with the same name,
bottoms, tops and ratio: the test/deploy variant that samples, of a generated ``--dropout`` net, a run
folder's ``net/deploy.prototxt`` or a converted Bayesian SegNet model's prototxt. The generator writes the
same net directly with ``python -m prototxt ARCH --split deploy --dropout --mc-dropout``.
"""

from __future__ import annotations

import json

import numpy as np

try:
    import caffe

    _LayerBase = caffe.Layer
except ImportError:  # the pure functions stay usable without Caffe; the layer needs it
    caffe = None
    _LayerBase = object

MODULE = "layers.mc_dropout"
LAYER = "MCDropout"
PARAM_KEYS = ("dropout_ratio", "seed")


class MCDropoutError(ValueError):
    """A bad MCDropout configuration; the message starts with "MCDropout layer: "."""


def parse_params(param_str: str | None) -> dict:
    """{"dropout_ratio": float in (0, 1), "seed": int | None} from the layer's JSON."""
    try:
        raw = json.loads(param_str) if param_str and param_str.strip() else {}
    except json.JSONDecodeError as e:
        raise MCDropoutError(f"MCDropout layer: param_str is not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise MCDropoutError(f"MCDropout layer: param_str must be a JSON object, got {param_str!r}")
    unknown = sorted(set(raw) - set(PARAM_KEYS))
    if unknown:
        raise MCDropoutError(f"MCDropout layer: unknown key(s) {', '.join(unknown)} (known: {', '.join(PARAM_KEYS)})")
    ratio = raw.get("dropout_ratio", 0.5)  # Caffe's DropoutParameter default
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise MCDropoutError(f"MCDropout layer: dropout_ratio must be in (0, 1), got {ratio!r}")
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise MCDropoutError(f"MCDropout layer: seed must be an integer >= 0, got {seed!r}")
    return {"dropout_ratio": float(ratio), "seed": seed}


def scale_for(dropout_ratio: float) -> np.float32:
    """Caffe's ``scale_ = 1. / (1. - threshold_)``: threshold_ is the float32 ratio, the division is done in
    double and stored as float32."""
    return np.float32(1.0 / (1.0 - float(np.float32(dropout_ratio))))


def keep_mask(rng: np.random.Generator, shape: tuple[int, ...], dropout_ratio: float) -> np.ndarray:
    """Bernoulli(1 - dropout_ratio) mask (bool) of `shape`: element kept when its uniform draw in [0, 1) is at
    least the ratio. Draws are taken in C order, one double per element."""
    return rng.random(shape) >= float(np.float32(dropout_ratio))


def dropout_forward(x: np.ndarray, mask: np.ndarray, scale: np.float32) -> np.ndarray:
    """``x * mask * scale`` in float32, as Caffe's loop ``top[i] = bottom[i] * mask[i] * scale_``."""
    return np.where(mask, x * scale, np.float32(0)).astype(x.dtype, copy=False)


class MCDropout(_LayerBase):
    """Dropout that samples in every phase (see the module docstring)."""

    def setup(self, bottom, top):
        if len(bottom) != 1 or len(top) != 1:
            raise MCDropoutError(f"MCDropout layer: takes one bottom and one top, got {len(bottom)} and {len(top)}")
        p = parse_params(self.param_str)
        self.ratio = p["dropout_ratio"]
        self.scale = scale_for(p["dropout_ratio"])
        self.reseed(p["seed"])
        self.mask = None

    def reseed(self, seed) -> None:
        """A new generator: from `seed` (an int or a sequence of ints, NumPy SeedSequence entropy), or from the
        OS when None."""
        self.rng = np.random.default_rng(seed)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        x = bottom[0].data
        self.mask = keep_mask(self.rng, x.shape, self.ratio)
        top[0].data[...] = dropout_forward(x, self.mask, self.scale)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            if self.mask is None or self.mask.shape != top[0].diff.shape:
                raise MCDropoutError("MCDropout layer: backward before a forward of this shape")
            bottom[0].diff[...] = dropout_forward(top[0].diff, self.mask, self.scale)


def mc_layers(net) -> list[tuple[int, str, MCDropout]]:
    """(index, name, layer) of every MCDropout layer of a built caffe.Net, in net order."""
    names = list(net._layer_names)
    return [(i, names[i], layer) for i, layer in enumerate(net.layers) if isinstance(layer, MCDropout)]


def seed_net(net, seed: int) -> int:
    """Reseed every MCDropout layer of `net` from (seed, its layer index); returns how many there are."""
    layers = mc_layers(net)
    for index, _, layer in layers:
        layer.reseed([int(seed), index])
    return len(layers)


def dropout_layer_count(net_param) -> int:
    """Number of BVLC Dropout layers of a NetParameter (what sampling_net_param replaces)."""
    return sum(1 for layer in net_param.layer if layer.type == "Dropout")


def sampling_net_param(net_param, seed: int | None = None):
    """A copy of `net_param` whose Dropout layers are MCDropout layers (same name, bottoms, tops and ratio;
    include/exclude rules kept). With `seed`, each layer's param_str carries seed + its
    position among the replaced layers. Layers of other types are untouched."""
    from caffe.proto import caffe_pb2

    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    n = 0
    for layer in out.layer:
        if layer.type != "Dropout":
            continue
        dp = layer.dropout_param
        param = {"dropout_ratio": round(float(dp.dropout_ratio), 7)}
        if seed is not None:
            param["seed"] = int(seed) + n
        layer.type = "Python"
        layer.ClearField("dropout_param")
        layer.python_param.module = MODULE
        layer.python_param.layer = LAYER
        layer.python_param.param_str = json.dumps(param)
        n += 1
    return out
