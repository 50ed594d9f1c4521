"""DeepLab-LargeFOV (Chen et al., ICLR 2015; docs/paper.md §8.3) as the SegNet benchmark ran it.

VGG16 with pool1-3 3x3 stride 2 pad 1 and pool4-5 3x3 stride 1 pad 1 (DeepLab's public prototxt), conv5_x
dilation 2, fc6 3x3 dilation 12 (pad 12) 1024, fc7 1x1 1024, fc8 1x1 K: output stride 8. BatchNorm after
every convolution except fc8 (docs/paper.md §2.2); dropout 0.5 after fc6 and fc7 (DeepLab's placement) with
the option.

- UNCONFIRMED "max pooling 3 stride to 1" (docs/paper.md §2.2, §9.11): read as DeepLab's own stride-1 3x3
  pool4/pool5. The paper's 45x60 output at 360x480 needs floor rounding in pool1-3 (`round_mode: FLOOR`):
  Caffe's default ceil gives 46x61 (DeepLab's 8k+1 input sizes make the two roundings agree, so this is
  DeepLab's geometry).
- Upsampling: DeepLab trains on GT subsampled by 8 and interpolates x8 only at test time (docs/paper.md §8.3).
  Here, so that the loss and the deploy `prob` are at full resolution like every other net of the benchmark,
  fc8 is upsampled x8 by a fixed bilinear Deconvolution (`upscore`, kernel 16, stride 8, pad 4, channel-wise,
  lr 0: exactly 8x the size, i.e. an ordinary bilinear image resize of the 45x60 scores) and `score` crops it
  to the input (offset 0; a no-op when H and W are multiples of 8). That crop is the one offset not computed
  by caffe.coord_map: with 3x3 pad-1 pooling the stride-8 grid sits at input pixels 8j, and no even bilinear
  kernel maps it onto whole pixels (coord_map reports a 3.5-pixel shift it cannot crop); offset 0 keeps the
  resize convention (pixel centres, as cv2.resize), which is what a bilinear x8 upsampling means.
"""

from __future__ import annotations

from caffe import layers as L

from .blocks import NetBuilder, vgg16_encoder

POOLS = {
    1: dict(ks=3, stride=2, pad=1, floor=True),
    2: dict(ks=3, stride=2, pad=1, floor=True),
    3: dict(ks=3, stride=2, pad=1, floor=True),
    4: dict(ks=3, stride=1, pad=1),
    5: dict(ks=3, stride=1, pad=1),
}
FC_DIM = 1024


def deeplab_largefov(b: NetBuilder):
    data, label = b.inputs()
    enc = vgg16_encoder(b, data, pools=POOLS, dilation5=2)
    x = b.conv("fc6", enc["pool5_out"], FC_DIM, 3, pad=12, dilation=12)
    x = b.dropout("drop6", x)
    x = b.conv("fc7", x, FC_DIM, 1)
    x = b.dropout("drop7", x)
    x = b.conv("fc8", x, b.opts.classes, 1, bn=False, relu=False, bias=True)
    up = b.bilinear("upscore", x, 8)
    k, h, w = b.shape(up)
    b.require(h >= b.opts.height and w >= b.opts.width, f"upscore is {h}x{w}, smaller than the input")
    b.n.score = L.Crop(up, data, crop_param=dict(axis=2, offset=[0, 0]))
    b.shapes[b.n.score] = (k, b.opts.height, b.opts.width)
    return b.head(b.n.score, label)
