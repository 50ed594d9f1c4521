"""Caffemodels in caffe-segnet's wire format, written by the tests themselves.

The SegNet authors' released weights (Model Zoo) were saved by caffe-segnet, whose `caffe.proto` adds
fields BVLC does not know or numbers differently (docs/caffe.md §6.1): `bn_param` = 45,
`upsample_param` = 137 (BVLC: `embed_param`), `dense_image_data_param` = 138 (BVLC: `tile_param`),
`LossParameter.weight_by_label_freqs` = 3 (BVLC: `normalization`) and `class_weighting` = 4. We have no
fork `caffe_pb2`, so those fields are written here as raw protobuf wire bytes appended to a BVLC
`LayerParameter`'s serialisation: BVLC's parser then meets exactly the mangled fields it meets in a real
fork file. Blob data is also hand-encoded (packed floats), which keeps a VGG16-sized file fast to write.

Each builder returns the file's bytes and the weights it holds, so that an independent PyTorch forward
can use the same numbers without going through the converter under test.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from caffe.proto import caffe_pb2

# --- protobuf wire encoding -------------------------------------------------------------------------
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 negatives are 10-byte varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def f_varint(field: int, value: int) -> bytes:
    return key(field, VARINT) + varint(int(value))


def f_float(field: int, value: float) -> bytes:
    return key(field, FIXED32) + struct.pack("<f", value)


def f_bytes(field: int, payload: bytes) -> bytes:
    return key(field, LEN) + varint(len(payload)) + payload


def f_string(field: int, text: str) -> bytes:
    return f_bytes(field, text.encode())


# --- messages ----------------------------------------------------------------------------------------
LAYER_BLOBS = 7  # LayerParameter.blobs (the same number in BVLC and both forks)
V1_LAYER_BLOBS = 6  # V1LayerParameter.blobs
NET_LAYER = 100  # NetParameter.layer
NET_LAYERS_V1 = 2  # NetParameter.layers (deprecated V1LayerParameter)


def blob_proto(array: np.ndarray, legacy_dims: bool = False) -> bytes:
    """A BlobProto: `shape` (field 7) or the legacy num/channels/height/width (1-4), data packed (5)."""
    array = np.asarray(array, dtype=np.float32)
    if legacy_dims:
        dims = (1,) * (4 - array.ndim) + array.shape
        head = b"".join(f_varint(n, d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        packed = b"".join(varint(d) for d in array.shape)
        head = f_bytes(7, f_bytes(1, packed))  # BlobShape.dim is packed int64
    return head + f_bytes(5, np.ascontiguousarray(array).astype("<f4").tobytes())


def bn_param(inference: bool = True) -> bytes:
    """caffe-segnet's `bn_param` (LayerParameter field 45): fillers 1 / 0.001 and bn_mode (3)."""
    constant = lambda value: f_string(1, "constant") + f_float(2, value)  # noqa: E731  FillerParameter
    payload = f_bytes(1, constant(1.0)) + f_bytes(2, constant(0.001))
    if inference:
        payload += f_varint(3, 1)  # BNMode INFERENCE
    return f_bytes(45, payload)


def upsample_param(scale: int = 2, pad_out_h: bool = False, upsample_h: int | None = None,
                   upsample_w: int | None = None, field: int = 137) -> bytes:
    """caffe-segnet's `upsample_param` (137 in alexgkendall's fork, 147 in TimoSaemann's)."""
    payload = f_varint(1, scale)
    if pad_out_h:
        payload += f_varint(4, 1)
    if upsample_h is not None:
        payload += f_varint(6, upsample_h) + f_varint(7, upsample_w)
    return f_bytes(field, payload)


def dense_image_data_param(source: str = "/SegNet/CamVid/train.txt", batch_size: int = 4,
                           shuffle: bool = True) -> bytes:
    """caffe-segnet's `dense_image_data_param` (138; BVLC reads it as `tile_param`)."""
    return f_bytes(138, f_string(1, source) + f_varint(2, batch_size) + f_varint(4, int(shuffle)))


