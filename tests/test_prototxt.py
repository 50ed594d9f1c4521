"""The prototxt generators on real BVLC Caffe: every deploy net at 360x480, every train net forward and
backward at a small size, parameter counts against the paper, SegNet-Tutorial's layer names, the committed
files, the CLI's argument checks, and the loss and bilinear kernels against independent NumPy references."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from prototxt import ARCHS, Options, bilinear_surgery, build_net, build_solver, count_params
from prototxt.__main__ import main
from prototxt.output import write_all
from prototxt.surgery import bilinear_kernel
from segnet_bvlc.core import paper
from segnet_bvlc.dataset.camvid import PUBLISHED_WEIGHTS
from tests.conftest import ROOT, net_from_spec

EXPECTED_ARCHS = [
    "segnet", "segnet-basic", "segnet-basic-single-channel-decoder", "segnet-basic-encoder-addition",
    "bilinear-interpolation", "fcn-basic", "fcn-basic-no-addition", "fcn-basic-no-dim-reduction",
    "fcn-basic-no-addition-no-dim-reduction", "fcn", "fcn-learnt-deconv", "deconvnet", "deeplab-largefov",
]
# The paper's counts (docs/paper.md §1, §5). FCN-Basic-NoDimReduction's 1.625 M is 2.2 % below the
# 4 x 8x8x64x64 deconvolutions + encoder any reading of docs/paper.md §1.1 has (1.661 M, §1.4): the paper
# rounded the 1.049 M of deconvolutions to 1.0 M. Those two get 2.5 %, everything else 2 %.
# The published counts, from the one copy of the paper's numbers (data/paper.json): the generators' nets are
# counted here by walking their blobs (count_params), not by the registry that carries the figure.
PAPER_PARAMS = {arch: paper.params(arch) for arch in ARCHS if paper.params(arch) is not None}
TOLERANCE = {"fcn-basic-no-dim-reduction": 0.025, "fcn-basic-no-addition-no-dim-reduction": 0.025}

# SegNet-Tutorial Models/segnet_train.prototxt and segnet_basic_train.prototxt (docs/paper.md §7.1, §7.2).
SEGNET_TUTORIAL = {
    "Convolution": [
        "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
        "conv4_3", "conv5_1", "conv5_2", "conv5_3", "conv5_3_D", "conv5_2_D", "conv5_1_D", "conv4_3_D",
        "conv4_2_D", "conv4_1_D", "conv3_3_D", "conv3_2_D", "conv3_1_D", "conv2_2_D", "conv2_1_D", "conv1_2_D",
        "conv1_1_D",
    ],
    "Pooling": ["pool1", "pool2", "pool3", "pool4", "pool5"],
    "Upsample": ["upsample5", "upsample4", "upsample3", "upsample2", "upsample1"],
}
SEGNET_BASIC_TUTORIAL = {
    "LRN": ["norm"],
    "Convolution": ["conv1", "conv2", "conv3", "conv4", "conv_decode4", "conv_decode3", "conv_decode2",
                    "conv_decode1", "conv_classifier"],
    "Pooling": ["pool1", "pool2", "pool3", "pool4"],
    "Upsample": ["upsample4", "upsample3", "upsample2", "upsample1"],
}
# Heavy nets (FCN 134 M parameters with a pad of 100, DeconvNet needing >= 193x193) run forward/backward with
# one weighting in the default run and the other in `make test-slow`; the loss layers themselves are
# exercised with both weightings by every other architecture.
HEAVY = {"fcn": "none", "fcn-learnt-deconv": "published", "deconvnet": "none"}
# DeconvNet: 196x228 gives pool5 7x8, so fc6 is 1x2 and its BatchNorm is not over a single value (which
# would zero every gradient below it).
SMALL = {"deconvnet": (196, 228), "fcn": (16, 16), "fcn-learnt-deconv": (16, 16)}


def layers_by_type(net_param) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for layer in net_param.layer:
        kind = layer.type
        if kind == "Python":
            kind = layer.python_param.layer
        out.setdefault(kind, []).append(layer.name)
    return out


def small_train_net(arch: str, weights: str, batch: int = 2):
    h, w = SMALL.get(arch, (48, 64))
    opts = Options(split="train", data="input", height=h, width=w, batch=1 if arch in SMALL else batch,
                   class_weights=weights)
    param = build_net(arch, opts)
    net = net_from_spec(param, caffe.TRAIN)
    return param, net


def fill_inputs(net, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    net.blobs["data"].data[...] = rng.uniform(0, 255, net.blobs["data"].data.shape)
    label = rng.integers(0, 12, net.blobs["label"].data.shape)  # 11 = void, ignored
    net.blobs["label"].data[...] = label
    return label


def test_arch_list():
    assert ARCHS == EXPECTED_ARCHS


@pytest.mark.parametrize("arch", EXPECTED_ARCHS)
def test_deploy_net_at_360x480(arch):
    param = build_net(arch, Options(split="deploy"))
    assert param.layer[0].type == "Input" and param.layer[0].name == "data"
    assert param.layer[-1].type == "Softmax" and param.layer[-1].name == "prob"
    net = net_from_spec(param, caffe.TEST)
    assert net.blobs["prob"].data.shape == (1, 11, 360, 480)
    assert count_params(net) == count_params(param)
    # Every unpooling restores exactly its pooling's input size (23x30 and 45x60 derived, never written).
    producer = {top: layer for layer in param.layer for top in layer.top if top not in layer.bottom}
    for layer in param.layer:
        if layer.type == "Python" and layer.python_param.layer == "Upsample":
            pool = producer[layer.bottom[1]]
            assert net.blobs[layer.top[0]].data.shape == net.blobs[pool.bottom[0]].data.shape
    for layer in param.layer:
        if layer.type == "BatchNorm":
            assert layer.batch_norm_param.use_global_stats and not layer.param
    if arch == "segnet":
        assert net.blobs["upsample5"].data.shape[2:] == (23, 30)
        assert net.blobs["upsample4"].data.shape[2:] == (45, 60)
    if arch == "deeplab-largefov":
        assert net.blobs["fc8"].data.shape[2:] == (45, 60)  # output stride 8, as the paper
    del net


@pytest.mark.parametrize(
    "arch,weights",
    [(a, w) for a in EXPECTED_ARCHS for w in ("none", "published") if HEAVY.get(a, w) == w]
    + [pytest.param(a, w, marks=pytest.mark.slow) for a, d in HEAVY.items()
       for w in ("none", "published") if w != d],
)
def test_train_net_forward_backward(arch, weights):
    param, net = small_train_net(arch, weights)
    types = [layer.type for layer in param.layer]
    assert ("InfogainLoss" in types) == (weights == "published")
    assert all(not layer.batch_norm_param.use_global_stats for layer in param.layer if layer.type == "BatchNorm")
    changed = bilinear_surgery(net, param)
    learnt = arch in ("fcn-learnt-deconv",) or arch.startswith("fcn-basic")
    assert bool(changed) == learnt
    fill_inputs(net)
    loss = float(net.forward()["loss"])
    net.backward()
    assert math.isfinite(loss) and loss > 0
    first = next(layer.name for layer in param.layer if layer.type == "Convolution")
    grad = net.params[first][0].diff
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    del net


def test_weighted_loss_matches_numpy():
    """InfogainLoss with H = diag(published) = caffe-segnet's weighted SoftmaxWithLoss:
    sum over valid pixels of -w[y] log p_y, divided by the number of valid (non-void) pixels."""
    param, net = small_train_net("segnet-basic", "published")
    label = fill_inputs(net, seed=3)[:, 0]
    loss = float(net.forward()["loss"])
    scores = net.blobs["conv_classifier"].data.astype(np.float64)
    logp = scores - scores.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    valid = label != 11
    n, h, w = np.nonzero(valid)
    y = label[valid]
    w_y = np.asarray(PUBLISHED_WEIGHTS)[y]
    expected = -(w_y * logp[n, y, h, w]).sum() / valid.sum()
    assert loss == pytest.approx(expected, rel=1e-4)
    unweighted = float(net_loss_unweighted(scores, label))
    assert unweighted != pytest.approx(expected, rel=1e-2)  # the weights do change the loss
    del net


def net_loss_unweighted(scores, label):
    logp = scores - scores.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    valid = label != 11
    n, h, w = np.nonzero(valid)
    return -logp[n, label[valid], h, w].mean()


@pytest.mark.parametrize("arch", list(PAPER_PARAMS))
def test_parameter_counts_match_paper(arch):
    ours = count_params(build_net(arch, Options(split="deploy")))
    assert abs(ours / PAPER_PARAMS[arch] - 1) <= TOLERANCE.get(arch, 0.02), f"{arch}: {ours:,}"


def test_deconvnet_parameter_counts():
    assert abs(count_params(build_net("deconvnet", Options(split="deploy", fc_dim=4096))) / 252e6 - 1) <= 0.02
    # The benchmark's 1024-wide fc layers: 81.9 M derived (docs/paper.md §5), plus Scale.
    assert abs(count_params(build_net("deconvnet", Options(split="deploy"))) / 81.9e6 - 1) <= 0.01


def test_count_params_hand_computed():
    """SegNet-Basic with the paper's no-bias convolutions, counted by hand (docs/paper.md §1.4)."""
    encoder = 3 * 64 * 49 + 3 * 64 * 64 * 49
    decoder = 4 * 64 * 64 * 49
    classifier = 64 * 11 + 11
    scale = 8 * 2 * 64
    assert count_params(build_net("segnet-basic", Options(split="deploy"))) == encoder + decoder + classifier + scale
    public = count_params(build_net("segnet-basic", Options(split="deploy", biases="public")))
    assert public == encoder + decoder + classifier + scale + 8 * 64
    no_bn = count_params(build_net("segnet-basic", Options(split="deploy", batchnorm=False)))
    assert no_bn == encoder + decoder + classifier + 8 * 64  # without BatchNorm the convs keep their biases


