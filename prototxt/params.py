"""Parameter counting, shared with tools.benchmark.

What counts: every stored weight of Convolution, Deconvolution, InnerProduct and Scale layers (weights and
biases, fixed bilinear kernels included: they are part of the model file). What does not: BatchNorm's three
blobs (running mean, variance and the moving-average factor are statistics, not parameters; BVLC forces
lr_mult 0 on them). The paper's counts (weights + biases of the convolutions) match this within 2 % with or
without the Scale layers' 2 x C each, which are < 0.2 % of every model here (see prototxt/README_table.md).
"""

from __future__ import annotations

from pathlib import Path

from caffe.proto import caffe_pb2
from google.protobuf import text_format

# Layers whose tops keep their first bottom's channel count.
_SAME_CHANNELS = {
    "BatchNorm", "Scale", "ReLU", "Dropout", "LRN", "Eltwise", "Crop", "Softmax", "Python", "Split", "Power",
    "Sigmoid", "TanH", "BN", "Bias", "AbsVal", "ELU", "PReLU",
}
_NO_SPATIAL_TOPS = {"SoftmaxWithLoss", "InfogainLoss", "Accuracy", "Silence", "EuclideanLoss"}
_EXCLUDED_BLOBS = {"BatchNorm"}


def _load(net_param) -> caffe_pb2.NetParameter:
    if isinstance(net_param, caffe_pb2.NetParameter):
        return net_param
    net = caffe_pb2.NetParameter()
    text_format.Merge(Path(net_param).read_text(), net)
    return net


def count_params(net) -> int:
    """Number of parameters of a `caffe.Net`, a `NetParameter` or a .prototxt path (see module doc)."""
    if hasattr(net, "layers") and hasattr(net, "_layer_names"):  # an instantiated caffe.Net
        return sum(
            blob.count for layer in net.layers if layer.type not in _EXCLUDED_BLOBS for blob in layer.blobs
        )
    return sum(layer_params(_load(net)).values())


def layer_params(net_param: caffe_pb2.NetParameter) -> dict[str, int]:
    """Parameters per layer name, from the prototxt alone: the channel count of every blob is propagated
    through the net (no Caffe instantiation, so FCN's 134 M weights are never allocated)."""
    channels: dict[str, int] = {}
    counts: dict[str, int] = {}
    for layer in net_param.layer:
        t = layer.type
        cin = channels.get(layer.bottom[0]) if layer.bottom else None
        if t == "Input":
            for top, shape in zip(layer.top, layer.input_param.shape):
                channels[top] = shape.dim[1]
            continue
        if t == "Python" and not layer.bottom:  # the CamVid data layer: data (BGR) and label
            channels.update(zip(layer.top, (3, 1)))
            continue
        if t in ("Data", "ImageData", "HDF5Data"):
            raise ValueError(f"layer {layer.name}: cannot infer channels of a {t} layer; use an Input layer")
        if t in ("Convolution", "Deconvolution"):
            cp = layer.convolution_param
            if cp.kernel_h or cp.kernel_w:
                kernel = cp.kernel_h * cp.kernel_w
            else:
                ks = list(cp.kernel_size)
                kernel = ks[0] * (ks[1] if len(ks) > 1 else ks[0])
            group = cp.group or 1
            # Weight blobs: Convolution (out, in/group, k, k); Deconvolution (in, out/group, k, k).
            if t == "Convolution":
                weights = cp.num_output * (cin // group) * kernel
            else:
                weights = cin * (cp.num_output // group) * kernel
            counts[layer.name] = weights + (cp.num_output if cp.bias_term else 0)
            channels[layer.top[0]] = cp.num_output
        elif t == "InnerProduct":
            raise ValueError(f"layer {layer.name}: InnerProduct needs spatial sizes; count an instantiated net")
        elif t == "Scale":
            counts[layer.name] = cin * (2 if layer.scale_param.bias_term else 1)
            channels[layer.top[0]] = cin
        elif t == "Pooling" or t in _SAME_CHANNELS:
            for top in layer.top:
                channels[top] = cin
        elif t == "Concat":
            channels[layer.top[0]] = sum(channels[b] for b in layer.bottom)
        elif t in _NO_SPATIAL_TOPS:
            continue
        else:
            raise ValueError(f"layer {layer.name}: unknown layer type {t} for parameter counting")
    return counts