def weighted_loss_param(class_weighting: Sequence[float], ignore_label: int = 11) -> bytes:
    """caffe-segnet's LossParameter (LayerParameter field 101): ignore_label 1, weight_by_label_freqs 3,
    class_weighting 4 (repeated float, not packed in proto2)."""
    payload = f_varint(1, ignore_label) + f_varint(3, 1) + b"".join(f_float(4, w) for w in class_weighting)
    return f_bytes(101, payload)


def layer(name: str, type: str, bottom: Iterable[str] = (), top: Iterable[str] = (),
          blobs: Iterable[np.ndarray] = (), extra: bytes = b"", **params) -> bytes:
    """One LayerParameter: the BVLC-known part through caffe_pb2, then blobs and fork fields as raw bytes.

    `params` are BVLC LayerParameter fields set from dicts (e.g. `convolution_param={...}`), which have the
    same numbers in the fork."""
    message = caffe_pb2.LayerParameter(name=name, type=type, bottom=list(bottom), top=list(top))
    for field, values in params.items():
        sub = getattr(message, field)
        for attr, value in values.items():
            if isinstance(value, (list, tuple)):
                getattr(sub, attr).extend(value)
            else:
                setattr(sub, attr, value)
    return (message.SerializeToString() + b"".join(f_bytes(LAYER_BLOBS, blob_proto(b)) for b in blobs)
            + extra)


def v1_layer(name: str, type: str, blobs: Iterable[np.ndarray] = (), bottom: Iterable[str] = (),
             top: Iterable[str] = ()) -> bytes:
    """A deprecated V1LayerParameter (NetParameter.layers) as in 2014 files such as VGG16's: enum type,
    blobs with legacy 4-d num/channels/height/width."""
    message = caffe_pb2.V1LayerParameter(name=name, type=caffe_pb2.V1LayerParameter.LayerType.Value(type),
                                         bottom=list(bottom), top=list(top))
    return message.SerializeToString() + b"".join(
        f_bytes(V1_LAYER_BLOBS, blob_proto(b, legacy_dims=True)) for b in blobs)


def net(name: str, layers: Iterable[bytes], v1: bool = False) -> bytes:
    return f_string(1, name) + b"".join(f_bytes(NET_LAYERS_V1 if v1 else NET_LAYER, lay) for lay in layers)


# --- whole released-style networks -----------------------------------------------------------------
def _conv_weights(rng: np.random.Generator, cout: int, cin: int, k: int, bias: bool) -> list[np.ndarray]:
    w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
    return [w, (rng.standard_normal(cout) * 0.1).astype(np.float32)] if bias else [w]


def _bn_weights(rng: np.random.Generator, c: int) -> list[np.ndarray]:
    """Folded statistics (released models, docs/caffe.md §6.4): a per-channel affine, stored 1xCx1x1."""
    scale = rng.uniform(0.5, 1.5, (1, c, 1, 1)).astype(np.float32)
    shift = (rng.standard_normal((1, c, 1, 1)) * 0.2).astype(np.float32)
    return [scale, shift]


def _train_head(classes: int, score: str) -> list[bytes]:
    weights = [1.0] * classes
    return [
        layer("loss", "SoftmaxWithLoss", [score, "label"], ["loss"], extra=weighted_loss_param(weights),
              softmax_param={"engine": caffe_pb2.SoftmaxParameter.CAFFE}),
        layer("accuracy", "Accuracy", [score, "label"], ["accuracy", "per_class_accuracy"]),
    ]


