"""A PyTorch twin of a generated Caffe net, for timing Caffe against PyTorch on the same machine.

    peer = TorchPeer(net_param)              # the NetParameter prototxt.build_net made (Input-fed)
    peer.load_from_caffe(net)                # same weights (and BatchNorm statistics) as a caffe.Net of it
    blobs = peer.forward({"data": x, "label": y})

`tools.benchmark --peer torch` times it beside Caffe (`time_torch_peer`). Only the layer types the generators
write are translated; anything else is refused with its name. What each type means is Caffe's (BVLC's layer sources; the unpooling is
caffe-segnet's Upsample, layers/upsample.py), written out here in PyTorch calls:

  Convolution / Deconvolution   conv2d / conv_transpose2d with Caffe's pad, stride, dilation, group (the weight
                                layouts are the same: out x in/g x kh x kw, and in x out/g x kh x kw)
  BatchNorm                     batch statistics (biased variance) in TRAIN, the stored mean and variance divided by
                                the scale factor with use_global_stats or in TEST; eps as the layer's
  Scale                         x * gamma (+ beta) per channel
  Pooling MAX                   max_pool2d; round_mode CEIL (Caffe's default) is ceil_mode=True, FLOOR False; the
                                mask top is the argmax's flat index in its H x W plane, as return_indices gives it
  Python Upsample               max_unpool2d with the pooling's indices to upsample_h x upsample_w
  Crop                          the reference's size from the layer's offsets (axis 2)
  Eltwise, ReLU, LRN (across channels), Softmax, SoftmaxWithLoss (ignore_label, VALID normalisation), Dropout
  Accuracy                      skipped (no gradient; not part of a training step's cost)

tests/test_torch_peer.py checks every top blob, the loss and the weight gradients against Caffe's.
"""

from __future__ import annotations

import json
import statistics
import time

from segnet_bvlc.benchmark.errors import BenchmarkError
from segnet_bvlc.core.errors import SegnetError

LAYER_TYPES = ("Input", "Convolution", "Deconvolution", "BatchNorm", "Scale", "ReLU", "Pooling", "Python", "Crop",
               "Eltwise", "LRN", "Softmax", "SoftmaxWithLoss", "Dropout", "Accuracy")


class PeerError(SegnetError):
    """A net the translation does not cover; the message names the layer."""


def _pair(param, name: str, default: int) -> tuple[int, int]:
    """Caffe's (h, w) of a kernel/pad/stride setting: NAME_h/NAME_w where given, else the NAME field (a scalar in
    PoolingParameter, a repeated field with one value or one per axis in ConvolutionParameter)."""
    if param.HasField(f"{name}_h") or param.HasField(f"{name}_w"):
        return int(getattr(param, f"{name}_h")), int(getattr(param, f"{name}_w"))
    field = "kernel_size" if name == "kernel" else name
    value = getattr(param, field)
    if isinstance(value, int):
        return value, value
    values = [int(v) for v in value]
    return (values[0], values[-1]) if values else (default, default)


