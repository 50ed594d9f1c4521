"""Building blocks shared by every generator: one `NetBuilder` over `caffe.NetSpec`.

The builder tracks each blob's (channels, height, width) while the net is written, so generators can
derive sizes from the network itself: the unpooling output sizes (23x30 and 45x60 for SegNet at 360x480,
docs/caffe.md §1.2, never hard-coded), and clear errors when an input is too small for an architecture.
The shape rules are Caffe's own (BVLC `conv_layer.cpp`, `pooling_layer.cpp` with its ceil rounding and
clipping, `deconv_layer.cpp`); the tests check them against instantiated nets.

Conventions (SegNet-Tutorial's prototxts, docs/paper.md §7):
- a convolution `X` is followed, in place, by BatchNorm `X_bn`, Scale `X_scale` and ReLU (`reluN` for
  `convN`/`fcN`, else `X_relu`); BatchNorm has no `param` specs (BVLC forces lr_mult 0 on its statistics);
- weights msra-filled with lr_mult 1 / decay 1, biases constant 0 with lr_mult 2 / decay 0, as every
  SegNet-Tutorial and fcn.berkeleyvision.org prototxt;
- Scale (the learnt part of caffe-segnet's BN) starts at scale 1, shift 0.001 (SegNet's BN fillers) with
  lr 1 / decay 1 and lr 1 / decay 0 (SegNet's BN param block).
"""

from __future__ import annotations

import json
import math

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.coord_map import crop as coord_crop

from layers import camvid_data
from layers.mc_dropout import sampling_net_param

from .options import Options, OptionsError, default_source, weights_source

WEIGHT = dict(lr_mult=1, decay_mult=1)
BIAS = dict(lr_mult=2, decay_mult=0)
FIXED = dict(lr_mult=0, decay_mult=0)
MSRA = dict(type="msra")
Shape = tuple[int, int, int]  # channels, height, width


def relu_name(name: str) -> str:
    """SegNet-Tutorial / VGG naming: conv1_1 -> relu1_1, conv5_3_D -> relu5_3_D, fc6 -> relu6."""
    for prefix in ("conv", "fc"):
        rest = name[len(prefix):]
        if name.startswith(prefix) and rest[:1].isdigit():
            return "relu" + rest
    return name + "_relu"