def segnet_basic(classes: int = 11, seed: int = 0, biases: bool = True,
                 classifier: str = "dense_softmax_inner_prod") -> tuple[bytes, dict[str, list[np.ndarray]]]:
    """SegNet-Basic as in SegNet-Tutorial's `segnet_basic_camvid` release: LRN `norm`, conv1..4 (7x7, 64)
    + BN + ReLU + pool with mask, upsample4 (pad_out_h) .. upsample1, conv_decode4..1 + BN (no ReLU), and
    the classifier named `dense_softmax_inner_prod` (the Example_Models name; the train prototxt says
    `conv_classifier`)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, list[np.ndarray]] = {}
    layers = [layer("data", "DenseImageData", [], ["data", "label"], extra=dense_image_data_param()),
              layer("norm", "LRN", ["data"], ["norm"],
                    lrn_param={"local_size": 5, "alpha": 1e-4, "beta": 0.75})]
    bottom, cin = "norm", 3
    for i in (1, 2, 3, 4):
        name = f"conv{i}"
        weights[name] = _conv_weights(rng, 64, cin, 7, biases)
        weights[name + "_bn"] = _bn_weights(rng, 64)
        layers += [
            layer(name, "Convolution", [bottom], [name], weights[name],
                  convolution_param={"num_output": 64, "kernel_size": [7], "pad": [3]}),
            layer(name + "_bn", "BN", [name], [name], weights[name + "_bn"], extra=bn_param()),
            layer(f"relu{i}", "ReLU", [name], [name]),
            layer(f"pool{i}", "Pooling", [name], [f"pool{i}", f"pool{i}_mask"],
                  pooling_param={"pool": caffe_pb2.PoolingParameter.MAX, "kernel_size": 2, "stride": 2}),
        ]
        bottom, cin = f"pool{i}", 64
    for i in (4, 3, 2, 1):
        name = f"conv_decode{i}"
        weights[name] = _conv_weights(rng, 64, 64, 7, biases)
        weights[name + "_bn"] = _bn_weights(rng, 64)
        layers += [
            layer(f"upsample{i}", "Upsample", [bottom, f"pool{i}_mask"], [f"upsample{i}"],
                  extra=upsample_param(2, pad_out_h=(i == 4))),
            layer(name, "Convolution", [f"upsample{i}"], [name], weights[name],
                  convolution_param={"num_output": 64, "kernel_size": [7], "pad": [3]}),
            layer(name + "_bn", "BN", [name], [name], weights[name + "_bn"], extra=bn_param()),
        ]
        bottom = name
    weights[classifier] = _conv_weights(rng, classes, 64, 1, True)  # nothing after it could absorb a bias
    layers.append(layer(classifier, "Convolution", [bottom], [classifier], weights[classifier],
                        convolution_param={"num_output": classes, "kernel_size": [1]}))
    layers += _train_head(classes, classifier)
    return net("segnet", layers), weights


# SegNet (VGG16 encoder, mirrored decoder): (stage, [(name, channels_out)]) as in segnet_train.prototxt.
SEGNET_ENCODER = [(1, [("conv1_1", 64), ("conv1_2", 64)]), (2, [("conv2_1", 128), ("conv2_2", 128)]),
                  (3, [("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256)]),
                  (4, [("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512)]),
                  (5, [("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512)])]
SEGNET_DECODER = [(5, [("conv5_3_D", 512), ("conv5_2_D", 512), ("conv5_1_D", 512)]),
                  (4, [("conv4_3_D", 512), ("conv4_2_D", 512), ("conv4_1_D", 256)]),
                  (3, [("conv3_3_D", 256), ("conv3_2_D", 256), ("conv3_1_D", 128)]),
                  (2, [("conv2_2_D", 128), ("conv2_1_D", 64)]), (1, [("conv1_2_D", 64), ("conv1_1_D", None)])]


def segnet(classes: int = 11, seed: int = 0, width_divisor: int = 1
           ) -> tuple[bytes, dict[str, list[np.ndarray]]]:
    """SegNet as in `segnet_train.prototxt` / the driving web demo: 26 3x3 convs with biases, 25 BN,
    conv1_1_D (K classes) without BN. `width_divisor` > 1 thins every layer (not a real shape; only for
    tests of the mapping that need no real-size net)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, list[np.ndarray]] = {}
    layers = [layer("data", "DenseImageData", [], ["data", "label"], extra=dense_image_data_param())]
    bottom, cin = "data", 3

    def conv_bn_relu(name: str, cout: int | None) -> None:
        nonlocal bottom, cin
        last = cout is None
        cout = classes if last else cout // width_divisor
        weights[name] = _conv_weights(rng, cout, cin, 3, True)
        layers.append(layer(name, "Convolution", [bottom], [name], weights[name],
                            convolution_param={"num_output": cout, "kernel_size": [3], "pad": [1]}))
        if not last:
            weights[name + "_bn"] = _bn_weights(rng, cout)
            layers.append(layer(name + "_bn", "BN", [name], [name], weights[name + "_bn"], extra=bn_param()))
            layers.append(layer("relu" + name[4:], "ReLU", [name], [name]))
        bottom, cin = name, cout

    for stage, convs in SEGNET_ENCODER:
        for name, cout in convs:
            conv_bn_relu(name, cout)
        layers.append(layer(f"pool{stage}", "Pooling", [bottom], [f"pool{stage}", f"pool{stage}_mask"],
                            pooling_param={"pool": caffe_pb2.PoolingParameter.MAX, "kernel_size": 2,
                                           "stride": 2}))
        bottom = f"pool{stage}"
    for stage, convs in SEGNET_DECODER:
        explicit = {5: (23, 30), 4: (45, 60)}.get(stage)  # the 360x480 sizes of segnet_train.prototxt
        layers.append(layer(f"upsample{stage}", "Upsample", [bottom, f"pool{stage}_mask"], [f"pool{stage}_D"],
                            extra=upsample_param(2, upsample_h=explicit[0], upsample_w=explicit[1])
                            if explicit else upsample_param(2)))
        bottom = f"pool{stage}_D"
        for name, cout in convs:
            conv_bn_relu(name, cout)
    layers += _train_head(classes, "conv1_1_D")
    return net("VGG_ILSVRC_16_layer", layers), weights


