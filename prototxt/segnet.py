"""SegNet (VGG16 encoder-decoder), SegNet-Basic and the paper's Table 1 decoder variants.

Sources: docs/paper.md §1.1 (variant definitions), §7.1/§7.2 (SegNet-Tutorial's segnet_basic_train.prototxt
and segnet_train.prototxt: names, sizes, fillers), §7.3 (Bayesian SegNet dropout placement) and §9 (the
unconfirmed details and their readings).
Every UNCONFIRMED detail is decided in one place below, with the reason; the choice is the reading that
reproduces the paper's Table 1 parameter count (checked by tests/test_prototxt.py, see NOTES).
"""

from __future__ import annotations

from .blocks import NetBuilder, vgg16_encoder

# --------------------------------------------------------------------------------------------- SegNet
# Decoder stage s: (layer names, widths), mirroring the encoder; the last layer of each stage narrows to
# the next stage's width (SegNet-Tutorial: conv4_1_D 256, conv3_1_D 128, conv2_1_D 64, conv1_1_D K).
SEGNET_DECODER = (
    (5, (512, 512, 512)),
    (4, (512, 512, 256)),
    (3, (256, 256, 128)),
    (2, (128, 64)),
    (1, (64, None)),  # None: the class count
)


def segnet(b: NetBuilder):
    data, label = b.inputs()
    # Bayesian SegNet's dropout: after pool3, pool4, pool5 and after conv5_1_D, conv4_1_D, conv3_1_D
    # (docs/paper.md §7.3).
    enc = vgg16_encoder(b, data, mask=True, drop_pools=(3, 4, 5))
    x = enc["pool5_out"]
    for stage, widths in SEGNET_DECODER:
        # upsample5 restores conv5_3's 23x30 and upsample4 conv4_3's 45x60 at 360x480
        # (derived, docs/paper.md §7.2).
        x = b.unpool(f"upsample{stage}", x, enc[f"pool{stage}"], enc[f"pool{stage}_mask"])
        for i, width in zip(range(len(widths), 0, -1), widths):
            name = f"conv{stage}_{i}_D"
            if width is None:  # conv1_1_D: the classifier, no BatchNorm or ReLU after it
                x = b.conv(name, x, b.opts.classes, 3, pad=1, bn=False, relu=False, bias=True)
            else:
                x = b.conv(name, x, width, 3, pad=1)  # SegNet's decoder has ReLUs, unlike SegNet-Basic
        if stage in (5, 4, 3):
            x = b.dropout(f"decdrop{stage}", x)
    return b.head(x, label)


# ---------------------------------------------------------------------------------- SegNet-Basic family
BASIC_WIDTH = 64  # every encoder and decoder layer of SegNet-Basic has 64 feature maps (paper §3.3)
BASIC_KERNEL = 7  # "constant 7x7 kernels" in every encoder and decoder layer (paper §3.1)


