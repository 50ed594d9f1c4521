"""Convert the SegNet authors' released caffemodels (caffe-segnet) into BVLC Caffe weights for our nets.

    python -m tools.convert_weights --weights segnet_weights_driving_webdemo.caffemodel --arch segnet \\
        --out weights/webdemo.caffemodel

The released files (SegNet-Tutorial `Example_Models/segnet_model_zoo.md`) were written by caffe-segnet,
whose `caffe.proto` numbers some fields differently from BVLC (docs/caffe.md §6.1, §6.2). BVLC's
`caffe_pb2` still parses them; the fork's layer parameters come out as the wrong fields (`upsample_param`
reads as `embed_param`, `dense_image_data_param` as `tile_param`, ...), so only each layer's name, type
and blobs are read, and both the current `layer` field and the legacy V1 `layers` field are accepted.

Mapping, by layer name, onto the deploy net our generator builds for ARCH (docs/caffe.md §6.3):
- Convolution / Deconvolution: copied as they are.
- `X_bn` of type `BN` (blobs scale, shift, each 1xCx1x1): the released models have their dataset statistics
  already folded into these two blobs (Kendall, caffe-segnet issue #48), so the fork runs them as
  `y = scale*x + shift` (bn_mode INFERENCE). They go to our `X_scale` (Scale, bias_term) reshaped to (C,),
  and our `X_bn` (BatchNorm) is set to the identity: mean 0, variance 1-eps, scale factor 1, so
  (x-0)/sqrt(var+eps) is x exactly in float32. With `--fold-bn` they are folded into convolution X instead
  (W' = W*scale, b' = b*scale + shift, as SegNet-Tutorial's BN-absorber.py does) and the net has no BN;
  the scale goes along each layer's output-channel axis: axis 0 of a Convolution's weights, axis 1 of a
  Deconvolution's (BVLC stores those as input channels x output channels x kh x kw).
- Upsample, Pooling, ReLU, LRN, Dropout, data and loss layers have no blobs: nothing to copy.

The BN mapping ASSUMES the statistics pass was done: the fork's BN layer keeps no running statistics, so a
`caffe train` snapshot holds the learned gamma/beta, which the fork (bn_mode LEARN) uses with each batch's
own mean and variance; only SegNet-Tutorial's compute_bn_statistics.py folds the dataset statistics into the
two blobs. The report says so (`bn_statistics`), and warns (`warnings`, and one line on stderr) when the file's
BN layers show no sign of that pass (the rule: `_statistics_pass_sign`); the conversion still goes ahead.

Anything that does not fit (a layer the net needs but the file lacks, a layer of the file with blobs the
net has no place for, a shape that differs) stops the conversion with the full list.

The file's size and sha256 are checked against the released files we know (KNOWN_FILES); the tool says
which file it is and refuses an unknown one unless `--force`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tools import nets
from tools.runio import console_logging, fail, logger


TOOL = "tools.convert_weights"
log = logger("convert_weights").info


@dataclass(frozen=True)
class KnownFile:
    key: str
    description: str
    filename: str
    size: int
    sha256: str
    kind: str  # "segnet-release" (convert it) or "vgg16" (ImageNet init, tools.init_weights)
    arch: str | None = None
    classes: int | None = None
    height: int | None = None
    width: int | None = None
    where: str = ""


# Only files whose size and sha256 we have from a trustworthy record. The web demo's comes from the Git LFS
# pointer SegNet-Tutorial commits as `Example_Models/driving_web_demo/driving.caffemodel` (the same weights
# as the Model Zoo's `segnet_weights_driving_webdemo.caffemodel`); its `driving.prototxt` is SegNet with
# `bn_mode: INFERENCE`, 12 classes and a 1x3x360x480 input. The other Model Zoo files
# (segnet_basic_camvid, bayesian_segnet_camvid, bayesian_segnet_basic_camvid, segnet_sun, segnet_pascal,
# ...) have no published checksum: they need --force, and the tool prints theirs so a user can record it.
KNOWN_FILES: tuple[KnownFile, ...] = (
    KnownFile(
        key="segnet-driving-webdemo",
        description="SegNet driving web demo (12 classes, 360x480)",
        filename="segnet_weights_driving_webdemo.caffemodel",
        size=117_809_921,
        sha256="4200a03b99e1031ab1a261fdc5cb6b512d05b0fe59e7545878afa4cb870c008c",
        kind="segnet-release", arch="segnet", classes=12, height=360, width=480,
        where="SegNet Model Zoo; SegNet-Tutorial Git LFS Example_Models/driving_web_demo/driving.caffemodel",
    ),
    KnownFile(
        key="vgg16-ilsvrc",
        description="VGG16 ImageNet (Simonyan & Zisserman, ILSVRC 2014)",
        filename="VGG_ILSVRC_16_layers.caffemodel",
        size=553_432_081,
        sha256="a6196bc498e45ea4cb2637114ae8db9410cf1556fd60a55ae93272371beba197",
        kind="vgg16",
        where="Caffe Model Zoo (VGG team's gist); used by tools.train --init-weights",
    ),
)

# Layers of released files whose names differ from SegNet-Tutorial's train prototxts (which ours follow):
# the Example_Models deploy files of SegNet-Basic call the classifier `dense_softmax_inner_prod`.
ALIASES = {"dense_softmax_inner_prod": "conv_classifier"}

CONV_TYPES = ("Convolution", "Deconvolution")
V1_TYPES = {"CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "INNER_PRODUCT": "InnerProduct",
            "POOLING": "Pooling", "RELU": "ReLU", "DROPOUT": "Dropout", "SOFTMAX": "Softmax", "LRN": "LRN",
            "SOFTMAX_LOSS": "SoftmaxWithLoss", "DATA": "Data", "IMAGE_DATA": "ImageData",
            "ACCURACY": "Accuracy", "CONCAT": "Concat", "ELTWISE": "Eltwise", "SPLIT": "Split",
            "FLATTEN": "Flatten"}


class ConvertError(ValueError):
    """A file that cannot be converted; the message names the file and everything that does not fit."""


@dataclass
class SourceLayer:
    name: str
    type: str
    blobs: list[np.ndarray]
    tops: tuple[str, ...] = ()
    bn_mode: int | None = None  # a fork BN layer's bn_param.bn_mode where the file sets it, else None


@dataclass
class Caffemodel:
    path: Path
    size: int
    sha256: str
    known: KnownFile | None
    layers: list[SourceLayer]
    legacy_v1: bool = False

    def identity(self) -> str:
        if self.known:
            return f"{self.known.description} ({self.known.filename})"
        return f"an unknown file ({self.size:,} bytes, sha256 {self.sha256})"


# --- reading ----------------------------------------------------------------------------------------
def identify(size: int, sha256: str) -> KnownFile | None:
    return next((k for k in KNOWN_FILES if k.size == size and k.sha256 == sha256), None)


def _blob_array(blob, where: str) -> np.ndarray:
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # pre-2015 files (VGG16): num/channels/height/width
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = blob.data if len(blob.data) else blob.double_data
    data = np.asarray(values, dtype=np.float32)
    if data.size != int(np.prod(shape)):
        raise ConvertError(f"{where}: {data.size} values for shape {shape} (truncated or corrupt?)")
    return data.reshape(shape)


def read_caffemodel(path: Path | str) -> Caffemodel:
    """Size, sha256 and the (name, type, blobs) of every layer of a caffemodel, fork-made or BVLC."""
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConvertError(f"{path}: cannot read ({e.strerror})") from None
    size, sha256 = len(data), hashlib.sha256(data).hexdigest()
    if data.startswith(b"version https://git-lfs"):
        raise ConvertError(f"{path}: a Git LFS pointer ({size} bytes), not the weights: fetch the file "
                           "itself (git lfs pull)")
    if data.lstrip()[:1] == b"<":
        raise ConvertError(f"{path}: an HTML/XML page, not a caffemodel (a failed download?)")
    message = caffe_pb2.NetParameter()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise ConvertError(f"{path}: not a caffemodel (truncated or corrupt?)") from None
    del data
    def blobs(lay) -> list[np.ndarray]:
        return [_blob_array(b, f"{path}: layer {lay.name} blob {i}") for i, b in enumerate(lay.blobs)]

    layers = [SourceLayer(lay.name, lay.type, blobs(lay), tuple(lay.top),
                          _fork_bn_mode(lay) if lay.type == "BN" else None) for lay in message.layer]
    v1_enum = caffe_pb2.V1LayerParameter.LayerType
    for lay in message.layers:  # deprecated V1LayerParameter (enum types): VGG16's 2014 file
        type_name = v1_enum.Name(lay.type) if lay.type in v1_enum.values() else str(lay.type)
        layers.append(SourceLayer(lay.name, V1_TYPES.get(type_name, type_name), blobs(lay), tuple(lay.top)))
    if not any(lay.blobs for lay in layers):
        raise ConvertError(f"{path}: not a caffemodel (no layer with weights; truncated or corrupt?)")
    names = [lay.name for lay in layers]
    duplicates = sorted({n for n in names if names.count(n) > 1 and n})
    if duplicates:
        raise ConvertError(f"{path}: layer names appear twice: {', '.join(duplicates)}")
    return Caffemodel(path, size, sha256, identify(size, sha256), layers, legacy_v1=bool(len(message.layers)))


@functools.cache
def _fork_bn_layer_class():
    """A message class that reads the two caffe-segnet fields the BN check needs and BVLC's caffe_pb2 keeps only
    as unknown fields: `LayerParameter.bn_param` = 45 and, inside it, `BNParameter.bn_mode` = 3 (enum BNMode:
    LEARN 0, INFERENCE 1), the numbers of the fork's caffe.proto (docs/caffe.md §6.1; tests/fork/schema.py checks
    them against the fork's lines). Declared here, under a package of its own in a private descriptor pool, so
    that nothing touches BVLC's `caffe.*` messages in protobuf's default pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="segnet_fork_bn_fields.proto", package="segnet_fork_bn",
                                              syntax="proto2")
    file.message_type.add(name="BNParameter").field.add(name="bn_mode", number=3, type=F.TYPE_INT32,
                                                        label=F.LABEL_OPTIONAL)
    file.message_type.add(name="LayerParameter").field.add(
        name="bn_param", number=45, type=F.TYPE_MESSAGE, type_name=".segnet_fork_bn.BNParameter",
        label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("segnet_fork_bn.LayerParameter"))