class NetBuilder:
    """A NetSpec plus the options and the blob shapes. Methods return the NetSpec top they produced."""

    def __init__(self, arch: str, opts: Options):
        self.arch = arch
        self.opts = opts
        self.n = caffe.NetSpec()
        self.shapes: dict[object, Shape] = {}
        self.pooled_from: dict[object, tuple[int, int]] = {}  # pool top -> its input's (H, W), for unpooling
        self.train = opts.split == "train"
        self.deploy = opts.split == "deploy"

    # ----------------------------------------------------------------------------------------- shapes
    def shape(self, top) -> Shape:
        return self.shapes[top]

    def _set(self, top, shape: Shape):
        self.shapes[top] = shape
        return top

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            raise OptionsError(f"{self.arch} at {self.opts.height}x{self.opts.width}: {message}")

    # ----------------------------------------------------------------------------------------- input
    def inputs(self):
        """The `data` top (N x 3 x H x W raw BGR 0-255) and, except in deploy nets, `label` (N x 1 x H x W)."""
        o, n = self.opts, self.n
        batch = o.batch
        shape = (3, o.height, o.width)
        if self.deploy:
            n.data = L.Input(input_param=dict(shape=dict(dim=[batch, *shape])))
            return self._set(n.data, shape), None
        if o.data == "input":
            n.data = L.Input(input_param=dict(shape=dict(dim=[batch, *shape])))
            n.label = L.Input(input_param=dict(shape=dict(dim=[batch, 1, o.height, o.width])))
        else:
            source = o.source or default_source(o.split, o.height, o.width)
            shuffle = self.train if o.shuffle is None else o.shuffle
            param = dict(source=source, batch_size=batch, seed=o.seed, shuffle=shuffle, mirror=o.mirror)
            n.data, n.label = L.Python(
                python_param=dict(module=camvid_data.MODULE, layer=camvid_data.LAYER, param_str=json.dumps(param)),
                ntop=2,
            )
        self._set(n.label, (1, o.height, o.width))
        return self._set(n.data, shape), n.label

    # ----------------------------------------------------------------------------------------- layers
    def conv(self, name: str, bottom, nout: int, ks: int, pad: int = 0, stride: int = 1, dilation: int = 1,
             group: int = 1, bn: bool = True, relu: bool = True, bias: bool | None = None):
        """Convolution (+ BatchNorm + Scale when `bn` and batchnorm are on) (+ ReLU), all in place.

        `bias=None` follows the options: with biases=paper a convolution followed by BatchNorm has no bias
        (SegNet paper §3.1 "no biases are used after convolutions"; BN's shift makes a bias redundant);
        otherwise it has one, as in the public prototxts.
        """
        bn = bn and self.opts.batchnorm
        if bias is None:
            bias = not (self.opts.biases == "paper" and bn)
        c, h, w = self.shape(bottom)
        self.require(c % group == 0, f"{name}: {c} input channels not divisible by group {group}")
        extent = dilation * (ks - 1) + 1
        oh, ow = ((x + 2 * pad - extent) // stride + 1 for x in (h, w))
        self.require(oh >= 1 and ow >= 1, f"{name} ({ks}x{ks}, pad {pad}) gets a {h}x{w} input; use a larger input")
        cp = dict(num_output=nout, kernel_size=ks, weight_filler=MSRA, bias_term=bias)
        if pad:
            cp["pad"] = pad
        if stride != 1:
            cp["stride"] = stride
        if dilation != 1:
            cp["dilation"] = dilation
        if group != 1:
            cp["group"] = group
        if bias:
            cp["bias_filler"] = dict(type="constant")
        top = L.Convolution(bottom, param=[WEIGHT, BIAS] if bias else [WEIGHT], convolution_param=cp)
        self.n[name] = top
        self._set(top, (nout, oh, ow))
        return self.post(name, top, bn=bn, relu=relu)

    def deconv(self, name: str, bottom, nout: int, ks: int, stride: int = 1, pad: int = 0, group: int = 1,
               filler: dict | None = None, learn: bool = True, bias: bool | None = False, bn: bool = False,
               relu: bool = False):
        """Deconvolution; out = (in - 1) * stride + ks - 2 * pad. `bias=None` follows the options as `conv`."""
        bn = bn and self.opts.batchnorm
        if bias is None:
            bias = not (self.opts.biases == "paper" and bn)
        c, h, w = self.shape(bottom)
        self.require(c % group == 0, f"{name}: {c} input channels not divisible by group {group}")
        oh, ow = ((x - 1) * stride + ks - 2 * pad for x in (h, w))
        cp = dict(num_output=nout, kernel_size=ks, weight_filler=filler or MSRA, bias_term=bias)
        if stride != 1:
            cp["stride"] = stride
        if pad:
            cp["pad"] = pad
        if group != 1:
            cp["group"] = group
        if bias:
            cp["bias_filler"] = dict(type="constant")
        spec = [WEIGHT, BIAS] if bias else [WEIGHT]
        if not learn:
            spec = [FIXED] * len(spec)
        top = L.Deconvolution(bottom, param=spec, convolution_param=cp)
        self.n[name] = top
        self._set(top, (nout, oh, ow))
        return self.post(name, top, bn=bn, relu=relu)

    def bilinear(self, name: str, bottom, factor: int, ks: int | None = None, pad: int | None = None,
                 learn: bool = False, channelwise: bool | None = None):
        """Bilinear upsampling by `factor` as a Deconvolution with BVLC's "bilinear" filler.

        The filler writes the same bilinear kernel into every (input, output) channel pair, so a full
        C -> C deconvolution would sum all channels. Fixed layers therefore use group = C (each channel
        upsampled alone: the function fcn's `surgery.interp` diagonal kernel computes, with C x 1 x k x k
        weights instead of C x C x k x k). Learnt layers need the full C x C kernel (the paper's parameter
        counts include it), so they keep group 1 and `prototxt.surgery.bilinear_surgery` zeroes the
        off-diagonal pairs before training, as fcn.berkeleyvision.org does.
        Defaults: kernel 2f - f % 2, pad ceil((f - 1) / 2) (BVLC filler.hpp), giving exactly factor x size.
        """
        c = self.shape(bottom)[0]
        ks = ks if ks is not None else 2 * factor - factor % 2
        pad = pad if pad is not None else math.ceil((factor - 1) / 2)
        if channelwise is None:
            channelwise = not learn
        return self.deconv(name, bottom, c, ks, stride=factor, pad=pad, group=c if channelwise else 1,
                           filler=dict(type="bilinear"), learn=learn)

    def post(self, name: str, top, bn: bool = True, relu: bool = True):
        """In-place BatchNorm + Scale (caffe-segnet's BN split in BVLC's two layers) and ReLU.

        Returns the last in-place top: consumers must take it (not the convolution's top) so that NetSpec
        orders the layers correctly and coord_map can walk through them."""
        n = self.n
        shape = self.shape(top)
        if bn and self.opts.batchnorm:
            top = n[name + "_bn"] = L.BatchNorm(top, in_place=True,
                                                batch_norm_param=dict(use_global_stats=not self.train))
            top = n[name + "_scale"] = L.Scale(
                top, in_place=True, param=[WEIGHT, dict(lr_mult=1, decay_mult=0)],
                scale_param=dict(bias_term=True, filler=dict(type="constant", value=1),
                                 bias_filler=dict(type="constant", value=0.001)),
            )
        if relu:
            top = n[relu_name(name)] = L.ReLU(top, in_place=True)
        return self._set(top, shape)

    def pool(self, name: str, bottom, ks: int = 2, stride: int = 2, pad: int = 0, mask: bool = False,
             floor: bool = False):
        """MAX pooling (Caffe's ceil rounding unless `floor`); with `mask` a second top `NAME_mask` holding
        the argmax flat indices for `unpool`."""
        c, h, w = self.shape(bottom)
        self.require(h >= ks - 2 * pad and w >= ks - 2 * pad, f"{name} gets a {h}x{w} input; use a larger input")

        def out(x):
            if floor:
                return (x + 2 * pad - ks) // stride + 1
            size = -(-(x + 2 * pad - ks) // stride) + 1
            if pad and (size - 1) * stride >= x + pad:  # BVLC: the last window must start inside the image
                size -= 1
            return size

        pp = dict(pool=P.Pooling.MAX, kernel_size=ks, stride=stride)
        if pad:
            pp["pad"] = pad
        if floor:
            pp["round_mode"] = P.Pooling.FLOOR
        shape = (c, out(h), out(w))
        # Top-level keywords (not pooling_param=...): caffe.coord_map reads them there.
        if mask:
            top, mask_top = L.Pooling(bottom, ntop=2, **pp)
            self.n[name], self.n[name + "_mask"] = top, mask_top
            self._set(mask_top, shape)
        else:
            top = L.Pooling(bottom, **pp)
            self.n[name] = top
        self.pooled_from[top] = (h, w)  # the unpooling layer restores exactly this size
        return self._set(top, shape)

    def unpool(self, name: str, bottom, pool_top, mask_top):
        """Max-unpooling with the stored indices (layers.upsample, caffe-segnet's Upsample).

        The output size is that of the pooling's input, computed here from the pool chain and written as
        explicit `upsample_h/upsample_w` for every unpooling: SegNet-Tutorial does exactly this where the
        size is odd (23x30, 45x60 at 360x480) and `scale: 2` elsewhere, where the two agree. Explicit sizes
        everywhere keep one rule for all input sizes (no reference bottom needed).
        """
        c = self.shape(bottom)[0]
        mh, mw = self.shape(mask_top)[1:]
        self.require(self.shape(bottom)[1:] == (mh, mw), f"{name}: values and mask sizes differ")
        h, w = self.pooled_from[pool_top]
        param = dict(scale=2, upsample_h=h, upsample_w=w)
        top = L.Python(bottom, mask_top, python_param=dict(module="layers.upsample", layer="Upsample",
                                                           param_str=json.dumps(param)))
        self.n[name] = top
        return self._set(top, (c, h, w))

    def crop(self, name: str, bottom, reference):
        """Crop `bottom` to `reference`'s size with the offset from caffe.coord_map (never hand-set)."""
        top = coord_crop(bottom, reference)
        self.n[name] = top
        c = self.shape(bottom)[0]
        _, h, w = self.shape(reference)
        bh, bw = self.shape(bottom)[1:]
        offsets = top.fn.params["crop_param"]["offset"]
        self.require(all(o + s <= b for o, s, b in zip(offsets, (h, w), (bh, bw))),
                     f"{name}: cannot crop {bh}x{bw} to {h}x{w} at offset {offsets}")
        return self._set(top, (c, h, w))

    def add(self, name: str, a, b):
        self.require(self.shape(a) == self.shape(b), f"{name}: adding {self.shape(a)} and {self.shape(b)}")
        top = L.Eltwise(a, b, eltwise_param=dict(operation=P.Eltwise.SUM))
        self.n[name] = top
        return self._set(top, self.shape(a))

    def dropout(self, name: str, top):
        """Dropout 0.5 in place when the `dropout` option is on (Bayesian SegNet's placement,
        docs/paper.md §7.3). With `mc_dropout` (test/deploy nets) `to_proto` turns these layers into the
        sampling layers.mc_dropout MCDropout (Monte Carlo dropout); they stay Dropout while the net is built,
        so that coord_map still sees an element-wise layer when it computes crop offsets."""
        if not self.opts.dropout:
            return top
        shape = self.shape(top)
        top = self.n[name] = L.Dropout(top, in_place=True, dropout_param=dict(dropout_ratio=0.5))
        return self._set(top, shape)

    def lrn(self, name: str, bottom):
        """SegNet-Basic's "local contrast normalisation" of the input: LRN, size 5, alpha 1e-4, beta 0.75."""
        top = L.LRN(bottom, lrn_param=dict(local_size=5, alpha=0.0001, beta=0.75))
        self.n[name] = top
        return self._set(top, self.shape(bottom))

    # ----------------------------------------------------------------------------------------- heads
    def head(self, score, label):
        """The end of the net: loss and accuracy (train/test) or Softmax `prob` (deploy).

        Loss: class-weighted `InfogainLoss` with H = diag(w) (BVLC's has an internal softmax over axis 1), or
        `SoftmaxWithLoss`; both ignore the void label and divide by the number of valid pixels
        (`normalization: VALID`), which is caffe-segnet's weighted SoftmaxWithLoss exactly (docs/caffe.md §3).
        """
        o, n = self.opts, self.n
        k, h, w = self.shape(score)
        self.require(k == o.classes, f"score has {k} channels, expected {o.classes}")
        self.require((h, w) == (o.height, o.width), f"score is {h}x{w}, expected the input size")
        if self.deploy:
            n.prob = L.Softmax(score)
            return n.prob
        loss_param = dict(ignore_label=o.ignore_label, normalization=P.Loss.VALID)
        source = weights_source(o)
        if source:
            n.loss = L.InfogainLoss(score, label, infogain_loss_param=dict(source=source), loss_param=loss_param)
        else:
            n.loss = L.SoftmaxWithLoss(score, label, loss_param=loss_param)
        n.accuracy, n.per_class_accuracy = L.Accuracy(
            score, label, ntop=2, accuracy_param=dict(ignore_label=o.ignore_label)
        )
        return n.loss

    def to_proto(self, name: str):
        net = self.n.to_proto()
        if self.opts.dropout and self.opts.mc_dropout and not self.train:
            # Bayesian SegNet's Monte Carlo dropout: every Dropout samples at test (caffe-segnet's
            # sample_weights_test), as the Python layer layers.mc_dropout.MCDropout
            net = sampling_net_param(net)
        net.name = name
        return net


VGG16 = ((1, (64, 64)), (2, (128, 128)), (3, (256, 256, 256)), (4, (512, 512, 512)), (5, (512, 512, 512)))


def vgg16_encoder(b: NetBuilder, bottom, mask: bool = False, pad1: int = 1, pools: dict | None = None,
                  dilation5: int = 1, drop_pools: tuple[int, ...] = ()) -> dict:
    """VGG16's 13 convolutions (3x3, pad 1; conv1_1 may have FCN's pad 100) with BatchNorm and ReLU, and
    pool1..pool5 (MAX 2x2 stride 2 unless `pools[i]` gives other pooling arguments). Layer names are VGG16's,
    so ImageNet weights load by name. `drop_pools`: stages whose pooled output gets Dropout (`encdropN`) when
    the dropout option is on. Returns every top by name (`conv1_2`, `pool1`, `pool1_mask`, ...); `poolN` is
    the pooling layer's own top (the key of `b.pooled_from`), `poolN_out` what the next stage reads."""
    tops = {}
    x = bottom
    for stage, widths in VGG16:
        for i, width in enumerate(widths, 1):
            name = f"conv{stage}_{i}"
            pad = pad1 if name == "conv1_1" else (dilation5 if stage == 5 else 1)
            x = tops[name] = b.conv(name, x, width, 3, pad=pad, dilation=dilation5 if stage == 5 else 1)
        kwargs = dict((pools or {}).get(stage, {}))
        x = tops[f"pool{stage}"] = b.pool(f"pool{stage}", x, mask=mask, **kwargs)
        if mask:
            tops[f"pool{stage}_mask"] = b.n[f"pool{stage}_mask"]
        if stage in drop_pools:
            x = b.dropout(f"encdrop{stage}", x)
        tops[f"pool{stage}_out"] = x
    return tops