@pytest.mark.parametrize("arch,expected", [("segnet", SEGNET_TUTORIAL), ("segnet-basic", SEGNET_BASIC_TUTORIAL)])
def test_layer_names_match_segnet_tutorial(arch, expected):
    found = layers_by_type(build_net(arch, Options(split="train", data="input")))
    for kind, names in expected.items():
        assert found[kind] == names
    bn = [name[: -len("_bn")] for name in found["BatchNorm"]]
    assert bn == [name for name in expected["Convolution"] if name not in ("conv1_1_D", "conv_classifier")]


def test_fcn_crop_offsets_are_the_references():
    """voc-fcn8s: score_pool4c offset 5, score_pool3c 9, score 31, all from caffe.coord_map."""
    offsets = {layer.name: list(layer.crop_param.offset) for layer in build_net("fcn", Options()).layer
               if layer.type == "Crop"}
    assert offsets == {"score_pool4c": [5], "score_pool3c": [9], "score": [31]}


def test_bilinear_kernels_and_surgery():
    """BVLC's bilinear filler (the fixed, channel-wise upsamplers) equals fcn's upsample_filt, and the surgery
    makes a learnt K x K deconvolution compute the same per-channel interpolation (unit gain)."""
    param = build_net("bilinear-interpolation", Options(split="deploy", height=48, width=64))
    net = net_from_spec(param, caffe.TEST)
    fixed = net.params["upsample4"][0].data
    assert fixed.shape == (64, 1, 4, 4)
    np.testing.assert_allclose(fixed[:, 0], np.broadcast_to(bilinear_kernel(4), (64, 4, 4)), atol=1e-6)
    assert bilinear_kernel(4)[:, 0].tolist() == [0.0625, 0.1875, 0.1875, 0.0625]

    param = build_net("fcn-basic", Options(split="deploy", height=48, width=64))
    net = net_from_spec(param, caffe.TEST)
    assert bilinear_surgery(net, param) == ["upscore4", "upscore3", "upscore2", "upscore1"]
    weights = net.params["upscore4"][0].data
    off_diagonal = weights.copy()
    off_diagonal[range(11), range(11)] = 0
    assert not off_diagonal.any()
    # Unit gain: a constant map stays constant inside (8x8 kernel at stride 2 sums to 4 per output pixel).
    np.testing.assert_allclose(weights[0, 0], bilinear_kernel(8) / 4, atol=1e-7)
    assert weights[0, 0].reshape(4, 2, 4, 2).sum(axis=(0, 2)) == pytest.approx(np.ones((2, 2)))
    del net


