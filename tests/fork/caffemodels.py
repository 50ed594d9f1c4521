"""Caffemodels in caffe-segnet's format, written with classes of its wire format (tests/fork/schema.py).

The SegNet authors' released weights (Model Zoo) were saved by caffe-segnet; they cannot be downloaded any more
(docs/caffe.md §6.4). These builders write files of the same kind with random weights: every field is filled
by its name (`bn_param.bn_mode`, `upsample_param.pad_out_h`, `dense_image_data_param.batch_size`,
`loss_param.class_weighting`, ...) in tests/fork/fork_wire.proto, our declaration of the fields these files
use with the numbers, types, packing and defaults of the fork's caffe.proto, and serialised by protobuf: the
bytes are laid out by protobuf from those declarations, not by hand.

Each builder returns the file's bytes and the weights it holds, so that an independent PyTorch forward can use
the same numbers without going through the converter under test.

BN layers come in the forms a caffe-segnet file can hold them (`bn=`):
- "inference": `bn_param { bn_mode: INFERENCE }`, one top: saved from a net run with the inference
  prototxt (the statistics pass done, its folded scale/shift in the blobs).
- "statistics": no bn_mode, tops `X`, `X-mean`, `X-var`: what SegNet-Tutorial's compute_bn_statistics.py
  saves as test_weights.caffemodel (it runs the train net with those extra tops, folds the statistics into
  the blobs and saves that net; INFERENCE goes only into the prototxt message it builds, which it does not
  save).
- "snapshot": no bn_mode, one top: a `caffe train` snapshot of SegNet-Tutorial's train prototxts, whose BN
  blobs are the learned gamma/beta with no statistics folded in.
- "learn": like "snapshot" with `bn_mode: LEARN` written out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tests.fork.schema import messages

BN_FORMS = ("inference", "statistics", "snapshot", "learn")


def _fill(message, values: dict) -> None:
    """Set fields of `message` by name: nested dicts for sub-messages, lists for repeated fields."""
    for name, value in values.items():
        if isinstance(value, dict):
            _fill(getattr(message, name), value)
        elif isinstance(value, (list, tuple)):
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)


def new_net(name: str):
    return messages().NetParameter(name=name)


def add_blob(blob, array: np.ndarray) -> None:
    """A BlobProto with `shape` and `data`, as the fork's Blob::ToProto writes them."""
    array = np.asarray(array, dtype=np.float32)
    blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())  # a list: far faster to copy in than a numpy array


def add_layer(net, name: str, type: str, bottom: Iterable[str] = (), top: Iterable[str] = (),
              blobs: Iterable[np.ndarray] = (), **params):
    """One LayerParameter; `params` are its `*_param` fields as dicts, e.g. convolution_param={...}."""
    layer = net.layer.add(name=name, type=type, bottom=list(bottom), top=list(top))
    _fill(layer, params)
    for array in blobs:
        add_blob(layer.blobs.add(), array)
    return layer


def add_bn(net, name: str, blob: str, weights: Sequence[np.ndarray], bn: str = "inference"):
    """caffe-segnet's in-place BN layer on `blob` with SegNet's fillers (constant 1 and 0.001)."""
    if bn not in BN_FORMS:
        raise ValueError(f"bn must be one of {BN_FORMS}, not {bn!r}")
    param = {"scale_filler": {"type": "constant", "value": 1.0},
             "shift_filler": {"type": "constant", "value": 0.001}}
    if bn in ("inference", "learn"):
        param["bn_mode"] = "INFERENCE" if bn == "inference" else "LEARN"
    top = [blob, f"{blob}-mean", f"{blob}-var"] if bn == "statistics" else [blob]
    return add_layer(net, name, "BN", [blob], top, weights, bn_param=param)


def serialize(net) -> bytes:
    return net.SerializeToString()


def write(path: Path | str, data: bytes) -> Path:
    path = Path(path)
    path.write_bytes(data)
    return path


# --- whole released-style networks -----------------------------------------------------------------
def _conv_weights(rng: np.random.Generator, cout: int, cin: int, k: int, bias: bool) -> list[np.ndarray]:
    w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
    return [w, (rng.standard_normal(cout) * 0.1).astype(np.float32)] if bias else [w]


def _bn_weights(rng: np.random.Generator, c: int) -> list[np.ndarray]:
    """Folded statistics (released models, docs/caffe.md §6.4): a per-channel affine, stored 1xCx1x1."""
    scale = rng.uniform(0.5, 1.5, (1, c, 1, 1)).astype(np.float32)
    shift = (rng.standard_normal((1, c, 1, 1)) * 0.2).astype(np.float32)
    return [scale, shift]


def _data_layer(net) -> None:
    add_layer(net, "data", "DenseImageData", [], ["data", "label"],
              dense_image_data_param={"source": "/SegNet/CamVid/train.txt", "batch_size": 4, "shuffle": True})


def _train_head(net, classes: int, score: str) -> None:
    add_layer(net, "loss", "SoftmaxWithLoss", [score, "label"], ["loss"],
              loss_param={"ignore_label": 11, "weight_by_label_freqs": True,
                          "class_weighting": [1.0] * classes},
              softmax_param={"engine": "CAFFE"})
    add_layer(net, "accuracy", "Accuracy", [score, "label"], ["accuracy", "per_class_accuracy"])


def _max_pool(net, name: str, bottom: str) -> None:
    add_layer(net, name, "Pooling", [bottom], [name, f"{name}_mask"],
              pooling_param={"pool": "MAX", "kernel_size": 2, "stride": 2})


