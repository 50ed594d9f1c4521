"""FCN-8s on VGG16 (fcn.berkeleyvision.org voc-fcn8s, docs/paper.md §8.1) as the SegNet benchmark ran it.

- conv1_1 pad 100; fc6 = 7x7 conv 4096 (pad 0), fc7 = 1x1 conv 4096; score_fr 1x1 K; skip scores on pool4 and
  pool3; upscore2 (x2), upscore_pool4 (x2), upscore8 (x8) Deconvolutions with bilinear kernels (4, 4, 16);
  every crop offset from caffe.coord_map (5, 9 and 31 at any input size, as the reference).
- The SegNet benchmark changes (docs/paper.md §2.2): BatchNorm after every convolution of VGG16 and fc6/fc7
  (not after the score layers or the deconvolutions, which are linear classifiers/interpolators); dropout
  0.5 after fc6 and fc7 (the reference's placement) when the dropout option is on. Staged FCN-8s, not the
  "at-once" variant: its fixed pool3/pool4 scalings exist to balance un-normalised features, which BatchNorm
  already does. UNCONFIRMED whether the paper's "FCN" is FCN-8s (docs/paper.md §9.13); it describes "three
  decoders".
- `fcn`: fixed bilinear upsampling (lr_mult 0), channel-wise (group K, BVLC "bilinear" filler), computing
  exactly what the reference's diagonal K x K kernels compute. `fcn-learnt-deconv`: full K x K kernels,
  learnt (lr_mult 1), initialised bilinear and made diagonal by `prototxt.surgery.bilinear_surgery`.
"""

from __future__ import annotations

from .blocks import NetBuilder, vgg16_encoder


def fcn8s(b: NetBuilder, learn_deconv: bool):
    data, label = b.inputs()
    k = b.opts.classes
    enc = vgg16_encoder(b, data, pad1=100)
    x = b.conv("fc6", enc["pool5_out"], 4096, 7)
    x = b.dropout("drop6", x)
    x = b.conv("fc7", x, 4096, 1)
    x = b.dropout("drop7", x)
    x = b.conv("score_fr", x, k, 1, bn=False, relu=False, bias=True)

    up = b.bilinear("upscore2", x, 2, pad=0, learn=learn_deconv)
    skip = b.conv("score_pool4", enc["pool4_out"], k, 1, bn=False, relu=False, bias=True)
    skip = b.crop("score_pool4c", skip, up)
    x = b.add("fuse_pool4", up, skip)

    up = b.bilinear("upscore_pool4", x, 2, pad=0, learn=learn_deconv)
    skip = b.conv("score_pool3", enc["pool3_out"], k, 1, bn=False, relu=False, bias=True)
    skip = b.crop("score_pool3c", skip, up)
    x = b.add("fuse_pool3", up, skip)

    up = b.bilinear("upscore8", x, 8, pad=0, learn=learn_deconv)
    return b.head(b.crop("score", up, data), label)


def fcn(b):
    return fcn8s(b, learn_deconv=False)


def fcn_learnt_deconv(b):
    return fcn8s(b, learn_deconv=True)
