"""Initialise an encoder from VGG16's ImageNet weights (`VGG_ILSVRC_16_layers.caffemodel`), by layer name.

SegNet (paper §3.2/§4; SegNet-Tutorial `segnet_train.prototxt`), FCN, DeconvNet and DeepLab-LargeFOV all
start from VGG16: conv1_1 … conv5_3 are copied by name, as Caffe's `--weights` does. Where an architecture keeps
VGG16's fully connected layers as convolutions, fc6/fc7 are reshaped the way FCN's net surgery does
(shelhamer/fcn.berkeleyvision.org `surgery.transplant`): fc6 4096x25088 → 4096x512x7x7 (Caffe flattens pool5
as channel, row, column, so this is a plain reshape) and fc7 4096x4096 → 4096x4096x1x1.

Not copied, each with a note:
- fc6/fc7 of another shape: DeconvNet with SegNet's 1024-wide fc layers, and DeepLab-LargeFOV's 3x3 dilated
  1024-wide fc6 / 1x1 1024 fc7. DeepLab made those by subsampling VGG16's fc6 (4096x7x7 → 1024x3x3: every
  4th filter, spatial decimation); that subsampled fc6 is out of scope here, so they keep their filler.
- fc8 (the 1000-class ImageNet classifier) and every layer the net does not have.
- conv biases when the net's convolution has none (SegNet-Basic style nets without biases).

The file is the user's (the Model Zoo link is a gist to the VGG team's site); its size and sha256 are checked
against the known release and anything else needs `force`.

    python -m tools.init_weights --vgg VGG_ILSVRC_16_layers.caffemodel --arch segnet --out init.caffemodel
writes a caffemodel of the ARCH deploy net's layers with VGG16 copied in (usable as `caffe train --weights`):
`write_initialised`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segnet_bvlc.core.files import atomic_path
from segnet_bvlc.dataset.camvid import HEIGHT, NUM_CLASSES, WIDTH
from segnet_bvlc.nets.caffemodel import Caffemodel, check_known, read_caffemodel
from segnet_bvlc.nets.convert import build_deploy
from segnet_bvlc.nets.load import net_from_param
from segnet_bvlc.nets.weights_file import WeightsError

VGG16_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3")
VGG16_FC = {"fc6": (4096, 512, 7, 7), "fc7": (4096, 4096, 1, 1)}


class InitWeightsError(WeightsError):
    """The VGG16 file cannot be used; the message names the file and the reason."""


@dataclass
class InitReport:
    file: str
    identified: bool
    copied: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "layer: reason"
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"copied {len(self.copied)} layers ({', '.join(self.copied)})" if self.copied
                 else "copied nothing"]
        if self.reshaped:
            parts.append(f"reshaped into convolutions: {', '.join(self.reshaped)}")
        if self.skipped:
            parts.append("skipped: " + "; ".join(self.skipped))
        return "; ".join(parts + self.notes)

    def as_dict(self) -> dict:
        return asdict(self)


def init_from_vgg16(net, path: Path | str | Caffemodel, arch: str | None = None, force: bool = False
                    ) -> InitReport:
    """Copy VGG16's conv1_1..conv5_3 (and fc6/fc7 where the net has VGG-shaped ones) into `net` (a caffe.Net).

    `path` is the caffemodel, or a `read_caffemodel` result to reuse one read of the 553 MB file.
    Raises InitWeightsError for an unreadable file, a file that is not VGG16 (unless `force`), or a net with
    a VGG16 layer name whose convolution has another shape (a wrong architecture or input channel count)."""
    try:
        model = path if isinstance(path, Caffemodel) else read_caffemodel(path)
        path = model.path
        notes = check_known(model, "vgg16", force)
    except WeightsError as e:
        raise InitWeightsError(str(e)) from None
    report = InitReport(str(path), model.known is not None,
                        notes=[n for n in notes if n.startswith("unknown")])
    src = {lay.name: lay for lay in model.layers}
    missing = [n for n in VGG16_CONVS if n not in src]
    if missing:
        raise InitWeightsError(f"{path}: not VGG16 (no layer {', '.join(missing)})")
    where = f" for --arch {arch}" if arch else ""
    shape = lambda a: "x".join(map(str, a))  # noqa: E731
    # Check every layer before touching the net, so that a refusal leaves it as it was.
    problems = [f"{name}: VGG16 {shape(src[name].blobs[0].shape)} vs net {shape(net.params[name][0].data.shape)}"
                for name in VGG16_CONVS if name in net.params
                and src[name].blobs[0].shape != net.params[name][0].data.shape]
    if problems:
        raise InitWeightsError(f"{path}: VGG16 does not fit the net{where}: " + "; ".join(problems))
    for name in VGG16_CONVS:
        if name not in net.params:
            report.skipped.append(f"{name}: not in the net{where}")
            continue
        dst, blobs = net.params[name], src[name].blobs
        dst[0].data[...] = blobs[0]
        if len(dst) > 1 and len(blobs) > 1:
            dst[1].data[...] = blobs[1].reshape(dst[1].data.shape)  # legacy 1x1x1xC
        elif len(blobs) > 1:
            report.skipped.append(f"{name} bias: the net's convolution has none")
        report.copied.append(name)
    if not report.copied:
        # e.g. SegNet-Basic and its Table 1 variants: 7x7 convolutions trained from scratch (paper §3.2)
        raise InitWeightsError(f"{path}: the net{where} has none of VGG16's layers (conv1_1 .. conv5_3); "
                               "it trains from its fillers, without --init-weights")
    _copy_fc(net, src, arch, report)
    if "fc8" in src:
        report.skipped.append("fc8: ImageNet's 1000-class classifier, not used")
    return report


def _copy_fc(net, src: dict, arch: str | None, report: InitReport) -> None:
    """fc6/fc7 where the net has them in VGG16's own shape, as convolutions (FCN's surgery); noted otherwise."""
    shape = lambda a: "x".join(map(str, a))  # noqa: E731
    for name, conv_shape in VGG16_FC.items():
        if name not in net.params:
            continue
        dst = net.params[name]
        lay = src.get(name)
        if lay is None:
            report.skipped.append(f"{name}: not in the file")
        elif dst[0].data.shape == conv_shape and lay.blobs[0].size == int(np.prod(conv_shape)):
            dst[0].data[...] = lay.blobs[0].reshape(conv_shape)  # FCN surgery: the same numbers, conv layout
            if len(dst) > 1 and len(lay.blobs) > 1:
                dst[1].data[...] = lay.blobs[1].reshape(dst[1].data.shape)
            report.reshaped.append(f"{name} {shape(conv_shape)}")
        else:
            why = ("DeepLab's subsampled fc6/fc7 (1024 filters, 3x3 dilated fc6) are out of scope"
                   if arch and arch.startswith("deeplab") else
                   "not VGG16's shape (e.g. the 1024-wide fc layers of SegNet's DeconvNet benchmark); "
                   "no surgery")
            report.skipped.append(f"{name}: net {shape(dst[0].data.shape)} vs VGG16 {shape(conv_shape)}: "
                                  f"{why}; left at its filler")


def write_initialised(arch: str, vgg: Path | str, out: Path | str, classes: int = NUM_CLASSES, height: int = HEIGHT,
                      width: int = WIDTH, force: bool = False) -> InitReport:
    """Write `out`: the caffemodel of ARCH's deploy net at this size, with VGG16 copied into its encoder."""
    net = net_from_param(build_deploy(arch, classes, height, width))
    report = init_from_vgg16(net, vgg, arch, force)
    with atomic_path(out) as tmp:
        net.save(str(tmp))
    return report