def _fork_bn_mode(layer) -> int | None:
    """bn_param.bn_mode of a fork BN layer parsed by BVLC's caffe_pb2 (re-serialised: unknown fields survive)."""
    fork = _fork_bn_layer_class().FromString(layer.SerializeToString())
    return fork.bn_param.bn_mode if fork.bn_param.HasField("bn_mode") else None


BN_INFERENCE = 1  # caffe-segnet's BNParameter.BNMode INFERENCE
BN_ASSUMPTION = ("caffe-segnet BN layers are converted as y = scale*x + shift: their two blobs are taken to hold "
                 "the dataset statistics already folded in (SegNet-Tutorial's compute_bn_statistics.py, as in "
                 "the released models), which a raw training snapshot's gamma/beta do not")


def _statistics_pass_sign(layer: SourceLayer) -> str | None:
    """What in a fork BN layer shows that the BN statistics pass made it, or None.

    The rule, from caffe-segnet's src/caffe/layers/bn_layer.cpp and SegNet-Tutorial's
    Scripts/compute_bn_statistics.py (docs/caffe.md §2.1, §2.2). Blobs tell nothing: the layer has exactly
    two, scale and shift, each 1xCx1x1, before and after the pass (it keeps no running statistics), and
    their values are arbitrary either way. A caffemodel does, though, keep each layer's own LayerParameter
    (Net::ToProto), and:
    - "bn_mode INFERENCE": the layer was saved from a net that runs the fork's BN as the folded affine
      (y = scale*x + shift), i.e. from an inference prototxt, which only makes sense after the pass;
    - "mean/var tops": tops `X`, `X-mean`, `X-var`. compute_bn_statistics.py adds these two tops to every BN
      layer of the train net, runs it (LEARN mode) to collect the batch statistics, folds them into the blobs
      and saves *that* net as test_weights.caffemodel; it sets INFERENCE only in the prototxt message it
      builds afterwards, which it does not save. So its output has these tops and no bn_mode.
    A `caffe train` snapshot of SegNet-Tutorial's train prototxts has neither: one top and bn_mode unset
    (LEARN, the default) or LEARN written out."""
    if layer.bn_mode == BN_INFERENCE:
        return "bn_mode INFERENCE"
    top = layer.tops[0] if layer.tops else None
    if top is not None and layer.tops == (top, f"{top}-mean", f"{top}-var"):
        return "mean/var tops"
    return None


