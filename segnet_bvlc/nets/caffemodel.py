"""Reading Caffe weights files, whoever wrote them: caffe-segnet's released models, VGG16's 2014 file, BVLC's.

`read_caffemodel` gives each layer's name, type, tops and blobs (current `layer` and legacy V1 `layers`), the
file's size and sha256 and, where it is one of KNOWN_FILES, which released file it is; `check_known` refuses
unknown files unless forced; `bn_statistics_check` tells whether the fork's BN layers went through the BN
statistics pass. segnet_bvlc.nets.convert (released SegNet models) and segnet_bvlc.training.init_weights (VGG16
encoders) read their inputs through this module, which parses them with segnet_bvlc.nets.weights_file; what the
fork's fields mean is in docs/caffe.md §6.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segnet_bvlc.nets.weights_file import WeightsError, blob_shape, parse_caffemodel


@dataclass(frozen=True)
class KnownFile:
    key: str
    description: str
    filename: str
    size: int
    sha256: str
    kind: str  # "segnet-release" (convert it) or "vgg16" (ImageNet init, segnet_bvlc.training.init_weights)
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

V1_TYPES = {"CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "INNER_PRODUCT": "InnerProduct",
            "POOLING": "Pooling", "RELU": "ReLU", "DROPOUT": "Dropout", "SOFTMAX": "Softmax", "LRN": "LRN",
            "SOFTMAX_LOSS": "SoftmaxWithLoss", "DATA": "Data", "IMAGE_DATA": "ImageData",
            "ACCURACY": "Accuracy", "CONCAT": "Concat", "ELTWISE": "Eltwise", "SPLIT": "Split",
            "FLATTEN": "Flatten"}


# The one error of the weights files and their conversion, under the name the converter's callers import.
ConvertError = WeightsError


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


def identify(size: int, sha256: str) -> KnownFile | None:
    return next((k for k in KNOWN_FILES if k.size == size and k.sha256 == sha256), None)


def _blob_array(blob) -> np.ndarray:
    """A blob's values (float or double, already counted by parse_caffemodel) as a float32 array of its shape."""
    values = blob.data if len(blob.data) else blob.double_data
    return np.asarray(values, dtype=np.float32).reshape(blob_shape(blob)[0])


def read_caffemodel(path: Path | str) -> Caffemodel:
    """Size, sha256 and the (name, type, tops, blobs) of every layer of a caffemodel, fork-made or BVLC."""
    from caffe.proto import caffe_pb2  # caffe is heavy: only where a file is read

    message, weights = parse_caffemodel(path)
    path = weights.path

    def blobs(lay) -> list[np.ndarray]:
        return [_blob_array(b) for b in lay.blobs]

    layers = [SourceLayer(lay.name, lay.type, blobs(lay), tuple(lay.top),
                          _fork_bn_mode(lay) if lay.type == "BN" else None) for lay in message.layer]
    v1_enum = caffe_pb2.V1LayerParameter.LayerType
    for lay in message.layers:  # deprecated V1LayerParameter (enum types): VGG16's 2014 file
        type_name = v1_enum.Name(lay.type) if lay.type in v1_enum.values() else str(lay.type)
        layers.append(SourceLayer(lay.name, V1_TYPES.get(type_name, type_name), blobs(lay), tuple(lay.top)))
    names = [lay.name for lay in layers]
    duplicates = sorted({n for n in names if names.count(n) > 1 and n})
    if duplicates:
        raise WeightsError(f"{path}: layer names appear twice: {', '.join(duplicates)}")
    return Caffemodel(path, weights.size, weights.sha256, identify(weights.size, weights.sha256), layers,
                      legacy_v1=bool(len(message.layers)))


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
            raise WeightsError(f"{model.path}: {model.identity()} is not one of the released files this tool "
                               f"knows{hint}; check the download, or pass --force to use it anyway")
        notes.append(f"unknown file accepted with --force: {model.size:,} bytes, sha256 {model.sha256}{hint}")
        return notes
    if known.kind != kind:
        what = ("VGG16 ImageNet weights: they initialise an encoder for training (tools.train "
                "--init-weights)" if known.kind == "vgg16" else
                "a released SegNet model: convert it with tools.convert_weights")
        raise WeightsError(f"{model.path}: this is {known.description}, {what}")
    if arch is not None and known.arch is not None and known.arch != arch and not force:
        raise WeightsError(f"{model.path}: this is {known.description}, made for --arch {known.arch}, "
                           f"not {arch} (--force to try anyway)")
    notes.append(f"identified: {known.description} ({known.filename}, sha256 verified)")
    return notes
