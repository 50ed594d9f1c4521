"""The one place where a `caffe.Net` is built and where weights are read into it, checked first.

BVLC's `caffe.Net(model, phase, weights=W)` copies layers by name and skips silently whatever the file lacks: a
0-byte file or the weights of another architecture give a net of random fillers and plausible-looking metrics,
and a corrupt file or a blob of another shape ends in a glog CHECK abort with a stack trace. Everything in the
toolkit that reads weights (segmentation, evaluation, BatchNorm statistics, the benchmark, resume) goes through
`load_net` / `load_weights`, which parse the file with `caffe_pb2` first and refuse, with a one-line reason:

- a file that is missing, empty, unreadable or not a NetParameter (truncated, corrupt, another format);
- a layer whose blobs differ in count or shape from the net's (another class count, another architecture);
- a net with learnable layers that the file leaves without weights (the first few are named).

Only then does Caffe copy the weights (`Net.copy_from`), which after these checks cannot abort. The one intended
partial load, the VGG16 encoder initialisation, goes through `tools.init_weights`, which says what it filled.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


class WeightsError(ValueError):
    """Weights that do not fit a net; the message names the file and the problem."""


def net_from_param(net_param, phase=None, weights: "Path | str | WeightsFile | None" = None):
    """A caffe.Net from a NetParameter (or its text), through a temporary prototxt as Caffe needs; weights checked."""
    import caffe

    text = net_param if isinstance(net_param, str) else str(net_param)
    fd, name = tempfile.mkstemp(suffix=".prototxt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        net = caffe.Net(name, caffe.TEST if phase is None else phase)
    finally:
        os.unlink(name)
    if weights is not None:
        load_weights(net, weights)
    return net


def load_net(model: Path | str, weights: "Path | str | WeightsFile | None" = None, phase=None):
    """caffe.Net of the prototxt `model` (checked to parse) with `weights` (checked to fit) copied in."""
    import caffe

    from segnet_bvlc.nets.load import load_net_param

    model = Path(model)
    if not model.is_file():
        raise WeightsError(f"{model}: model prototxt not found")
    net_param = load_net_param(model)
    known = set(caffe.layer_type_list())
    unknown = sorted({layer.type for layer in net_param.layer if layer.type not in known})
    if unknown:
        raise WeightsError(f"{model}: layer types unknown to this Caffe: {', '.join(unknown)}")
    if weights is not None and not isinstance(weights, WeightsFile):  # read before building a net that may be large
        weights = read_weights(weights)
    net = caffe.Net(str(model), caffe.TEST if phase is None else phase)
    if weights is not None:
        load_weights(net, weights)
    return net


@dataclass
class WeightsFile:
    path: Path
    shapes: dict[str, list[tuple[int, ...]]]  # layer name -> shape of each blob, in file order
    legacy: dict[str, bool]                   # layer name -> blobs given as num/channels/height/width


def _blob_shape(blob) -> tuple[tuple[int, ...], bool]:
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim), False
    return (blob.num, blob.channels, blob.height, blob.width), True


def read_weights(path: Path | str) -> WeightsFile:
    """Parse a caffemodel (BVLC or V1 layout) into its layers' blob shapes; WeightsError if it is not one."""
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the weights ({e.strerror})") from None
    if not data:
        raise WeightsError(f"{path}: the weights file is empty (0 bytes)")
    message = caffe_pb2.NetParameter()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        raise WeightsError(f"{path}: not a caffemodel (truncated or corrupt: it does not parse as a "
                           "Caffe NetParameter)") from None
    del data
    shapes: dict[str, list[tuple[int, ...]]] = {}
    legacy: dict[str, bool] = {}
    for layer in list(message.layer) + list(message.layers):
        if not layer.blobs:
            continue
        blob_shapes = []
        for i, blob in enumerate(layer.blobs):
            shape, old = _blob_shape(blob)
            count = 1
            for d in shape:
                count *= d
            stored = len(blob.data) or len(blob.double_data)
            if stored != count:
                raise WeightsError(f"{path}: layer {layer.name} blob {i} holds {stored} values for shape "
                                   f"{'x'.join(map(str, shape))} (truncated or corrupt)")
            blob_shapes.append(shape)
            legacy[layer.name] = old
        shapes[layer.name] = blob_shapes
    if not shapes:
        raise WeightsError(f"{path}: not a caffemodel (no layer with weights: a prototxt, a solverstate, or "
                           "truncated?)")
    return WeightsFile(path, shapes, legacy)


def _fits(net_shape: tuple[int, ...], file_shape: tuple[int, ...], legacy: bool) -> bool:
    if not legacy:
        return tuple(net_shape) == tuple(file_shape)
    # Caffe's legacy comparison: the net's shape, padded on the left with 1s to 4 axes.
    return len(net_shape) <= 4 and (1,) * (4 - len(net_shape)) + tuple(net_shape) == tuple(file_shape)


def _fmt(shape) -> str:
    return "x".join(map(str, shape))


def check_weights(net, weights: WeightsFile | Path | str) -> None:
    """WeightsError unless `weights` gives every learnable layer of `net` blobs of exactly its shapes."""
    wf = weights if isinstance(weights, WeightsFile) else read_weights(weights)
    missing = []
    for name, blobs in net.params.items():
        if name not in wf.shapes:
            missing.append(name)
            continue
        have = wf.shapes[name]
        want = [tuple(b.data.shape) for b in blobs]
        if len(have) != len(want):
            raise WeightsError(f"{wf.path}: layer {name} has {len(have)} blobs, the net expects {len(want)} "
                               f"(another architecture or options?)")
        for i, (h, w) in enumerate(zip(have, want)):
            if not _fits(w, h, wf.legacy[name]):
                raise WeightsError(f"{wf.path}: layer {name} blob {i} is {_fmt(h)}, the net expects {_fmt(w)} "
                                   f"(another class count, width or architecture?)")
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise WeightsError(f"{wf.path}: no weights for {len(missing)} of the net's {len(net.params)} learnable "
                           f"layers ({shown}): weights of another architecture?")


def load_weights(net, weights: "Path | str | WeightsFile") -> None:
    """Check `weights` against `net`, then copy them in (Caffe's own copy, which can no longer abort). A
    WeightsFile (read_weights) lets several nets take the same file with one parse."""
    wf = weights if isinstance(weights, WeightsFile) else read_weights(weights)
    check_weights(net, wf)
    net.copy_from(str(wf.path))


def load_net_param(path: Path | str):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    param = caffe_pb2.NetParameter()
    try:
        text_format.Merge(Path(path).read_text(), param)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
        raise ValueError(f"{path}: not a readable Caffe prototxt ({e})") from None
    return param
