"""DeconvNet (Noh et al.; HyeonwooNoh/DeconvNet DeconvNet_inference_deploy.prototxt, docs/paper.md §8.2).

VGG16 encoder with BatchNorm and masked pooling; fc6 = 7x7 conv, fc7 = 1x1 conv (1024 wide as the SegNet
benchmark restricted them, docs/paper.md §2.2; `fc_dim=4096` for the original's 251.8 M parameters);
`fc6-deconv` a 7x7 Deconvolution back to 512 maps; then unpool5..unpool1 (index unpooling, layers.upsample)
each followed by 3x3 Deconvolutions (pad 1) with BatchNorm and ReLU; `seg-score` 1x1 to K.

UNCONFIRMED how fc6 was handled at 360x480 (docs/paper.md §8.2, §9.12). Chosen: exactly the original
operations, applied fully convolutionally: fc6 is a *valid* 7x7 convolution (pool5 12x15 -> 6x9) and
fc6-deconv the valid 7x7 Deconvolution that inverts its geometry (6x9 -> 12x15), so every unpooling gets its
pooled size back (derived sizes 23x30, 45x60, 90x120, 180x240, 360x480; the original wrote `unpool_size` by
hand). This needs pool5 >= 7x7, i.e. inputs of at least 193x193; the generator says so for smaller ones.
Weights msra-filled (the original used gaussian std 0.01; msra as every other net here).
Dropout (option): after fc6 and fc7, VGG16's placement (the original has none).
"""

from __future__ import annotations

from .blocks import NetBuilder, vgg16_encoder

# Decoder stage s after unpool{s}: Deconvolution widths, as the original (the last of a stage narrows).
DECONV_DECODER = (
    (5, (512, 512, 512)),
    (4, (512, 512, 256)),
    (3, (256, 256, 128)),
    (2, (128, 64)),
    (1, (64, 64)),
)
FC_KERNEL = 7


def deconvnet(b: NetBuilder):
    data, label = b.inputs()
    fc_dim = b.opts.fc_dim or 1024
    enc = vgg16_encoder(b, data, mask=True)
    _, h5, w5 = b.shape(enc["pool5"])
    b.require(min(h5, w5) >= FC_KERNEL,
              f"pool5 is {h5}x{w5} but DeconvNet's valid 7x7 fc6 needs at least 7x7 (inputs >= 193x193)")
    x = b.conv("fc6", enc["pool5_out"], fc_dim, FC_KERNEL)
    x = b.dropout("drop6", x)
    x = b.conv("fc7", x, fc_dim, 1)
    x = b.dropout("drop7", x)
    x = b.deconv("fc6-deconv", x, 512, FC_KERNEL, bias=None, bn=True, relu=True)
    for stage, widths in DECONV_DECODER:
        x = b.unpool(f"unpool{stage}", x, enc[f"pool{stage}"], enc[f"pool{stage}_mask"])
        for i, width in enumerate(widths, 1):
            x = b.deconv(f"deconv{stage}_{i}", x, width, 3, pad=1, bias=None, bn=True, relu=True)
    score = b.conv("seg-score", x, b.opts.classes, 1, bn=False, relu=False, bias=True)
    return b.head(score, label)
