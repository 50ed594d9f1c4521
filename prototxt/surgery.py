"""Net surgery for learnt bilinear Deconvolutions (fcn.berkeleyvision.org surgery.interp).

BVLC's "bilinear" weight filler writes the bilinear kernel into every (input, output) channel pair of a
Deconvolution. Fixed upsamplers here use group = C, where that is exactly channel-wise interpolation. The
learnt ones (fcn-learnt-deconv, the FCN-Basic family) keep full C x C kernels, as the paper's parameter
counts require; before training, `bilinear_surgery` turns them into the diagonal bilinear initialisation of
the FCN reference: kernel on (c, c), zero elsewhere. For kernels wider than 2 x stride (FCN-Basic's 8x8 at
stride 2) the kernel is also scaled to unit gain (each output pixel's weights sum to 1), so that
initialisation interpolates instead of amplifying by (k / 2s)^2 per stage (an interpretation: the paper only
says "initialised with bilinear weights").
"""

from __future__ import annotations

import numpy as np

from .params import _load


def bilinear_kernel(size: int) -> np.ndarray:
    """fcn's upsample_filt (= BVLC's bilinear filler): a size x size 2-D bilinear kernel."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def learnt_bilinear_layers(net_param) -> list[tuple[str, int, int]]:
    """(name, kernel, stride) of every Deconvolution with the bilinear filler, group 1 and a non-zero lr."""
    out = []
    for layer in _load(net_param).layer:
        cp = layer.convolution_param
        if layer.type != "Deconvolution" or cp.weight_filler.type != "bilinear" or cp.group > 1:
            continue
        if layer.param and all(p.lr_mult == 0 for p in layer.param):
            continue
        out.append((layer.name, cp.kernel_size[0], cp.stride[0] if cp.stride else 1))
    return out


def bilinear_surgery(net, net_param) -> list[str]:
    """Set the learnt bilinear Deconvolutions of `net` (a caffe.Net built from `net_param`, a NetParameter
    or prototxt path) to diagonal bilinear kernels; returns the layer names changed. Call it on a fresh
    solver's net before step 0, never on trained weights."""
    names = []
    for name, size, stride in learnt_bilinear_layers(net_param):
        weights = net.params[name][0].data
        cin, cout, kh, kw = weights.shape
        if cin != cout or kh != kw:
            raise ValueError(f"{name}: bilinear surgery needs a square C -> C kernel, got {weights.shape}")
        kernel = bilinear_kernel(kh)
        gain = ((kh + 1) // 2 / stride) ** 2  # sum of the kernel taps that land on one output pixel
        weights[...] = 0
        weights[range(cin), range(cout)] = kernel / gain
        names.append(name)
    return names