def bn_statistics_check(layers: list[SourceLayer]) -> tuple[dict, str | None]:
    """The report's `bn_statistics` entry and a one-line warning (None when every BN layer shows a sign of the
    statistics pass, or the file has no BN layer)."""
    bn = [lay for lay in layers if lay.type == "BN"]
    signs = {lay.name: _statistics_pass_sign(lay) for lay in bn}
    unmarked = [name for name, sign in signs.items() if sign is None]
    entry = {"assumption": BN_ASSUMPTION, "bn_layers": len(bn),
             "signs": {sign: sum(1 for s in signs.values() if s == sign)
                       for sign in ("bn_mode INFERENCE", "mean/var tops")},
             "without_sign": unmarked}
    if not unmarked:
        return entry, None
    shown = ", ".join(unmarked[:3]) + (", ..." if len(unmarked) > 3 else "")
    warning = (f"warning: {len(unmarked)} of {len(bn)} BN layers ({shown}) show no sign of caffe-segnet's BN "
               "statistics pass (neither bn_mode INFERENCE nor the -mean/-var tops compute_bn_statistics.py "
               "leaves): if this is a training snapshot, its BN blobs are unfolded gamma/beta and the converted "
               "net is wrong; run SegNet-Tutorial's compute_bn_statistics.py on it first")
    return entry, warning


