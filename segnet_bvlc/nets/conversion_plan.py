"""Which blobs of a caffe-segnet caffemodel go where in our deploy net (the mapping of docs/caffe.md §6.3).

By layer name: Convolution / Deconvolution / InnerProduct are copied as they are (or, with fold_bn, with the
fork's BN affine folded in along each layer's output-channel axis); a fork `X_bn` (BN: scale, shift, 1xCx1x1)
goes to our `X_scale` (Scale with bias) and our `X_bn` (BatchNorm) is set to the identity. Every misfit is
collected, so that a refusal lists all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segnet_bvlc.nets.caffemodel import SourceLayer

# Layers of released files whose names differ from SegNet-Tutorial's train prototxts (which ours follow):
# the Example_Models deploy files of SegNet-Basic call the classifier `dense_softmax_inner_prod`.
ALIASES = {"dense_softmax_inner_prod": "conv_classifier"}

CONV_TYPES = ("Convolution", "Deconvolution")


@dataclass
class TargetLayer:
    name: str
    type: str
    shapes: list[tuple[int, ...]]


def target_layers(net) -> list[TargetLayer]:
    types = dict(zip(net._layer_names, (lay.type for lay in net.layers)))
    return [TargetLayer(name, types[name], [tuple(b.data.shape) for b in blobs])
            for name, blobs in net.params.items()]


def batchnorm_identity(channels: int, eps: float) -> list[np.ndarray]:
    """BVLC BatchNorm blobs (mean sum, variance sum, scale factor) for which the layer is x -> x exactly.

    With use_global_stats BVLC computes (x - m/s) / sqrt(v/s + eps) in float32; with m = 0, s = 1 and
    v + eps == 1 in float32 this is x / sqrt(1) = x bit for bit."""
    eps32 = np.float32(eps)
    var = np.float32(1) - eps32
    while np.float32(var + eps32) != np.float32(1):  # nudge onto the float whose sum with eps rounds to 1
        var = np.nextafter(var, np.float32(2) if var + eps32 < 1 else np.float32(0), dtype=np.float32)
    return [np.zeros(channels, np.float32), np.full(channels, var, np.float32), np.ones(1, np.float32)]


@dataclass
class Plan:
    blobs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    copied: list[str] = field(default_factory=list)  # source layers used
    missing: list[str] = field(default_factory=list)  # net layers the file has nothing for
    extra: list[str] = field(default_factory=list)  # file layers with weights the net has no place for
    problems: list[str] = field(default_factory=list)  # shape and type mismatches, one sentence each

    def fits(self) -> bool:
        return not (self.missing or self.extra or self.problems)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing in the file ({len(self.missing)}): {', '.join(self.missing)}")
        if self.extra:
            parts.append(f"in the file but not in the net ({len(self.extra)}): {', '.join(self.extra)}")
        return "; ".join(parts + self.problems)


def _shape(a) -> str:
    return "x".join(map(str, a)) if a else "scalar"


class _Mapping:
    """The state of one plan_conversion: the file's layers by (aliased) name and those used so far."""

    def __init__(self, source: list[SourceLayer], target: list[TargetLayer], fold_bn: bool, bn_eps: float,
                 classes: int | None):
        target_names = {t.name for t in target}
        self.src = {(lay.name if lay.name in target_names else ALIASES.get(lay.name, lay.name)): lay
                    for lay in source}
        self.target_names = target_names
        self.fold_bn, self.bn_eps, self.classes = fold_bn, bn_eps, classes
        self.used: set[str] = set()
        self.plan = Plan()

    def bn_of(self, conv: str) -> SourceLayer | None:
        lay = self.src.get(conv + "_bn")
        return lay if lay is not None and lay.type == "BN" else None

    def bn_affine(self, lay: SourceLayer, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(scale, shift) of a fork BN layer as (C,) arrays, or None with the problem noted."""
        if len(lay.blobs) != 2:
            self.plan.problems.append(f"{lay.name}: BN with {len(lay.blobs)} blobs, expected 2 (scale, shift)")
            return None
        if any(b.size != channels for b in lay.blobs):
            self.plan.problems.append(f"{lay.name}: BN blobs {', '.join(_shape(b.shape) for b in lay.blobs)}, "
                                      f"expected 1x{channels}x1x1")
            return None
        return lay.blobs[0].reshape(channels), lay.blobs[1].reshape(channels)

    def fold(self, t: TargetLayer, weights: list[np.ndarray]) -> list[np.ndarray] | None:
        """`weights` with the BN after layer t folded in (W' = W*scale, b' = b*scale + shift), or None."""
        bn = self.bn_of(t.name)
        if bn is None:
            return weights
        self.used.add(bn.name)
        # The output channel is axis 0 of Convolution (out, in, kh, kw) and InnerProduct (out, in) weights but
        # axis 1 of Deconvolution's (in, out, kh, kw). (A grouped Deconvolution, whose axis 1 is out/group, is
        # refused by the size check.)
        out_axis = 1 if t.type == "Deconvolution" else 0
        affine = self.bn_affine(bn, weights[0].shape[out_axis])
        if affine is None:
            return None
        scale, shift = affine
        bias = weights[1].reshape(-1) if len(weights) > 1 else np.zeros_like(shift)
        per_output = scale.reshape([-1 if axis == out_axis else 1 for axis in range(weights[0].ndim)])
        return [weights[0] * per_output, bias * scale + shift]

    def conv(self, t: TargetLayer) -> None:
        plan = self.plan
        lay = self.src.get(t.name)
        if lay is None:
            plan.missing.append(t.name)
            return
        self.used.add(lay.name)
        if lay.type != t.type:
            plan.problems.append(f"{t.name}: {lay.type} in the file, {t.type} in the net")
            return
        weights = self.fold(t, list(lay.blobs)) if self.fold_bn else list(lay.blobs)
        if weights is None:
            return
        if len(weights) != len(t.shapes):
            has = "a bias" if len(weights) > len(t.shapes) else "no bias"
            plan.problems.append(f"{t.name}: {has} in the file ({len(weights)} blobs), the net has "
                                 f"{len(t.shapes)} (the generator's conv biases must match the file)")
            return
        bad = [(i, w.shape, s) for i, (w, s) in enumerate(zip(weights, t.shapes))
               if w.size != int(np.prod(s)) or (w.ndim == len(s) and w.shape != s)]
        if bad:
            hint = ""
            if self.classes is not None and t.shapes[0][0] == self.classes and weights[0].shape[0] != self.classes:
                hint = f" (a {weights[0].shape[0]}-class model: try --classes {weights[0].shape[0]})"
            pairs = ", ".join(f"{_shape(w)} in the file vs {_shape(s)} in the net" for _, w, s in bad)
            plan.problems.append(f"{t.name}: shape {pairs}{hint}")
            return
        plan.blobs[t.name] = [np.asarray(w, np.float32).reshape(s) for w, s in zip(weights, t.shapes)]
        plan.copied.append(lay.name)

    def scale(self, t: TargetLayer) -> None:
        conv = t.name[: -len("_scale")]
        lay = self.bn_of(conv)
        if lay is None:
            self.plan.missing.append(f"{conv}_bn (BN)")
            return
        self.used.add(lay.name)
        affine = self.bn_affine(lay, t.shapes[0][0])
        if affine is None:
            return
        if len(t.shapes) != 2:
            self.plan.problems.append(f"{t.name}: Scale without bias_term cannot hold a BN shift")
            return
        self.plan.blobs[t.name] = [affine[0].copy(), affine[1].copy()]
        self.plan.copied.append(lay.name)

    def batchnorm(self, t: TargetLayer) -> None:
        # Filled as the identity; its Scale partner carries the fork's affine BN.
        if not (t.name.endswith("_bn") and (t.name[:-3] + "_scale") in self.target_names):
            self.plan.problems.append(f"{t.name}: BatchNorm without a Scale {t.name[:-3]}_scale in the net")
            return
        self.plan.blobs[t.name] = batchnorm_identity(t.shapes[0][0], self.bn_eps)


def plan_conversion(source: list[SourceLayer], target: list[TargetLayer], fold_bn: bool,
                    bn_eps: float = 1e-5, classes: int | None = None) -> Plan:
    """Which blobs go where; every misfit is collected rather than stopping at the first."""
    mapping = _Mapping(source, target, fold_bn, bn_eps, classes)
    for t in target:
        if t.type in CONV_TYPES or t.type == "InnerProduct":
            mapping.conv(t)
        elif t.type == "Scale" and t.name.endswith("_scale"):
            mapping.scale(t)
        elif t.type == "BatchNorm":
            mapping.batchnorm(t)
        else:
            mapping.plan.problems.append(f"{t.name}: no rule to fill a {t.type} layer from a caffe-segnet file")
    for lay in source:
        if lay.blobs and lay.name not in mapping.used:
            mapping.plan.extra.append(lay.name)
    return mapping.plan