def segnet_basic(classes: int = 11, seed: int = 0, biases: bool = True,
                 classifier: str = "dense_softmax_inner_prod", bn: str = "inference"
                 ) -> tuple[bytes, dict[str, list[np.ndarray]]]:
    """SegNet-Basic as in SegNet-Tutorial's `segnet_basic_camvid` release: LRN `norm`, conv1..4 (7x7, 64)
    + BN + ReLU + pool with mask, upsample4 (pad_out_h) .. upsample1, conv_decode4..1 + BN (no ReLU), and
    the classifier named `dense_softmax_inner_prod` (the Example_Models name; the train prototxt says
    `conv_classifier`)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, list[np.ndarray]] = {}
    net = new_net("segnet")
    _data_layer(net)
    add_layer(net, "norm", "LRN", ["data"], ["norm"], lrn_param={"local_size": 5, "alpha": 1e-4, "beta": 0.75})
    bottom, cin = "norm", 3
    for i in (1, 2, 3, 4):
        name = f"conv{i}"
        weights[name] = _conv_weights(rng, 64, cin, 7, biases)
        weights[name + "_bn"] = _bn_weights(rng, 64)
        add_layer(net, name, "Convolution", [bottom], [name], weights[name],
                  convolution_param={"num_output": 64, "kernel_size": 7, "pad": 3})
        add_bn(net, name + "_bn", name, weights[name + "_bn"], bn)
        add_layer(net, f"relu{i}", "ReLU", [name], [name])
        _max_pool(net, f"pool{i}", name)
        bottom, cin = f"pool{i}", 64
    for i in (4, 3, 2, 1):
        name = f"conv_decode{i}"
        weights[name] = _conv_weights(rng, 64, 64, 7, biases)
        weights[name + "_bn"] = _bn_weights(rng, 64)
        upsample = {"scale": 2, "pad_out_h": True} if i == 4 else {"scale": 2}
        add_layer(net, f"upsample{i}", "Upsample", [bottom, f"pool{i}_mask"], [f"upsample{i}"],
                  upsample_param=upsample)
        add_layer(net, name, "Convolution", [f"upsample{i}"], [name], weights[name],
                  convolution_param={"num_output": 64, "kernel_size": 7, "pad": 3})
        add_bn(net, name + "_bn", name, weights[name + "_bn"], bn)
        bottom = name
    weights[classifier] = _conv_weights(rng, classes, 64, 1, True)  # nothing after it could absorb a bias
    add_layer(net, classifier, "Convolution", [bottom], [classifier], weights[classifier],
              convolution_param={"num_output": classes, "kernel_size": 1})
    _train_head(net, classes, classifier)
    return serialize(net), weights


# SegNet (VGG16 encoder, mirrored decoder): (stage, [(name, channels_out)]) as in segnet_train.prototxt.
SEGNET_ENCODER = [(1, [("conv1_1", 64), ("conv1_2", 64)]), (2, [("conv2_1", 128), ("conv2_2", 128)]),
                  (3, [("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256)]),
                  (4, [("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512)]),
                  (5, [("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512)])]
SEGNET_DECODER = [(5, [("conv5_3_D", 512), ("conv5_2_D", 512), ("conv5_1_D", 512)]),
                  (4, [("conv4_3_D", 512), ("conv4_2_D", 512), ("conv4_1_D", 256)]),
                  (3, [("conv3_3_D", 256), ("conv3_2_D", 256), ("conv3_1_D", 128)]),
                  (2, [("conv2_2_D", 128), ("conv2_1_D", 64)]), (1, [("conv1_2_D", 64), ("conv1_1_D", None)])]


def segnet(classes: int = 11, seed: int = 0, width_divisor: int = 1, bn: str = "inference"
           ) -> tuple[bytes, dict[str, list[np.ndarray]]]:
    """SegNet as in `segnet_train.prototxt` / the driving web demo: 26 3x3 convs with biases, 25 BN,
    conv1_1_D (K classes) without BN. `width_divisor` > 1 thins every layer (not a real shape; only for
    tests of the mapping that need no real-size net)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, list[np.ndarray]] = {}
    net = new_net("VGG_ILSVRC_16_layer")
    _data_layer(net)
    bottom, cin = "data", 3

    def conv_bn_relu(name: str, cout: int | None) -> None:
        nonlocal bottom, cin
        last = cout is None
        cout = classes if last else cout // width_divisor
        weights[name] = _conv_weights(rng, cout, cin, 3, True)
        add_layer(net, name, "Convolution", [bottom], [name], weights[name],
                  convolution_param={"num_output": cout, "kernel_size": 3, "pad": 1})
        if not last:
            weights[name + "_bn"] = _bn_weights(rng, cout)
            add_bn(net, name + "_bn", name, weights[name + "_bn"], bn)
            add_layer(net, "relu" + name[4:], "ReLU", [name], [name])
        bottom, cin = name, cout

    for stage, convs in SEGNET_ENCODER:
        for name, cout in convs:
            conv_bn_relu(name, cout)
        _max_pool(net, f"pool{stage}", bottom)
        bottom = f"pool{stage}"
    for stage, convs in SEGNET_DECODER:
        upsample = {"scale": 2}
        explicit = {5: (23, 30), 4: (45, 60)}.get(stage)  # the 360x480 sizes of segnet_train.prototxt
        if explicit:
            upsample.update(upsample_h=explicit[0], upsample_w=explicit[1])
        add_layer(net, f"upsample{stage}", "Upsample", [bottom, f"pool{stage}_mask"], [f"pool{stage}_D"],
                  upsample_param=upsample)
        bottom = f"pool{stage}_D"
        for name, cout in convs:
            conv_bn_relu(name, cout)
    _train_head(net, classes, "conv1_1_D")
    return serialize(net), weights