def check_known(model: Caffemodel, kind: str, force: bool, arch: str | None = None) -> list[str]:
    """Refuse files we do not recognise (unless force) or that are known to be something else; notes."""
    notes = []
    known = model.known
    if known is None:
        close = [k for k in KNOWN_FILES if k.size == model.size]
        hint = (f"; its size is that of {close[0].filename} but the sha256 differs (a corrupt download?)"
                if close else "")
        if not force:
            raise ConvertError(f"{model.path}: {model.identity()} is not one of the released files this tool "
                               f"knows{hint}; check the download, or pass --force to use it anyway")
        notes.append(f"unknown file accepted with --force: {model.size:,} bytes, sha256 {model.sha256}{hint}")
        return notes
    if known.kind != kind:
        what = ("VGG16 ImageNet weights: they initialise an encoder for training (tools.train "
                "--init-weights)" if known.kind == "vgg16" else
                "a released SegNet model: convert it with tools.convert_weights")
        raise ConvertError(f"{model.path}: this is {known.description}, {what}")
    if arch is not None and known.arch is not None and known.arch != arch and not force:
        raise ConvertError(f"{model.path}: this is {known.description}, made for --arch {known.arch}, "
                           f"not {arch} (--force to try anyway)")
    notes.append(f"identified: {known.description} ({known.filename}, sha256 verified)")
    return notes


# --- the target net ---------------------------------------------------------------------------------
@dataclass
class TargetLayer:
    name: str
    type: str
    shapes: list[tuple[int, ...]]


def _generator():
    from prototxt import ARCHS, Options, build_net

    return ARCHS, Options, build_net


def build_deploy(arch: str, classes: int, height: int, width: int, batchnorm: bool = True,
                 biases: str | None = None):
    """Our generator's deploy NetParameter for ARCH (`biases`: None = the architecture's default, "public" =
    SegNet-Tutorial's conv biases, "paper" = none where BatchNorm follows)."""
    archs, options, build_net = _generator()
    if arch not in archs:
        raise ConvertError(f"unknown --arch {arch!r} (choose from {', '.join(archs)})")
    try:
        # class_weights: a deploy net has no loss; "none" lets any class count through the generator's checks
        return build_net(arch, options(classes=classes, height=height, width=width, split="deploy",
                                       batchnorm=batchnorm, biases=biases, class_weights="none"))
    except ValueError as e:
        raise ConvertError(f"--arch {arch}: cannot build the net ({e})") from None


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


# --- mapping ----------------------------------------------------------------------------------------
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