class TorchPeer:
    def __init__(self, net_param, train: bool = True):
        import torch  # optional (the test extra, not a run-time pin): only a PyTorch peer needs it

        self.torch = torch
        self.train = train
        self.layers = [layer for layer in net_param.layer if not self._excluded(layer)]
        self.params: dict[str, list] = {}
        for layer in self.layers:
            if layer.type not in LAYER_TYPES:
                raise PeerError(f"layer {layer.name}: type {layer.type} has no PyTorch translation")
            if layer.type == "Python" and layer.python_param.layer != "Upsample":
                raise PeerError(f"layer {layer.name}: Python layer {layer.python_param.layer} has no translation")

    def _excluded(self, layer) -> bool:
        phase = 0 if self.train else 1  # caffe_pb2.TRAIN, TEST
        return any(rule.HasField("phase") and rule.phase != phase for rule in layer.include)

    def load_from_caffe(self, net) -> None:
        """The caffe.Net's blobs as tensors; learnable ones (lr_mult != 0) require gradients."""
        torch = self.torch
        self.params = {}
        for layer in self.layers:
            if layer.name not in net.params:
                continue
            blobs = [torch.from_numpy(b.data.copy()) for b in net.params[layer.name]]
            mults = [p.lr_mult for p in layer.param]
            for i, t in enumerate(blobs):
                learnable = layer.type != "BatchNorm" and (i >= len(mults) or mults[i] != 0)
                t.requires_grad_(learnable)
            self.params[layer.name] = blobs

    def parameters(self) -> list:
        return [t for blobs in self.params.values() for t in blobs if t.requires_grad]

    def forward(self, inputs: dict) -> dict:
        """Every blob of the net by name (in-place layers overwrite their blob, as in Caffe)."""
        blobs = dict(inputs)
        for layer in self.layers:
            tops = self._layer(layer, [blobs[b] for b in layer.bottom], blobs)
            for name, value in zip(layer.top, tops):
                blobs[name] = value
        return blobs

    # ---------------------------------------------------------------------------------------------- layers
    def _layer(self, layer, x: list, blobs: dict) -> list:
        if layer.type == "Input":
            return [blobs[name] for name in layer.top]
        translate = self._TRANSLATIONS.get(layer.type)
        if translate is None:
            raise PeerError(f"layer {layer.name}: type {layer.type} has no PyTorch translation")
        return translate(self, layer, x, self.params.get(layer.name, []))

    def _convolution(self, layer, x: list, w: list) -> list:
        F = self.torch.nn.functional
        p = layer.convolution_param
        pad = _pair(p, "pad", 0)
        stride = _pair(p, "stride", 1)
        dilation = tuple(list(p.dilation)[:1] * 2) if len(p.dilation) else (1, 1)
        bias = w[1] if p.bias_term and len(w) > 1 else None
        if layer.type == "Convolution":
            return [F.conv2d(x[0], w[0], bias, stride, pad, dilation, p.group)]
        return [F.conv_transpose2d(x[0], w[0], bias, stride, pad, 0, p.group, dilation)]

    def _batch_norm(self, layer, x: list, w: list) -> list:
        F = self.torch.nn.functional
        p = layer.batch_norm_param
        eps = p.eps
        global_stats = p.use_global_stats if p.HasField("use_global_stats") else not self.train
        if not global_stats:
            return [F.batch_norm(x[0], None, None, training=True, momentum=0.0, eps=eps)]
        factor = float(w[2].reshape(-1)[0])
        factor = 0.0 if factor == 0 else 1.0 / factor
        return [F.batch_norm(x[0], w[0] * factor, w[1] * factor, training=False, eps=eps)]

    def _scale(self, layer, x: list, w: list) -> list:
        gamma = w[0].reshape(1, -1, 1, 1)
        out = x[0] * gamma
        if layer.scale_param.bias_term:
            out = out + w[1].reshape(1, -1, 1, 1)
        return [out]

    def _relu(self, layer, x: list, w: list) -> list:
        return [self.torch.nn.functional.relu(x[0])]

    def _pooling(self, layer, x: list, w: list) -> list:
        F = self.torch.nn.functional
        p = layer.pooling_param
        if p.pool != 0:  # MAX
            raise PeerError(f"layer {layer.name}: only MAX pooling is translated")
        kernel = _pair(p, "kernel", 1)
        stride = _pair(p, "stride", 1)
        pad = _pair(p, "pad", 0)
        ceil = p.round_mode == 0  # CEIL
        if len(layer.top) > 1:
            out, index = F.max_pool2d(x[0], kernel, stride, pad, ceil_mode=ceil, return_indices=True)
            return [out, index]
        return [F.max_pool2d(x[0], kernel, stride, pad, ceil_mode=ceil)]

    def _upsample(self, layer, x: list, w: list) -> list:
        """Python Upsample: the indices are the pooling's (int64 here, float in Caffe's mask blob)."""
        p = json.loads(layer.python_param.param_str or "{}")
        if "upsample_h" not in p:
            raise PeerError(f"layer {layer.name}: only Upsample with explicit upsample_h/upsample_w is translated")
        index = x[1] if x[1].dtype == self.torch.int64 else x[1].long()
        return [self.torch.nn.functional.max_unpool2d(x[0], index, p.get("scale", 2),
                                                      output_size=(p["upsample_h"], p["upsample_w"]))]

    def _crop(self, layer, x: list, w: list) -> list:
        p = layer.crop_param
        if p.axis != 2:
            raise PeerError(f"layer {layer.name}: only Crop on axis 2 is translated")
        offsets = list(p.offset) or [0]
        oh, ow = offsets[0], offsets[-1]
        h, wd = x[1].shape[2:]
        return [x[0][:, :, oh:oh + h, ow:ow + wd]]

    def _eltwise(self, layer, x: list, w: list) -> list:
        p = layer.eltwise_param
        if p.operation == 1:  # SUM
            coeffs = list(p.coeff) or [1.0] * len(x)
            out = x[0] * coeffs[0] if coeffs[0] != 1 else x[0]
            for c, b in zip(coeffs[1:], x[1:]):
                out = out + (b * c if c != 1 else b)
            return [out]
        if p.operation == 0:  # PROD
            out = x[0]
            for b in x[1:]:
                out = out * b
            return [out]
        out = x[0]
        for b in x[1:]:
            out = self.torch.maximum(out, b)
        return [out]

    def _lrn(self, layer, x: list, w: list) -> list:
        p = layer.lrn_param
        if p.norm_region != 0:
            raise PeerError(f"layer {layer.name}: only ACROSS_CHANNELS LRN is translated")
        return [self.torch.nn.functional.local_response_norm(x[0], p.local_size, p.alpha, p.beta, p.k)]

    def _softmax(self, layer, x: list, w: list) -> list:
        return [self.torch.nn.functional.softmax(x[0], dim=1)]

    def _softmax_loss(self, layer, x: list, w: list) -> list:
        lp = layer.loss_param
        ignore = lp.ignore_label if lp.HasField("ignore_label") else -100
        label = x[1][:, 0].long() if x[1].dim() == 4 else x[1].long()
        if lp.HasField("normalization") and lp.normalization not in (1,):  # VALID
            raise PeerError(f"layer {layer.name}: only VALID loss normalisation is translated")
        return [self.torch.nn.functional.cross_entropy(x[0], label, ignore_index=ignore)]

    def _dropout(self, layer, x: list, w: list) -> list:
        return [self.torch.nn.functional.dropout(x[0], layer.dropout_param.dropout_ratio, training=self.train)]

    def _accuracy(self, layer, x: list, w: list) -> list:
        return [self.torch.zeros(())] * len(layer.top)

    _TRANSLATIONS = {"Convolution": _convolution, "Deconvolution": _convolution, "BatchNorm": _batch_norm,
                     "Scale": _scale, "ReLU": _relu, "Pooling": _pooling, "Python": _upsample, "Crop": _crop,
                     "Eltwise": _eltwise, "LRN": _lrn, "Softmax": _softmax, "SoftmaxWithLoss": _softmax_loss,
                     "Dropout": _dropout, "Accuracy": _accuracy}


