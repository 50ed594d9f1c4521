"""The 2014 VGG16 ImageNet caffemodel (`VGG_ILSVRC_16_layers.caffemodel`) for tests/test_init_weights.py.

That file was written by BVLC Caffe of 2014, not by caffe-segnet: V1 `layers` (NetParameter field 2) with enum
types and legacy num/channels/height/width blob dims, all of which BVLC's own `caffe_pb2` describes. The layer
headers come from BVLC's `V1LayerParameter`; the blobs are hand-encoded (packed floats), which keeps the real
553 MB file fast to write. (caffe-segnet's files are not made here: tests/fork/ writes them with a compiled declaration
of the fork's wire format.)

`vgg16` returns the file's bytes and the weights it holds, so that a test can check where each value lands
without going through the code under test.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def f_bytes(field: int, payload: bytes) -> bytes:
    return key(field, LEN) + varint(len(payload)) + payload


def f_string(field: int, text: str) -> bytes:
    return f_bytes(field, text.encode())


# --- messages ----------------------------------------------------------------------------------------
V1_LAYER_BLOBS = 6  # V1LayerParameter.blobs
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


def v1_layer(name: str, type: str, blobs: Iterable[np.ndarray] = (), bottom: Iterable[str] = (),
             top: Iterable[str] = ()) -> bytes:
    """A deprecated V1LayerParameter (NetParameter.layers) as in 2014 files such as VGG16's: enum type,
    blobs with legacy 4-d num/channels/height/width."""
    message = caffe_pb2.V1LayerParameter(name=name, type=caffe_pb2.V1LayerParameter.LayerType.Value(type),
                                         bottom=list(bottom), top=list(top))
    return message.SerializeToString() + b"".join(
        f_bytes(V1_LAYER_BLOBS, blob_proto(b, legacy_dims=True)) for b in blobs)


def net(name: str, layers: Iterable[bytes]) -> bytes:
    return f_string(1, name) + b"".join(f_bytes(NET_LAYERS_V1, lay) for lay in layers)


# VGG16 (Simonyan & Zisserman), the layout of VGG_ILSVRC_16_layers.caffemodel: V1 layers, legacy dims.
VGG16_STAGES = [(1, [("conv1_1", 64), ("conv1_2", 64)]), (2, [("conv2_1", 128), ("conv2_2", 128)]),
                (3, [("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256)]),
                (4, [("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512)]),
                (5, [("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512)])]
VGG16_CONVS = [(name, cout) for _, convs in VGG16_STAGES for name, cout in convs]


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
    for stage, convs in VGG16_STAGES:
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
    return net("VGG_ILSVRC_16_layers", layers), weights


def write(path: Path | str, data: bytes) -> Path:
    path = Path(path)
    path.write_bytes(data)
    return path