def plan_conversion(source: list[SourceLayer], target: list[TargetLayer], fold_bn: bool,
                    bn_eps: float = 1e-5, classes: int | None = None) -> Plan:
    """Which blobs go where; every misfit is collected rather than stopping at the first."""
    plan = Plan()
    src = {}
    target_names = {t.name for t in target}
    for lay in source:
        name = ALIASES.get(lay.name, lay.name) if lay.name not in target_names else lay.name
        src[name] = lay
    used: set[str] = set()
    by_name = {t.name: t for t in target}

    def bn_of(conv: str) -> SourceLayer | None:
        lay = src.get(conv + "_bn")
        return lay if lay is not None and lay.type == "BN" else None

    def check_bn(lay: SourceLayer, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        if len(lay.blobs) != 2:
            plan.problems.append(f"{lay.name}: BN with {len(lay.blobs)} blobs, expected 2 (scale, shift)")
            return None
        if any(b.size != channels for b in lay.blobs):
            plan.problems.append(f"{lay.name}: BN blobs {', '.join(_shape(b.shape) for b in lay.blobs)}, "
                                 f"expected 1x{channels}x1x1")
            return None
        return lay.blobs[0].reshape(channels), lay.blobs[1].reshape(channels)

    for t in target:
        if t.type in CONV_TYPES or t.type == "InnerProduct":
            lay = src.get(t.name)
            if lay is None:
                plan.missing.append(t.name)
                continue
            used.add(lay.name)
            if lay.type != t.type:
                plan.problems.append(f"{t.name}: {lay.type} in the file, {t.type} in the net")
                continue
            weights = list(lay.blobs)
            bn = bn_of(t.name) if fold_bn else None
            if bn is not None:
                used.add(bn.name)
                # The output channel is axis 0 of Convolution (out, in, kh, kw) and InnerProduct (out, in)
                # weights but axis 1 of Deconvolution's (in, out, kh, kw). (A grouped Deconvolution, whose
                # axis 1 is out/group, is refused by the size check.)
                out_axis = 1 if t.type == "Deconvolution" else 0
                affine = check_bn(bn, weights[0].shape[out_axis])
                if affine is None:
                    continue
                scale, shift = affine
                bias = weights[1].reshape(-1) if len(weights) > 1 else np.zeros_like(shift)
                per_output = scale.reshape([-1 if axis == out_axis else 1 for axis in range(weights[0].ndim)])
                weights = [weights[0] * per_output, bias * scale + shift]
            if len(weights) != len(t.shapes):
                has = "a bias" if len(weights) > len(t.shapes) else "no bias"
                plan.problems.append(f"{t.name}: {has} in the file ({len(weights)} blobs), the net has "
                                     f"{len(t.shapes)} (the generator's conv biases must match the file)")
                continue
            bad = [(i, w.shape, s) for i, (w, s) in enumerate(zip(weights, t.shapes))
                   if w.size != int(np.prod(s)) or (w.ndim == len(s) and w.shape != s)]
            if bad:
                hint = ""
                if classes is not None and t.shapes[0][0] == classes and weights[0].shape[0] != classes:
                    hint = f" (a {weights[0].shape[0]}-class model: try --classes {weights[0].shape[0]})"
                pairs = ", ".join(f"{_shape(w)} in the file vs {_shape(s)} in the net" for _, w, s in bad)
                plan.problems.append(f"{t.name}: shape {pairs}{hint}")
                continue
            plan.blobs[t.name] = [np.asarray(w, np.float32).reshape(s) for w, s in zip(weights, t.shapes)]
            plan.copied.append(lay.name)
        elif t.type == "Scale" and t.name.endswith("_scale"):
            conv = t.name[: -len("_scale")]
            lay = bn_of(conv)
            if lay is None:
                plan.missing.append(f"{conv}_bn (BN)")
                continue
            used.add(lay.name)
            affine = check_bn(lay, t.shapes[0][0])
            if affine is None:
                continue
            if len(t.shapes) != 2:
                plan.problems.append(f"{t.name}: Scale without bias_term cannot hold a BN shift")
                continue
            plan.blobs[t.name] = [affine[0].copy(), affine[1].copy()]
            plan.copied.append(lay.name)
        elif t.type == "BatchNorm":
            # Filled as the identity; its Scale partner carries the fork's affine BN.
            if not (t.name.endswith("_bn") and (t.name[:-3] + "_scale") in by_name):
                plan.problems.append(f"{t.name}: BatchNorm without a Scale {t.name[:-3]}_scale in the net")
                continue
            plan.blobs[t.name] = batchnorm_identity(t.shapes[0][0], bn_eps)
        else:
            plan.problems.append(f"{t.name}: no rule to fill a {t.type} layer from a caffe-segnet file")
    for lay in source:
        if lay.blobs and lay.name not in used:
            plan.extra.append(lay.name)
    return plan


# --- conversion -------------------------------------------------------------------------------------
def _arch_hint(model: Caffemodel, arch: str) -> str:
    """A guess from SegNet-Tutorial's layer names, for the common mistake of a wrong --arch."""
    names = {lay.name for lay in model.layers}
    guess = ("segnet" if {"conv1_1", "conv5_3_D"} <= names else
             "segnet-basic" if {"conv1", "conv_decode1"} <= names else None)
    return f" (its layer names are those of --arch {guess})" if guess and guess != arch else ""


def _detect_biases(model: Caffemodel) -> str | None:
    """The generator's `biases` option that matches the file: "public" if every convolution followed by a
    BN has a bias blob (SegNet-Tutorial's prototxts, so every released model, although the paper's
    SegNet-Basic has none: docs/paper.md §9.6), "paper" if none has one, None (the arch default) if
    mixed."""
    names = {lay.name for lay in model.layers}
    counts = {len(lay.blobs) for lay in model.layers if lay.type in CONV_TYPES and lay.name + "_bn" in names}
    return {frozenset({2}): "public", frozenset({1}): "paper"}.get(frozenset(counts))


def convert(weights: Path | str, arch: str, out: Path | str, classes: int | None = None,
            height: int | None = None, width: int | None = None, force: bool = False, fold_bn: bool = False
            ) -> dict:
    """Convert `weights` for ARCH; write OUT (caffemodel) and OUT's .prototxt (deploy). Returns a report."""
    out = Path(out)
    prototxt = out.with_suffix(".prototxt")
    if prototxt == out:
        raise ConvertError(f"{out}: --out names the caffemodel; its deploy prototxt goes next to it")
    check_out(out, prototxt)
    model = read_caffemodel(weights)
    notes = check_known(model, "segnet-release", force, arch)
    known = model.known
    classes = classes or (known.classes if known and known.arch == arch else None) or 11
    height = height or (known.height if known and known.arch == arch else None) or 360
    width = width or (known.width if known and known.arch == arch else None) or 480
    biases = _detect_biases(model)
    log(f"{model.path}: {model.identity()}; {len(model.layers)} layers"
        + (" (legacy V1 format)" if model.legacy_v1 else ""))

    # Folded into the convolutions, the BN shift needs a bias in every one of them.
    net_param = build_deploy(arch, classes, height, width, batchnorm=not fold_bn,
                             biases="public" if fold_bn else biases)
    eps = next((lay.batch_norm_param.eps for lay in net_param.layer if lay.type == "BatchNorm"), 1e-5)
    net = nets.net_from_param(net_param)
    plan = plan_conversion(model.layers, target_layers(net), fold_bn, eps, classes)
    if not plan.fits():
        raise ConvertError(f"{model.path} does not fit --arch {arch} ({classes} classes, {height}x{width}"
                           f"{', BN folded' if fold_bn else ''}){_arch_hint(model, arch)}: {plan.describe()}")
    bn_statistics, warning = bn_statistics_check(model.layers)
    if warning:
        log(warning)
    for name, blobs in plan.blobs.items():
        for dst, value in zip(net.params[name], blobs):
            dst.data[...] = value
    _write_pair(net, net_param, plan, out, prototxt)
    n_params = int(sum(b.size for blobs in plan.blobs.values() for b in blobs))
    report = {
        "weights": str(model.path), "size": model.size, "sha256": model.sha256,
        "identified": known.key if known else None, "description": known.description if known else None,
        "arch": arch, "classes": classes, "height": height, "width": width,
        "conv_biases": biases, "fold_bn": fold_bn, "legacy_v1": model.legacy_v1,
        "layers_filled": len(plan.blobs), "source_layers_used": len(plan.copied), "values": n_params,
        "out": str(out), "prototxt": str(prototxt), "notes": notes,
        "bn_statistics": bn_statistics, "warnings": [warning] if warning else [],
    }
    log(f"wrote {out} and {prototxt}: {len(plan.copied)} source layers onto {len(plan.blobs)} layers "
        f"({n_params:,} values), {arch}, {classes} classes, input 1x3x{height}x{width}")
    return report


def _readable(*paths: Path) -> None:
    """Temporary files are created 0600; the outputs get the permissions of any file the user writes."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        os.chmod(path, 0o666 & ~umask)


def check_out(*paths: Path) -> None:
    """ConvertError unless each path can be written: not a folder, and its nearest existing parent a writable
    folder (checked before the work, so a bad --out fails at once and creates nothing)."""
    for path in paths:
        if path.is_dir():
            raise ConvertError(f"{path}: is a folder (--out names the caffemodel to write)")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise ConvertError(f"{path}: cannot be written ({parent} is not a folder)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConvertError(f"{path}: cannot be written ({parent} is not writable)")


def _write_pair(net, net_param, plan: Plan, out: Path, prototxt: Path) -> None:
    """OUT and its prototxt, both or neither: each is written to a temporary file next to it and read back
    (the check a user's `caffe test` would do); only then is the prototxt renamed into place, the caffemodel
    last, and if that last rename fails the prototxt is taken back."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConvertError(f"{out.parent}: cannot create the output folder ({e.strerror})") from None
    temporaries = []
    try:
        for path in (out, prototxt):
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
            os.close(fd)
            temporaries.append(Path(name))
        tmp_model, tmp_proto = temporaries
        net.save(str(tmp_model))
        tmp_proto.write_text(str(net_param))
        _readable(tmp_model, tmp_proto)
        check = nets.load_net(tmp_proto, tmp_model)
        for name, blobs in plan.blobs.items():
            for dst, value in zip(check.params[name], blobs):
                if not np.array_equal(dst.data, value):
                    raise ConvertError(f"{out}: layer {name} did not read back identically")
        os.replace(tmp_proto, prototxt)
        try:
            os.replace(tmp_model, out)
        except OSError:
            prototxt.unlink(missing_ok=True)
            raise
    except OSError as e:
        raise ConvertError(f"{e.filename or out}: cannot write ({e.strerror})") from None
    finally:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.convert_weights",
        description="Convert a released caffe-segnet caffemodel (SegNet Model Zoo) into BVLC Caffe weights "
                    "for our generated deploy net, plus that deploy prototxt (OUT with .prototxt).",
        epilog="Known files: " + "; ".join(f"{k.filename} ({k.size:,} bytes, {k.description})"
                                           for k in KNOWN_FILES))
    p.add_argument("--weights", required=True,
                   help="the caffe-segnet caffemodel (user-supplied; never downloaded)")
    p.add_argument("--arch", required=True, help="architecture of the file, e.g. segnet or segnet-basic")
    p.add_argument("--out", required=True,
                   help="output caffemodel; the deploy prototxt is written next to it")
    p.add_argument("--classes", type=int, help="classes of the file (default: known file's, else 11)")
    p.add_argument("--height", type=int, help="deploy input height (default: known file's, else 360)")
    p.add_argument("--width", type=int, help="deploy input width (default: known file's, else 480)")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold the BN affine into the convolutions (a net without BatchNorm/Scale layers)")
    p.add_argument("--force", action="store_true",
                   help="accept a file whose size/sha256 is not a known release")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    args = p.parse_args(argv)
    for name in ("classes", "height", "width"):
        value = getattr(args, name)
        if value is not None and value < 1:
            fail(TOOL, f"--{name} must be positive, got {value}")
    console_logging()
    try:
        report = convert(args.weights, args.arch, args.out, args.classes, args.height, args.width,
                         args.force, args.fold_bn)
    except (ConvertError, nets.WeightsError) as e:
        fail(TOOL, str(e))
    except OSError as e:
        fail(TOOL, f"{e.filename or args.out}: {e.strerror or e}")
    for note in report["notes"]:
        log(note)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
