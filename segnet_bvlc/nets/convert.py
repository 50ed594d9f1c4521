"""Convert the SegNet authors' released caffemodels (caffe-segnet) into BVLC Caffe weights for our nets.

The library of

    python -m tools.convert_weights --weights segnet_weights_driving_webdemo.caffemodel --arch segnet \\
        --out weights/webdemo.caffemodel

The released files (SegNet-Tutorial `Example_Models/segnet_model_zoo.md`) were written by caffe-segnet,
whose `caffe.proto` numbers some fields differently from BVLC (docs/caffe.md §6.1, §6.2). BVLC's
`caffe_pb2` still parses them; the fork's layer parameters come out as the wrong fields (`upsample_param`
reads as `embed_param`, `dense_image_data_param` as `tile_param`, ...), so only each layer's name, type
and blobs are read, and both the current `layer` field and the legacy V1 `layers` field are accepted.

Mapping, by layer name, onto the deploy net our generator builds for ARCH (docs/caffe.md §6.3;
segnet_bvlc.nets.conversion_plan):
- Convolution / Deconvolution: copied as they are.
- `X_bn` of type `BN` (blobs scale, shift, each 1xCx1x1): the released models have their dataset statistics
  already folded into these two blobs (as Alex Kendall told caffe-segnet's users), so the fork runs them as
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
BN layers show no sign of that pass (the rule: segnet_bvlc.nets.caffemodel's `_statistics_pass_sign`); the
conversion still goes ahead.

Anything that does not fit (a layer the net needs but the file lacks, a layer of the file with blobs the
net has no place for, a shape that differs) stops the conversion with the full list.

The file's size and sha256 are checked against the released files we know (segnet_bvlc.nets.caffemodel's
KNOWN_FILES); the tool says which file it is and refuses an unknown one unless `--force`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from segnet_bvlc.core.log import logger
from segnet_bvlc.dataset.camvid import HEIGHT, NUM_CLASSES, WIDTH
from segnet_bvlc.nets.caffemodel import Caffemodel, bn_statistics_check, check_known, read_caffemodel
from segnet_bvlc.nets.conversion_plan import CONV_TYPES, Plan, plan_conversion, target_layers
from segnet_bvlc.nets.load import load_net, net_from_param
from segnet_bvlc.nets.weights_file import WeightsError

log = logger("convert_weights").info


def _generator():
    from prototxt import ARCHS, Options, build_net

    return ARCHS, Options, build_net


def build_deploy(arch: str, classes: int, height: int, width: int, batchnorm: bool = True,
                 biases: str | None = None):
    """Our generator's deploy NetParameter for ARCH (`biases`: None = the architecture's default, "public" =
    SegNet-Tutorial's conv biases, "paper" = none where BatchNorm follows)."""
    archs, options, build_net = _generator()
    if arch not in archs:
        raise WeightsError(f"unknown --arch {arch!r} (choose from {', '.join(archs)})")
    try:
        # class_weights: a deploy net has no loss; "none" lets any class count through the generator's checks
        return build_net(arch, options(classes=classes, height=height, width=width, split="deploy",
                                       batchnorm=batchnorm, biases=biases, class_weights="none"))
    except ValueError as e:
        raise WeightsError(f"--arch {arch}: cannot build the net ({e})") from None


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
        raise WeightsError(f"{out}: --out names the caffemodel; its deploy prototxt goes next to it")
    check_out(out, prototxt)
    model = read_caffemodel(weights)
    notes = check_known(model, "segnet-release", force, arch)
    known = model.known
    classes = classes or (known.classes if known and known.arch == arch else None) or NUM_CLASSES
    height = height or (known.height if known and known.arch == arch else None) or HEIGHT
    width = width or (known.width if known and known.arch == arch else None) or WIDTH
    biases = _detect_biases(model)
    log(f"{model.path}: {model.identity()}; {len(model.layers)} layers"
        + (" (legacy V1 format)" if model.legacy_v1 else ""))

    # Folded into the convolutions, the BN shift needs a bias in every one of them.
    net_param = build_deploy(arch, classes, height, width, batchnorm=not fold_bn,
                             biases="public" if fold_bn else biases)
    eps = next((lay.batch_norm_param.eps for lay in net_param.layer if lay.type == "BatchNorm"), 1e-5)
    net = net_from_param(net_param)
    plan = plan_conversion(model.layers, target_layers(net), fold_bn, eps, classes)
    if not plan.fits():
        raise WeightsError(f"{model.path} does not fit --arch {arch} ({classes} classes, {height}x{width}"
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
    """WeightsError unless each path can be written: not a folder, and its nearest existing parent a writable
    folder (checked before the work, so a bad --out fails at once and creates nothing)."""
    for path in paths:
        if path.is_dir():
            raise WeightsError(f"{path}: is a folder (--out names the caffemodel to write)")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise WeightsError(f"{path}: cannot be written ({parent} is not a folder)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise WeightsError(f"{path}: cannot be written ({parent} is not writable)")


def _write_pair(net, net_param, plan: Plan, out: Path, prototxt: Path) -> None:
    """OUT and its prototxt, both or neither: each is written to a temporary file next to it and read back
    (the check a user's `caffe test` would do); only then is the prototxt renamed into place, the caffemodel
    last, and if that last rename fails the prototxt is taken back."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"{out.parent}: cannot create the output folder ({e.strerror})") from None
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
        check = load_net(tmp_proto, tmp_model)
        for name, blobs in plan.blobs.items():
            for dst, value in zip(check.params[name], blobs):
                if not np.array_equal(dst.data, value):
                    raise WeightsError(f"{out}: layer {name} did not read back identically")
        os.replace(tmp_proto, prototxt)
        try:
            os.replace(tmp_model, out)
        except OSError:
            prototxt.unlink(missing_ok=True)
            raise
    except OSError as e:
        raise WeightsError(f"{e.filename or out}: cannot write ({e.strerror})") from None
    finally:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
