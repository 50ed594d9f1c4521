"""The one place where a `caffe.Net` is built and where weights are read into it, checked first.

BVLC's `caffe.Net(model, phase, weights=W)` copies layers by name and skips silently whatever the file lacks: a
0-byte file or the weights of another architecture give a net of random fillers and plausible-looking metrics,
and a corrupt file or a blob of another shape ends in a glog CHECK abort with a stack trace. Everything in the
toolkit that reads weights (segmentation, evaluation, BatchNorm statistics, the benchmark, resume) goes through
`load_net` / `load_weights`, which parse the file with `caffe_pb2` first and refuse, with a one-line reason:

- a file that is missing, empty, unreadable or not a NetParameter (truncated, corrupt, another format; the one
  parser, segnet_bvlc.nets.weights_file);
- a layer whose blobs differ in count or shape from the net's (another class count, another architecture);
- a net with learnable layers that the file leaves without weights (the first few are named).

Only then does Caffe copy the weights (`Net.copy_from`), which after these checks cannot abort. The one intended
partial load, the VGG16 encoder initialisation, goes through `segnet_bvlc.training.init_weights`, which says what
it filled. `load_net(..., sampling=True)` gives the Monte Carlo dropout net (Dropout layers sampling at every
forward, layers.mc_dropout) from the same checks.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from segnet_bvlc.nets.weights_file import WeightsError, WeightsFile, read_weights, shape_text

__all__ = ["WeightsError", "WeightsFile", "check_weights", "load_net", "load_net_param", "load_weights",
           "net_from_param", "read_weights"]


def net_from_param(net_param, phase=None, weights: "Path | str | WeightsFile | None" = None):
    """A caffe.Net from a NetParameter (or its text), through a temporary prototxt as Caffe needs; weights checked."""
    import caffe  # heavy: imported where a net is built

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


def load_net(model: Path | str, weights: "Path | str | WeightsFile | None" = None, phase=None,
             sampling: bool = False):
    """caffe.Net of the prototxt `model` (checked to parse) with `weights` (checked to fit) copied in.

    sampling=True: the net's Dropout layers become layers.mc_dropout MCDropout layers (Monte Carlo dropout); a
    net without Dropout layers is refused."""
    import caffe  # heavy: imported where a net is built

    model = Path(model)
    if not model.is_file():
        raise WeightsError(f"{model}: model prototxt not found")
    net_param = load_net_param(model)
    if sampling:
        _check_dropout(model, net_param)
    known = set(caffe.layer_type_list())
    unknown = sorted({layer.type for layer in net_param.layer if layer.type not in known})
    if unknown:
        raise WeightsError(f"{model}: layer types unknown to this Caffe: {', '.join(unknown)}")
    if weights is not None and not isinstance(weights, WeightsFile):  # read before building a net that may be large
        weights = read_weights(weights)
    if sampling:
        from layers.mc_dropout import sampling_net_param  # imports caffe: only for a sampling net

        return net_from_param(sampling_net_param(net_param), phase, weights)
    net = caffe.Net(str(model), caffe.TEST if phase is None else phase)
    if weights is not None:
        load_weights(net, weights)
    return net


def _check_dropout(model: Path, net_param) -> None:
    """WeightsError unless the net has layers to sample: Dropout, or MCDropout already."""
    from layers.mc_dropout import dropout_layer_count  # imports caffe: only for a sampling net

    if not dropout_layer_count(net_param) and not any(
            layer.type == "Python" and layer.python_param.layer == "MCDropout" for layer in net_param.layer):
        raise WeightsError(f"{model}: the net has no Dropout layer, so Monte Carlo samples would all be equal "
                           "(--samples needs a model trained with dropout: --dropout)")


def _fits(net_shape: tuple[int, ...], file_shape: tuple[int, ...], legacy: bool) -> bool:
    if not legacy:
        return tuple(net_shape) == tuple(file_shape)
    # Caffe's legacy comparison: the net's shape, padded on the left with 1s to 4 axes.
    return len(net_shape) <= 4 and (1,) * (4 - len(net_shape)) + tuple(net_shape) == tuple(file_shape)


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
                raise WeightsError(f"{wf.path}: layer {name} blob {i} is {shape_text(h)}, the net expects "
                                   f"{shape_text(w)} (another class count, width or architecture?)")
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
    """The NetParameter of a prototxt; WeightsError (a ValueError) if it does not parse."""
    from caffe.proto import caffe_pb2  # caffe is heavy: only where a prototxt is read
    from google.protobuf import text_format

    param = caffe_pb2.NetParameter()
    try:
        text_format.Merge(Path(path).read_text(), param)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
        raise WeightsError(f"{path}: not a readable Caffe prototxt ({e})") from None
    return param
