"""The one parser of Caffe weights files (caffemodels), whoever wrote them: BVLC, caffe-segnet, VGG16's 2014 file.

`parse_caffemodel` reads the file once, refuses what is not a usable caffemodel with a one-line reason
(missing, unreadable, empty, a Git LFS pointer, an HTML page, not a NetParameter, a blob whose stored values do
not fill its shape, no layer with weights) and gives the parsed message with the shapes of its layers' blobs.
`read_weights` keeps only those shapes (what checking weights against a net needs, without holding the values);
`segnet_bvlc.nets.caffemodel.read_caffemodel` builds each layer's arrays from the same parse.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from segnet_bvlc.core.errors import SegnetError


class WeightsError(SegnetError):
    """Weights (or a net definition) that cannot be used: unreadable, not a caffemodel, or not fitting a net, or
    a conversion that does not fit; the message names the file and the problem."""


@dataclass
class WeightsFile:
    path: Path
    shapes: dict[str, list[tuple[int, ...]]]  # layer name -> shape of each blob, in file order
    legacy: dict[str, bool]                   # layer name -> blobs given as num/channels/height/width
    size: int = 0                             # bytes
    sha256: str = ""


def blob_shape(blob) -> tuple[tuple[int, ...], bool]:
    """A BlobProto's shape and whether it is given the pre-2015 way (num/channels/height/width: VGG16's file)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim), False
    return (blob.num, blob.channels, blob.height, blob.width), True


def shape_text(shape) -> str:
    return "x".join(map(str, shape))


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the weights ({e.strerror})") from None
    if not data:
        raise WeightsError(f"{path}: the weights file is empty (0 bytes)")
    if data.startswith(b"version https://git-lfs"):
        raise WeightsError(f"{path}: a Git LFS pointer ({len(data)} bytes), not the weights: fetch the file "
                           "itself (git lfs pull)")
    if data.lstrip()[:1] == b"<":
        raise WeightsError(f"{path}: an HTML/XML page, not a caffemodel (a failed download?)")
    return data


def parse_caffemodel(path: Path | str):
    """(NetParameter message, WeightsFile) of a caffemodel, current `layer` and legacy V1 `layers` alike;
    WeightsError with the reason if it is not a usable one."""
    from caffe.proto import caffe_pb2  # caffe is heavy: only where a file is read
    from google.protobuf.message import DecodeError

    path = Path(path)
    data = _read_bytes(path)
    size, sha256 = len(data), hashlib.sha256(data).hexdigest()
    message = caffe_pb2.NetParameter()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise WeightsError(f"{path}: not a caffemodel (truncated or corrupt?)") from None
    del data
    shapes: dict[str, list[tuple[int, ...]]] = {}
    legacy: dict[str, bool] = {}
    for layer in list(message.layer) + list(message.layers):
        if not layer.blobs:
            continue
        blob_shapes = []
        for i, blob in enumerate(layer.blobs):
            shape, old = blob_shape(blob)
            count = 1
            for d in shape:
                count *= d
            stored = len(blob.data) or len(blob.double_data)
            if stored != count:
                raise WeightsError(f"{path}: layer {layer.name} blob {i} holds {stored} values for shape "
                                   f"{shape_text(shape)} (truncated or corrupt)")
            blob_shapes.append(shape)
            legacy[layer.name] = old
        shapes[layer.name] = blob_shapes
    if not shapes:
        raise WeightsError(f"{path}: not a caffemodel (no layer with weights: a prototxt, a solverstate, or "
                           "truncated?)")
    return message, WeightsFile(path, shapes, legacy, size, sha256)


def read_weights(path: Path | str) -> WeightsFile:
    """The blob shapes of a caffemodel's layers (parse_caffemodel without the values)."""
    return parse_caffemodel(path)[1]
