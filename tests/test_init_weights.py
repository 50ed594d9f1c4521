"""tools.init_weights: VGG16 ImageNet weights into the encoders of SegNet, FCN, DeconvNet and DeepLab.

The VGG16 file is synthesised once per session by tests/forkproto.py with the real layout of
`VGG_ILSVRC_16_layers.caffemodel`: V1 `layers` with enum types, legacy num/channels/height/width blob dims,
InnerProduct weights stored 1x1xNxK, the real shapes (553 MB). The FCN surgery is checked against Caffe itself:
VGG's fc6 as an InnerProduct and our reshaped fc6 as a 7x7 Convolution give the same outputs.
"""

from __future__ import annotations

import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe import layers as L

from segnet_bvlc.nets.caffemodel import read_caffemodel
from segnet_bvlc.nets.convert import build_deploy
from segnet_bvlc.nets.load import net_from_param
from segnet_bvlc.training.init_weights import VGG16_CONVS, InitWeightsError, init_from_vgg16
from tests import forkproto
from tests.conftest import ROOT, net_from_spec


@pytest.fixture(scope="session")
def vgg(tmp_path_factory):
    """(path, weights) of a real-shaped VGG16 caffemodel in the 2014 V1 format."""
    data, weights = forkproto.vgg16(seed=16)
    path = forkproto.write(tmp_path_factory.mktemp("vgg") / "VGG_ILSVRC_16_layers.caffemodel", data)
    return path, weights


@pytest.fixture(scope="session")
def vgg_model(vgg):
    """The file read once (553 MB): the tests that need no re-reading share it."""
    return read_caffemodel(vgg[0])


@pytest.fixture(scope="module")
def thin_vgg(tmp_path_factory):
    data, weights = forkproto.vgg16(seed=8, width_divisor=8, fc6=64, fc7=64, fc8=10)
    return forkproto.write(tmp_path_factory.mktemp("thin") / "thin_vgg.caffemodel", data), weights


def _check_encoder(net, weights):
    for name in VGG16_CONVS:
        assert np.array_equal(net.params[name][0].data, weights[name][0]), name
        assert np.array_equal(net.params[name][1].data, weights[name][1]), name


def test_segnet_encoder(vgg):
    path, weights = vgg
    net = net_from_param(build_deploy("segnet", 11, 45, 60))
    decoder_before = net.params["conv1_1_D"][0].data.copy()
    report = init_from_vgg16(net, path, "segnet", force=True)
    _check_encoder(net, weights)
    assert np.array_equal(net.params["conv1_1_D"][0].data, decoder_before)  # the decoder keeps its filler
    assert report.copied == list(VGG16_CONVS) and not report.reshaped
    assert "fc8: ImageNet's 1000-class classifier, not used" in report.skipped
    assert report.notes and report.notes[0].startswith("unknown file accepted with --force")
    assert str(report).startswith("copied 13 layers (conv1_1, conv1_2,")


def test_fcn_surgery_matches_inner_product(vgg, vgg_model):
    """fc6/fc7 become convolutions: Caffe's InnerProduct with VGG's fc6 on a pool5-shaped input equals our
    7x7 fc6 Convolution on it (the flattening order is channel, row, column)."""
    weights = vgg[1]
    net = net_from_param(build_deploy("fcn", 11, 32, 32))
    report = init_from_vgg16(net, vgg_model, "fcn", force=True)
    _check_encoder(net, weights)
    assert report.reshaped == ["fc6 4096x512x7x7", "fc7 4096x4096x1x1"]
    assert np.array_equal(net.params["fc7"][0].data[:, :, 0, 0], weights["fc7"][0])

    n = caffe.NetSpec()
    n.pool5 = L.Input(shape=dict(dim=[1, 512, 7, 7]))
    n.ip = L.InnerProduct(n.pool5, num_output=4096)
    n.conv = L.Convolution(n.pool5, num_output=4096, kernel_size=7)
    check = net_from_spec(n)
    check.params["ip"][0].data[...] = weights["fc6"][0]
    check.params["ip"][1].data[...] = weights["fc6"][1]
    check.params["conv"][0].data[...] = net.params["fc6"][0].data
    check.params["conv"][1].data[...] = net.params["fc6"][1].data
    check.blobs["pool5"].data[...] = np.random.default_rng(0).standard_normal((1, 512, 7, 7))
    check.forward()
    ip, conv = check.blobs["ip"].data.ravel(), check.blobs["conv"].data.ravel()
    assert np.abs(ip - conv).max() <= 1e-5 * np.abs(ip).max()