def time_torch_peer(param, net, repeats: int, warmup: int) -> dict:
    """Forward, backward and a whole SGD step (momentum 0.9) of the net's PyTorch twin, on the caffe.Net's weights
    and inputs: medians over `repeats` after `warmup` steps, in ms."""
    import torch  # optional: the commands check that it is installed before asking for a peer

    try:
        peer = TorchPeer(param)
    except PeerError as e:
        raise BenchmarkError(f"--peer torch: {e}") from None
    peer.load_from_caffe(net)
    inputs = {name: torch.from_numpy(net.blobs[name].data.copy()) for name in net.inputs}
    (loss,) = [layer.top[0] for layer in peer.layers if layer.type == "SoftmaxWithLoss"]
    optimiser = torch.optim.SGD(peer.parameters(), lr=1e-12, momentum=0.9)
    fwd, bwd, step = [], [], []
    for r in range(warmup + repeats):
        optimiser.zero_grad()
        t0 = time.perf_counter()
        out = peer.forward(inputs)
        t1 = time.perf_counter()
        out[loss].backward()
        t2 = time.perf_counter()
        optimiser.step()
        t3 = time.perf_counter()
        if r >= warmup:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            step.append((t3 - t0) * 1e3)
    return {"forward_ms": statistics.median(fwd), "backward_ms": statistics.median(bwd),
            "step_ms": statistics.median(step)}