# VGG16 (Simonyan & Zisserman), the layout of VGG_ILSVRC_16_layers.caffemodel: V1 layers, legacy dims.
VGG16_CONVS = [(name, cout) for _, convs in SEGNET_ENCODER for name, cout in convs]


def _pattern(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Random normals repeated with a prime period: as telling as fresh normals for a test of where each
    value lands (the period divides no row length), and fast enough to fill 138M floats."""
    base = rng.standard_normal(min(100_003, int(np.prod(shape))), dtype=np.float32) * np.float32(scale)
    return np.resize(base, shape)


def vgg16(seed: int = 0, fc6: int = 4096, fc7: int = 4096, fc8: int = 1000, width_divisor: int = 1,
          ) -> tuple[bytes, dict[str, list[np.ndarray]]]:
    """A VGG16-shaped ImageNet caffemodel in the 2014 V1 format (`layers`, enum types, 4-d legacy blob
    dims; InnerProduct weights as 1x1xNxK). With the defaults the shapes are the real ones (528 MB of
    floats); `width_divisor` thins the conv layers for fast tests."""
    rng = np.random.default_rng(seed)
    weights: dict[str, list[np.ndarray]] = {}
    layers = []
    cin, bottom = 3, "data"
    for stage, convs in SEGNET_ENCODER:
        for name, cout in convs:
            cout //= width_divisor
            weights[name] = [_pattern(rng, (cout, cin, 3, 3), 0.05), _pattern(rng, (cout,), 0.1)]
            layers.append(v1_layer(name, "CONVOLUTION", weights[name], [bottom], [name]))
            layers.append(v1_layer("relu" + name[4:], "RELU", (), [name], [name]))
            bottom, cin = name, cout
        layers.append(v1_layer(f"pool{stage}", "POOLING", (), [bottom], [f"pool{stage}"]))
        bottom = f"pool{stage}"
    fan_in = cin * 7 * 7
    for name, n_in, n_out in (("fc6", fan_in, fc6), ("fc7", fc6, fc7), ("fc8", fc7, fc8)):
        weights[name] = [_pattern(rng, (n_out, n_in), 0.01), _pattern(rng, (n_out,), 0.1)]
        layers.append(v1_layer(name, "INNER_PRODUCT", weights[name], [bottom], [name]))
        if name != "fc8":
            layers.append(v1_layer("relu" + name[2:], "RELU", (), [name], [name]))
            layers.append(v1_layer("drop" + name[2:], "DROPOUT", (), [name], [name]))
        bottom = name
    layers.append(v1_layer("prob", "SOFTMAX", (), [bottom], ["prob"]))
    return net("VGG_ILSVRC_16_layers", layers, v1=True), weights


def write(path: Path | str, data: bytes) -> Path:
    path = Path(path)
    path.write_bytes(data)
    return path