def test_deeplab_and_deconvnet_1024_skip_fc(vgg, vgg_model):
    weights = vgg[1]
    deeplab = net_from_param(build_deploy("deeplab-largefov", 11, 64, 64))
    report = init_from_vgg16(deeplab, vgg_model, "deeplab-largefov", force=True)
    _check_encoder(deeplab, weights)  # dilated conv5 layers take VGG's weights unchanged
    assert not report.reshaped
    assert any(s.startswith("fc6: net 1024x512x3x3 vs VGG16 4096x512x7x7: DeepLab's subsampled fc6")
               and "out of scope" in s for s in report.skipped)
    deconvnet = net_from_param(build_deploy("deconvnet", 11, 224, 224))  # the SegNet benchmark's fc 1024
    report = init_from_vgg16(deconvnet, vgg_model, "deconvnet", force=True)
    _check_encoder(deconvnet, weights)
    assert any(s.startswith("fc6: net 1024x512x7x7") and "1024-wide" in s for s in report.skipped)


def test_refusals(vgg_model, thin_vgg, tmp_path):
    net = net_from_param(build_deploy("segnet", 11, 45, 60))
    with pytest.raises(InitWeightsError, match=r"unknown file \(553,431,883 bytes.*--force"):
        init_from_vgg16(net, vgg_model, "segnet")
    with pytest.raises(InitWeightsError, match=r"conv1_1: VGG16 8x3x3x3 vs net 64x3x3x3"):
        init_from_vgg16(net, thin_vgg[0], "segnet", force=True)
    cut = forkproto.write(tmp_path / "cut.caffemodel", thin_vgg[0].read_bytes()[:-1000])
    with pytest.raises(InitWeightsError, match=r"cut.caffemodel: not a caffemodel \(truncated or corrupt\?\)"):
        init_from_vgg16(net, cut, "segnet", force=True)
    basic = net_from_param(build_deploy("segnet-basic", 11, 45, 60))
    with pytest.raises(InitWeightsError, match="has none of VGG16's layers"):
        init_from_vgg16(basic, thin_vgg[0], "segnet-basic", force=True)


def _cli(out, vgg_path):
    return subprocess.run([sys.executable, "-m", "tools.init_weights", "--arch", "segnet", "--out", str(out),
                           "--height", "45", "--width", "60", "--force", "--vgg", str(vgg_path), "--json"],
                          cwd=ROOT, capture_output=True, text=True)


def test_command_line_refuses(thin_vgg, tmp_path):
    out = tmp_path / "init" / "segnet_vgg.caffemodel"
    refused = _cli(out, thin_vgg[0])
    assert refused.returncode != 0 and refused.stdout == "" and not out.parent.exists()
    assert refused.stderr.strip().splitlines()[-1].startswith("init_weights: error: ")


@pytest.mark.slow  # reads the 553 MB file again in a subprocess
def test_command_line(vgg, tmp_path):
    out = tmp_path / "init" / "segnet_vgg.caffemodel"
    done = _cli(out, vgg[0])
    assert done.returncode == 0, done.stderr
    # the file loads by layer name into a SegNet net, as `caffe train --weights` would load it
    trained = net_from_spec(build_deploy("segnet", 11, 45, 60), weights=str(out))
    assert np.array_equal(trained.params["conv5_3"][0].data, vgg[1]["conv5_3"][0])