def basic_encoder(b: NetBuilder, data, mask: bool):
    """SegNet-Basic's encoder, shared by all Table 1 variants: LRN ("local contrast normalisation") then
    4 x [7x7 conv 64 (pad 3), BN, ReLU, 2x2 max pool]; Bayesian SegNet-Basic's dropout after pool3, pool4."""
    x = b.lrn("norm", data)
    tops = {}
    for i in range(1, 5):
        x = tops[f"conv{i}"] = b.conv(f"conv{i}", x, BASIC_WIDTH, BASIC_KERNEL, pad=BASIC_KERNEL // 2)
        x = tops[f"pool{i}"] = b.pool(f"pool{i}", x, mask=mask)
        if mask:
            tops[f"pool{i}_mask"] = b.n[f"pool{i}_mask"]
        if i in (3, 4):
            x = b.dropout(f"encdrop{i}", x)
        tops[f"pool{i}_out"] = x
    return tops


def basic_classifier(b: NetBuilder, x):
    """`conv_classifier`: 1x1 to K, no BatchNorm. It keeps its bias even with biases=paper: nothing after it
    could absorb one (the paper's "no biases" is read as: none where BatchNorm follows)."""
    return b.conv("conv_classifier", x, b.opts.classes, 1, bn=False, relu=False, bias=True)


def segnet_basic_like(b: NetBuilder, depthwise: bool = False, encoder_addition: bool = False,
                      bilinear: bool = False):
    """SegNet-Basic and the variants that keep its decoder convolutions.

    Decoder k (k = 4..1): upsample -> 7x7 conv 64 -> BN, no ReLU (docs/paper.md §1.1).
    - depthwise (SingleChannelDecoder): each decoder filter sees only its own upsampled map: group = 64.
    - encoder_addition: decoder k's output (at encoder k's pre-pool size) gets the pooled output of encoder
      k-1 (the same size, 64 maps) added, for k = 4, 3, 2; decoder 1 adds nothing (there is no pooled map at
      full size). UNCONFIRMED which tensor (docs/paper.md §9.2); this reading adds "the max-pooled output of
      the corresponding encoder" (Fig. 3 caption) and stores 64 maps at 180x240 at most, the paper's storage
      multiplier 64 (docs/paper.md §1.2). Parameters are unchanged (1.425 M).
    - bilinear (Bilinear-Interpolation): the index unpooling is replaced by fixed bilinear x2 upsampling (a
      channel-wise Deconvolution 4x4 stride 2 pad 1, lr 0, cropped to the encoder's pre-pool size) and the
      decoder filters are single-channel. UNCONFIRMED what follows the upsampling (docs/paper.md §9.3); this
      is the reading that gives the paper's 0.625 M, equal to SingleChannelDecoder's, and storage 0 (no
      indices).
    """
    data, label = b.inputs()
    enc = basic_encoder(b, data, mask=not bilinear)
    x = enc["pool4_out"]
    for k in range(4, 0, -1):
        if bilinear:
            up = b.bilinear(f"upsample{k}", x, 2)
            x = b.crop(f"upsample{k}_crop", up, enc[f"conv{k}"])
        else:
            x = b.unpool(f"upsample{k}", x, enc[f"pool{k}"], enc[f"pool{k}_mask"])
        group = BASIC_WIDTH if (depthwise or bilinear) else 1
        x = b.conv(f"conv_decode{k}", x, BASIC_WIDTH, BASIC_KERNEL, pad=BASIC_KERNEL // 2, group=group,
                   relu=False)
        if encoder_addition and k > 1:
            x = b.add(f"conv_decode{k}_add", x, enc[f"pool{k - 1}_out"])
        if k in (4, 3):
            x = b.dropout(f"decdrop{k}", x)
    return b.head(basic_classifier(b, x), label)


def segnet_basic(b):
    return segnet_basic_like(b)


def segnet_basic_single_channel_decoder(b):
    return segnet_basic_like(b, depthwise=True)


def segnet_basic_encoder_addition(b):
    return segnet_basic_like(b, encoder_addition=True)


def bilinear_interpolation(b):
    return segnet_basic_like(b, bilinear=True)


# ------------------------------------------------------------------------------------ FCN-Basic family
FCN_BASIC_KERNEL = 8  # "inverse convolution (deconvolution) with an 8x8 kernel" (docs/paper.md §1.1)


def fcn_basic_like(b: NetBuilder, addition: bool = True, dim_reduction: bool = True):
    """FCN-Basic and its three ablations (docs/paper.md §1.1): SegNet-Basic's encoder, then 4 decoders that
    each upsample x2 by a learnt Deconvolution (8x8, stride 2, pad 3: exactly twice the size; bilinear
    initialisation, group 1 so the count is the paper's; `prototxt.surgery.bilinear_surgery` makes it
    channel-diagonal) and, with `addition`, add the encoder's pooled map of the same size; no trainable
    filters after upsampling.

    - dim_reduction: every encoder map used is first compressed to K channels by a trainable 1x1 conv
      (`score_poolN`, with bias: no BatchNorm follows), so the deconvolutions are K -> K and the decoder
      output is the K-class score. Without it everything stays at 64 channels and a 1x1 `conv_classifier`
      maps the last decoder's 64 maps to K.
    - UNCONFIRMED stride/pad and the last decoder (docs/paper.md §9.4): stride 2 with pad 3 (so 23x30 -> 46x60
      is cropped to 45x60 by coord_map, offset 0); the added maps are pool3, pool2, pool1 (the storage
      multiplier is based on the 180x240 first-layer map, docs/paper.md §1.2), and the last decoder (to full
      size) adds nothing.
    - No BatchNorm after the 1x1 reductions or the deconvolutions (as FCN: BN follows the encoder convs).
    """
    data, label = b.inputs()
    enc = basic_encoder(b, data, mask=False)
    k_classes = b.opts.classes

    def reduce(i):
        top = enc[f"pool{i}_out"]
        if not dim_reduction:
            return top
        return b.conv(f"score_pool{i}", top, k_classes, 1, bn=False, relu=False, bias=True)

    x = reduce(4)
    for k in range(4, 0, -1):
        channels = b.shape(x)[0]
        up = b.bilinear(f"upscore{k}", x, 2, ks=FCN_BASIC_KERNEL, pad=3, learn=True)
        if k == 1:
            x = b.crop("score" if dim_reduction else "upscore1_crop", up, data)
            break
        if addition:
            skip = reduce(k - 1)
            assert b.shape(skip)[0] == channels
            x = b.crop(f"upscore{k}_crop", up, skip)
            x = b.add(f"fuse_pool{k - 1}", x, skip)
        else:
            # The crop only takes the size of the encoder's map; nothing of it is added.
            x = b.crop(f"upscore{k}_crop", up, enc[f"pool{k - 1}"])
    if not dim_reduction:
        x = basic_classifier(b, x)
    return b.head(x, label)


def fcn_basic(b):
    return fcn_basic_like(b)


def fcn_basic_no_addition(b):
    return fcn_basic_like(b, addition=False)


def fcn_basic_no_dim_reduction(b):
    return fcn_basic_like(b, dim_reduction=False)


def fcn_basic_no_addition_no_dim_reduction(b):
    return fcn_basic_like(b, addition=False, dim_reduction=False)