def test_data_layer_interface():
    param = build_net("segnet-basic", Options(split="train"))
    data = param.layer[0]
    assert (data.name, data.type, list(data.top)) == ("data", "Python", ["data", "label"])
    assert (data.python_param.module, data.python_param.layer) == ("layers.camvid_data", "CamVidData")
    assert json.loads(data.python_param.param_str) == {
        "source": "data/lmdb/camvid-train-360x480", "batch_size": 12, "seed": 1, "shuffle": True, "mirror": False}
    test = json.loads(build_net("fcn", Options(split="test")).layer[0].python_param.param_str)
    assert test == {"source": "data/lmdb/camvid-val-360x480", "batch_size": 1, "seed": 1, "shuffle": False,
                    "mirror": False}
    loss = next(layer for layer in param.layer if layer.type == "InfogainLoss")
    assert loss.infogain_loss_param.source == "data/class_weights/camvid_published.binaryproto"
    assert (loss.loss_param.ignore_label, loss.loss_param.normalization) == (11, caffe_pb2.LossParameter.VALID)
    accuracy = next(layer for layer in param.layer if layer.type == "Accuracy")
    assert list(accuracy.top) == ["accuracy", "per_class_accuracy"]
    test_bn = [layer.batch_norm_param.use_global_stats for layer in build_net("segnet", Options(split="test")).layer
               if layer.type == "BatchNorm"]
    assert len(test_bn) == 25 and all(test_bn)  # SegNet-Tutorial's 25 BN layers, global statistics at test


