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
BN layers show no sign of that pass (the rule: tools.caffemodel's `_statistics_pass_sign`); the conversion
still goes ahead.

Anything that does not fit (a layer the net needs but the file lacks, a layer of the file with blobs the
net has no place for, a shape that differs) stops the conversion with the full list.

The file's size and sha256 are checked against the released files we know (tools.caffemodel's
KNOWN_FILES); the tool says which file it is and refuses an unknown one unless `--force`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.log import console_logging, logger
from segnet_bvlc.nets import load as nets
from segnet_bvlc.nets.caffemodel import (
    KNOWN_FILES,
    Caffemodel,
    ConvertError,
    SourceLayer,
    bn_statistics_check,
    check_known,
    read_caffemodel,
)

TOOL = "convert_weights"
log = logger("convert_weights").info


# Layers of released files whose names differ from SegNet-Tutorial's train prototxts (which ours follow):
# the Example_Models deploy files of SegNet-Basic call the classifier `dense_softmax_inner_prod`.
ALIASES = {"dense_softmax_inner_prod": "conv_classifier"}

CONV_TYPES = ("Convolution", "Deconvolution")


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
