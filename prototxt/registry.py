"""ARCH name -> generator, defaults, the paper's parameter count, and the interpretations written into the
header of every generated file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from caffe.proto import caffe_pb2

from segnet_bvlc.core import paper

from . import deconvnet, deeplab, fcn, protocol, segnet
from .blocks import NetBuilder
from .options import CAMVID_CLASSES, Options, OptionsError, validate

TABLE1_NOTES = [
    "Paper Table 1 protocol: SGD lr 0.1, momentum 0.9, batch 12, median-frequency class weights (the published "
    "SegNet-Tutorial values by default) through InfogainLoss with H = diag(w), ignore label 11, loss / valid pixels.",
    "Encoder (all Table 1 variants): LRN (local contrast normalisation: size 5, alpha 1e-4, beta 0.75), "
    "4 x [7x7 conv 64 pad 3, BatchNorm+Scale, ReLU, 2x2 max pool]; msra init (paper §3.2).",
    "Biases: the paper's 'no biases are used after convolutions' read as no bias where BatchNorm follows "
    "(--biases public restores SegNet-Tutorial's biases); classifiers keep theirs.",
]
BENCHMARK_NOTES = [
    "Paper §4 benchmark protocol: SGD lr 1e-3, momentum 0.9, batch 5, no class balancing (Table 3), "
    "BatchNorm after every convolution; ImageNet VGG16 weights load by layer name.",
]
UNPOOL_NOTE = ("Unpooling sizes are derived from the pool chain at generation time (ceil pooling) and written as "
               "explicit upsample_h/upsample_w for every unpooling layer (SegNet-Tutorial writes 23x30 and 45x60).")


@dataclass(frozen=True)
class Arch:
    name: str
    title: str
    build: Callable[[NetBuilder], object]
    biases: str  # the default: paper | public
    paper_source: str  # where the paper's parameter count comes from
    notes: list[str] = field(default_factory=list)

    @property
    def protocol(self) -> str:
        """table1 | benchmark: the training protocol it follows (prototxt/protocol.py says which)."""
        return protocol.ARCH_PROTOCOL[self.name]

    @property
    def paper_params(self) -> float | None:
        """The published parameter count (data/paper.json; None: no published figure for this setting)."""
        return paper.params(self.name)


FCN_LR_NOTE = (f"DEVIATION: lr {protocol.FCN_BASIC_LR:g}, not the paper's 0.1, at which this reading diverges "
               "(prototxt/protocol.py, docs/paper.md §9.4); --lr 0.1 restores it.")

ARCH_LIST = [
    Arch("segnet", "SegNet", segnet.segnet, "public",
         "docs/paper.md §5: 29.43 M derived from SegNet-Tutorial, Table 6 117 MB",
         BENCHMARK_NOTES[:1] + [
             "SegNet-Tutorial segnet_train.prototxt: VGG16 encoder and mirrored decoder, 3x3 convs, BatchNorm+Scale "
             "and ReLU after every conv but conv1_1_D; layer names as SegNet-Tutorial.",
             "Class weights default to none, as Table 3 trained it (Table 2 repeats that SegNet row); "
             "SegNet-Tutorial's segnet_train.prototxt has the published MFB weights: --class-weights published.",
             UNPOOL_NOTE,
             "Dropout (--dropout): Bayesian SegNet's 6 layers, after pool3-5 and conv5_1_D, conv4_1_D, conv3_1_D.",
         ]),
    Arch("segnet-basic", "SegNet-Basic", segnet.segnet_basic, "paper",
         "paper Table 1", TABLE1_NOTES + [
             "Decoder: 4 x [index unpooling, 7x7 conv 64, BatchNorm+Scale, no ReLU], then conv_classifier 1x1 to K; "
             "layer names as SegNet-Tutorial segnet_basic_train.prototxt.",
             UNPOOL_NOTE,
             "Dropout (--dropout): Bayesian SegNet-Basic's, after pool3, pool4, conv_decode4, conv_decode3.",
         ]),
    Arch("segnet-basic-single-channel-decoder", "SegNet-Basic-SingleChannelDecoder",
         segnet.segnet_basic_single_channel_decoder, "paper", "paper Table 1",
         TABLE1_NOTES + ["Decoder filters are single-channel (depthwise: group 64), otherwise SegNet-Basic.",
                         UNPOOL_NOTE]),
    Arch("segnet-basic-encoder-addition", "SegNet-Basic-EncoderAddition",
         segnet.segnet_basic_encoder_addition, "paper", "paper Table 1",
         TABLE1_NOTES + [
             "UNCONFIRMED which encoder map is added: decoder k's BatchNorm output (encoder k's pre-pool size) gets "
             "encoder k-1's pooled output added (Eltwise SUM) for k = 4, 3, 2; decoder 1 adds nothing (storage "
             "multiplier 64 = the 64 maps at 180x240).",
             UNPOOL_NOTE]),
    Arch("bilinear-interpolation", "Bilinear-Interpolation", segnet.bilinear_interpolation,
         "paper", "paper Table 1", TABLE1_NOTES + [
             "UNCONFIRMED decoder: fixed bilinear x2 upsampling (channel-wise Deconvolution 4x4 s2 p1, BVLC bilinear "
             "filler, lr 0, cropped by coord_map to the encoder's pre-pool size) followed by SingleChannelDecoder's "
             "depthwise 7x7 conv + BatchNorm; chosen because it reproduces the paper's 0.625 M (= SingleChannelDecoder)."]),
    Arch("fcn-basic", "FCN-Basic", segnet.fcn_basic, "paper", "paper Table 1",
         TABLE1_NOTES + [
             "Decoder: score_pool4 (1x1 64->K) then 4 x learnt Deconvolution K->K 8x8 stride 2 pad 3 (bilinear init, "
             "made channel-diagonal by prototxt.surgery.bilinear_surgery before training), each cropped (coord_map) "
             "and summed with the 1x1-reduced pool3, pool2, pool1; the last one (to full size) adds nothing.",
             "UNCONFIRMED stride/pad and last decoder: chosen as above (paper's 0.65 M reproduced); no BatchNorm "
             "after the reductions or deconvolutions.",
             FCN_LR_NOTE]),
    Arch("fcn-basic-no-addition", "FCN-Basic-NoAddition", segnet.fcn_basic_no_addition, "paper", "paper Table 1", TABLE1_NOTES + [
             "FCN-Basic without the additions: score_pool4 then 4 learnt 8x8 stride-2 K->K Deconvolutions "
             "(bilinear init + surgery), each cropped to the encoder map size only.", FCN_LR_NOTE]),
    Arch("fcn-basic-no-dim-reduction", "FCN-Basic-NoDimReduction", segnet.fcn_basic_no_dim_reduction,
         "paper", "paper Table 1", TABLE1_NOTES + [
             "No 1x1 reductions: 4 learnt 8x8 stride-2 Deconvolutions 64->64 (bilinear init + surgery) with pool3, "
             "pool2, pool1 added in full, then conv_classifier 1x1 64->K.",
             "Parameter count 1.661 M is 2.2 % above the paper's 1.625 M; no reading of docs/paper.md §1.1 gets "
             "closer (4 x 8x8x64x64 = 1.049 M of deconvolutions alone; the paper apparently rounded them to 1.0 M).",
             FCN_LR_NOTE]),
    Arch("fcn-basic-no-addition-no-dim-reduction", "FCN-Basic-NoAddition-NoDimReduction",
         segnet.fcn_basic_no_addition_no_dim_reduction, "paper", "paper Table 1",
         TABLE1_NOTES + [
             "Neither reductions nor additions: 4 learnt 8x8 stride-2 Deconvolutions 64->64 (bilinear init + "
             "surgery), then conv_classifier 1x1 64->K.",
             "Parameter count 1.661 M is 2.2 % above the paper's 1.625 M (see fcn-basic-no-dim-reduction).",
             FCN_LR_NOTE]),
    Arch("fcn", "FCN (FCN-8s, fixed bilinear)", fcn.fcn, "public",
         "FCN paper Table 1 (FCN-VGG16 134 M), SegNet paper §2", BENCHMARK_NOTES + [
             "FCN-8s (voc-fcn8s/net.py): conv1_1 pad 100, fc6 7x7 4096, fc7 1x1 4096, score_fr, score_pool4, "
             "score_pool3; crops from caffe.coord_map. UNCONFIRMED that the paper's FCN is FCN-8s.",
             "Fixed upsampling: upscore2, upscore_pool4 (4x4 s2) and upscore8 (16x16 s8) Deconvolutions with the BVLC "
             "bilinear filler, lr 0, group K (channel-wise, what fcn's diagonal surgery.interp kernels compute).",
             "BatchNorm after the 15 VGG/fc convs, not after score or deconvolution layers; staged FCN-8s (no "
             "at-once pool scaling); dropout (--dropout) after fc6 and fc7."]),
    Arch("fcn-learnt-deconv", "FCN (learnt deconv)", fcn.fcn_learnt_deconv, "public",
         "FCN paper Table 1 (FCN-VGG16 134 M), SegNet paper §2", BENCHMARK_NOTES + [
             "As fcn, but the three Deconvolutions are full K->K, learnt (lr 1), initialised bilinear; "
             "prototxt.surgery.bilinear_surgery zeroes their off-diagonal kernels before training (fcn surgery.interp)."]),
    Arch("deconvnet", "DeconvNet", deconvnet.deconvnet, "public",
         "no published count for fc 1024 (Table 6's 877 MB fits neither width); 252 M with --fc-dim 4096",
         BENCHMARK_NOTES + [
             "fc6/fc7 1024 wide as the SegNet benchmark (--fc-dim 4096: the original, 252 M parameters).",
             "UNCONFIRMED fc6 at 360x480: a valid 7x7 conv (pool5 12x15 -> 6x9) and fc6-deconv the valid 7x7 "
             "Deconvolution back to 12x15; inputs must be >= 193x193.",
             "Decoder: unpool5..unpool1 (index unpooling, layers.upsample) + 3x3 Deconvolutions pad 1 with "
             "BatchNorm+Scale and ReLU, seg-score 1x1 to K; msra init (the original: gaussian 0.01).",
             UNPOOL_NOTE]),
    Arch("deeplab-largefov", "DeepLab-LargeFOV", deeplab.deeplab_largefov, "public",
         "DeepLab paper Table 2 (20.5 M)", BENCHMARK_NOTES + [
             "pool1-3 3x3 s2 p1 with round_mode FLOOR (the paper's 45x60 at 360x480; ceil would give 46x61), "
             "pool4-5 3x3 s1 p1, conv5 dilation 2, fc6 3x3 dilation 12 1024, fc7 1x1 1024, fc8 1x1 K.",
             "UNCONFIRMED 'max pooling 3 stride to 1': read as DeepLab's own stride-1 pool4/pool5 (output stride 8).",
             "Full-resolution loss and prob: fc8 upsampled x8 by a fixed channel-wise bilinear Deconvolution (16x16 "
             "s8 p4, lr 0) and cropped to the input at offset 0 (pixel-centre resize convention; coord_map cannot "
             "express the half-pixel grid of 3x3 pad-1 pooling). DeepLab itself trained on labels subsampled by 8."]),
]
ARCH_BY_NAME = {a.name: a for a in ARCH_LIST}
ARCHS = [a.name for a in ARCH_LIST]


def get(arch: str) -> Arch:
    if arch not in ARCH_BY_NAME:
        raise OptionsError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    return ARCH_BY_NAME[arch]


def resolve(arch: str, opts: Options) -> Options:
    """Fill the architecture-dependent defaults and validate; returns a new Options."""
    a = get(arch)
    o = opts.replace()
    if o.protocol is None:
        o.protocol = a.protocol
    defaults = protocol.settings(arch, "paper", o.protocol)
    if o.batch is None:
        o.batch = defaults["batch"] if o.split == "train" else 1
    if o.class_weights is None:
        # The published/recomputed matrices are CamVid's 11 classes; other class counts default to none.
        o.class_weights = defaults["class_weights"] if o.classes == CAMVID_CLASSES else "none"
    if o.biases is None:
        o.biases = a.biases
    if o.ignore_label is None:
        o.ignore_label = o.classes
    if arch == "deconvnet" and o.fc_dim is None:
        o.fc_dim = 1024
    if o.fc_dim is not None and arch != "deconvnet":
        raise OptionsError(f"--fc-dim applies to deconvnet only, not {arch}")
    validate(o)
    return o


def build_net(arch: str, opts: Options | None = None) -> caffe_pb2.NetParameter:
    """The NetParameter of `arch` for `opts` (split train|test|deploy)."""
    o = resolve(arch, opts or Options())
    b = NetBuilder(arch, o)
    get(arch).build(b)
    return b.to_proto(arch)