def test_solver_protocols_and_one_step(tmp_path):
    table1 = build_solver("segnet-basic")
    assert (table1.base_lr, table1.momentum, table1.weight_decay) == pytest.approx((0.1, 0.9, 0.0005))
    assert (table1.lr_policy, table1.type, table1.max_iter) == ("fixed", "SGD", 10000)
    bench = build_solver("deeplab-largefov", Options(seed=7), max_iter=123)
    assert bench.base_lr == pytest.approx(0.001) and (bench.max_iter, bench.random_seed) == (123, 7)
    assert bench.train_net == "prototxt/models/deeplab-largefov/train.prototxt"
    net_path = tmp_path / "train.prototxt"
    net_path.write_text(str(build_net("segnet-basic", Options(data="input", height=32, width=32, batch=2))))
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(str(build_solver("segnet-basic", train_net=str(net_path),
                                            snapshot_prefix=str(tmp_path / "snap"))))
    solver = caffe.get_solver(str(solver_path))
    solver.step(1)
    assert solver.iter == 1 and math.isfinite(float(solver.net.blobs["loss"].data))


def test_committed_files_are_up_to_date(tmp_path):
    """`make prototxt` into a temporary folder must reproduce prototxt/models/ byte for byte."""
    written = write_all(tmp_path)
    assert len(written) == 13 * 4
    committed = ROOT / "prototxt" / "models"
    ours = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    assert ours == theirs, "run `make prototxt`: the set of files differs"
    stale = [str(p) for p in ours if (tmp_path / p).read_text() != (committed / p).read_text()]
    assert not stale, f"run `make prototxt`; stale: {stale}"
    for path in written:  # and Caffe's own parser reads them
        message = caffe_pb2.SolverParameter() if path.name == "solver.prototxt" else caffe_pb2.NetParameter()
        text_format.Merge(path.read_text(), message)
    header = (committed / "segnet-basic" / "train.prototxt").read_text().splitlines()[0]
    assert "GENERATED by `python -m prototxt --all" in header


def run_cli(*args, cwd=ROOT):
    env = dict(os.environ, GLOG_minloglevel="2")
    return subprocess.run([sys.executable, "-m", "prototxt", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def test_cli_writes_a_net_and_a_solver(tmp_path):
    out = tmp_path / "net.prototxt"
    result = run_cli("segnet-basic", "--split", "deploy", "--classes", "5", "--height", "64", "--width", "96",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    net = caffe_pb2.NetParameter()
    text_format.Merge(out.read_text(), net)
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 64, 96]
    assert [p.name for p in tmp_path.iterdir()] == ["net.prototxt"]  # no temporary left behind
    result = run_cli("fcn", "--solver")
    assert result.returncode == 0 and 'train_net: "prototxt/models/fcn/train.prototxt"' in result.stdout
    weights = tmp_path / "w.binaryproto"
    blob = caffe.io.array_to_blobproto(np.diag(np.arange(1.0, 6.0)).reshape(1, 1, 5, 5))
    weights.write_bytes(blob.SerializeToString())
    result = run_cli("segnet-basic", "--split", "train", "--classes", "5", "--class-weights", str(weights))
    assert result.returncode == 0 and f'source: "{weights}"' in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["nonet", "--split", "train"], "invalid choice"),
        (["segnet"], "give --split"),
        (["--split", "train"], "give an ARCH"),
        (["segnet", "--split", "val"], "invalid choice"),
        (["segnet", "--split", "train", "--classes", "1"], "--classes must be"),
        (["segnet", "--split", "train", "--batch", "0"], "--batch must be"),
        (["segnet", "--split", "train", "--height", "8"], "--height must be"),
        (["segnet", "--split", "train", "--classes", "5", "--class-weights", "published"], "CamVid's 11"),
        (["segnet", "--split", "train", "--class-weights", "/nonexistent.binaryproto"], "no such file"),
        (["segnet", "--split", "train", "--class-weights", "Makefile"], "Makefile"),
        (["deconvnet", "--split", "deploy", "--height", "160"], "needs at least 7x7"),
        (["segnet", "--split", "deploy", "--fc-dim", "4096"], "deconvnet only"),
        (["segnet", "--split", "deploy", "--fc-dim", "2048"], "invalid choice"),
        (["segnet", "--solver", "--max-iter", "0"], "--max-iter must be"),
        (["segnet", "--all"], "give no ARCH"),
    ],
)
def test_cli_rejects_bad_arguments(args, message, tmp_path, capsys):
    """In-process (`main(argv)` is the whole CLI): exit status 2, a one-line reason, nothing written."""
    try:
        status = main([*args, "--out", str(tmp_path / "x.prototxt")])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err and captured.err.startswith("prototxt: error: ")
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.out == "" and not (tmp_path / "x.prototxt").exists()


def test_cli_error_end_to_end():
    result = run_cli("deconvnet", "--split", "deploy", "--height", "160")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == ("prototxt: error: deconvnet at 160x480: pool5 is 5x15 but DeconvNet's valid "
                                     "7x7 fc6 needs at least 7x7 (inputs >= 193x193)")


@pytest.mark.parametrize("arch", ["segnet", "segnet-basic", "fcn-basic", "deeplab-largefov"])
def test_dropout_and_no_batchnorm_variants_run(arch):
    param = build_net(arch, Options(split="train", data="input", height=48, width=64, batch=2, class_weights="none",
                                    dropout=True, batchnorm=False))
    found = layers_by_type(param)
    assert "BatchNorm" not in found and "Scale" not in found
    expected = {
        "segnet": ["encdrop3", "encdrop4", "encdrop5", "decdrop5", "decdrop4", "decdrop3"],  # Bayesian SegNet
        "segnet-basic": ["encdrop3", "encdrop4", "decdrop4", "decdrop3"],  # Bayesian SegNet-Basic
        "fcn-basic": ["encdrop3", "encdrop4"],
        "deeplab-largefov": ["drop6", "drop7"],
    }[arch]
    assert found["Dropout"] == expected
    net = net_from_spec(param, caffe.TRAIN)
    fill_inputs(net)
    assert math.isfinite(float(net.forward()["loss"]))
    del net
