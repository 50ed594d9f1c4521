"""Monte Carlo dropout (layers.mc_dropout) against a NumPy reference, its generator variant, and
`tools.segment --samples`: mean of the sampled softmax outputs, Bayesian SegNet's uncertainty, N=1 = one pass.

The reference of the layer is caffe-segnet's Dropout with `sample_weights_test` (dropout_layer.cpp):
top = bottom * mask * scale, mask ~ Bernoulli(1 - ratio) drawn anew at every forward, scale = 1 / (1 - ratio) in
float32; backward multiplies by the same mask and scale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import caffe
import cv2
import numpy as np
import pytest
from caffe import layers as L
from PIL import Image

from layers import mc_dropout
from prototxt import Options, OptionsError, build_net
from segnet_bvlc.dataset import camvid
from segnet_bvlc.evaluation import segment
from tests.conftest import ROOT, net_from_spec


def dropout_spec(shape, ratio=0.5, seed=None, in_place=False):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    param = {"dropout_ratio": ratio}
    if seed is not None:
        param["seed"] = seed
    pp = dict(module="layers.mc_dropout", layer="MCDropout", param_str=json.dumps(param))
    if in_place:
        n.relu = L.ReLU(n.data)
        n.drop = L.Python(n.relu, python_param=pp, in_place=True)
    else:
        n.drop = L.Python(n.data, python_param=pp)
    return n


def reference(x, rng, ratio):
    """NumPy reference: one Bernoulli(1 - ratio) mask from `rng` (uniforms >= the float32 ratio, in C order),
    scale 1/(1 - ratio) rounded to float32 as Caffe's scale_."""
    mask = rng.random(x.shape) >= np.float32(ratio)
    scale = np.float32(1.0 / (1.0 - float(np.float32(ratio))))
    return np.where(mask, x * scale, np.float32(0)), mask, scale


@pytest.mark.parametrize("ratio", [0.5, 0.3])
def test_forward_matches_numpy_reference_rate_and_scale(ratio):
    shape = (2, 8, 40, 50)  # 32,000 elements
    net = net_from_spec(dropout_spec(shape, ratio, seed=7))  # TEST phase: BVLC's Dropout would copy
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    rng = np.random.default_rng(7)
    seen = []
    for _ in range(3):
        out = net.forward()["drop"].copy()
        want, mask, scale = reference(x, rng, ratio)
        assert out.dtype == np.float32 and (out == want).all()  # bit for bit, every forward
        # the rate: kept fraction within 5 standard deviations of 1 - ratio
        kept = mask.mean()
        assert abs(kept - (1 - ratio)) < 5 * np.sqrt(ratio * (1 - ratio) / mask.size)
        # the scale: kept values are exactly x * float32(1 / (1 - ratio)), dropped ones exactly 0
        assert (out[mask] == x[mask] * scale).all() and (out[~mask] == 0).all()
        seen.append(mask)
    assert (seen[0] != seen[1]).mean() > 0.3 and (seen[1] != seen[2]).mean() > 0.3  # a new mask every forward


def test_mean_over_forwards_is_unbiased():
    """E[top] = bottom: the 1/(1-p) scaling keeps the expectation (what the deterministic test net computes)."""
    net = net_from_spec(dropout_spec((1, 4, 50, 50), 0.5, seed=3))
    net.blobs["data"].data[...] = 1.0
    mean = np.mean([net.forward()["drop"].copy() for _ in range(50)], axis=0)
    assert abs(mean.mean() - 1.0) < 0.01
    assert set(np.unique(net.blobs["drop"].data)) == {0.0, 2.0}


def test_backward_uses_the_forward_mask_in_place():
    spec = dropout_spec((1, 3, 20, 20), 0.5, seed=11, in_place=True)
    proto = spec.to_proto()
    proto.force_backward = True
    net = net_from_spec(proto)
    x = np.random.default_rng(2).uniform(0.5, 1.5, (1, 3, 20, 20)).astype(np.float32)  # > 0: ReLU is identity
    net.blobs["data"].data[...] = x
    net.forward()
    out = net.blobs["relu"].data.copy()  # in place: the dropout's top is the ReLU's blob
    _, mask, scale = reference(x, np.random.default_rng(11), 0.5)
    assert (out == np.where(mask, x * scale, 0)).all()
    g = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    net.blobs["relu"].diff[...] = g
    net.backward(start="drop")
    assert np.array_equal(net.blobs["data"].diff, np.where(mask, g * scale, 0).astype(np.float32))


def test_seeded_nets_repeat_and_batching_does_not_change_the_masks():
    x = np.random.default_rng(4).normal(size=(1, 5, 16, 16)).astype(np.float32)
    a = net_from_spec(dropout_spec((1, 5, 16, 16)))
    b = net_from_spec(dropout_spec((1, 5, 16, 16)))
    unseeded = []
    for net in (a, b):
        net.blobs["data"].data[...] = x
        unseeded.append(net.forward()["drop"].copy())
    assert not np.array_equal(*unseeded)  # no seed: fresh entropy per layer
    for net in (a, b):
        assert mc_dropout.seed_net(net, 5) == 1
    first = [a.forward()["drop"].copy() for _ in range(3)]
    assert all(np.array_equal(f, b.forward()["drop"]) for f in first)
    # one forward at batch 3 draws what 3 forwards at batch 1 draw, in the same order
    c = net_from_spec(dropout_spec((3, 5, 16, 16)))
    c.blobs["data"].data[...] = x
    mc_dropout.seed_net(c, 5)
    assert np.array_equal(c.forward()["drop"], np.concatenate(first))


def test_params_are_checked():
    assert mc_dropout.parse_params("") == {"dropout_ratio": 0.5, "seed": None}
    for bad, message in [('{"dropout_ratio": 1}', "dropout_ratio"), ('{"dropout_ratio": 0}', "dropout_ratio"),
                         ('{"seed": -1}', "seed"), ('{"ratio": 0.5}', "unknown key"), ("[1]", "JSON object"),
                         ("{", "not JSON")]:
        with pytest.raises(mc_dropout.MCDropoutError, match=message):
            mc_dropout.parse_params(bad)


# ------------------------------------------------------------------------------------------------ generator

@pytest.mark.parametrize("arch", ["segnet-basic", "segnet", "fcn-basic"])
@pytest.mark.parametrize("split", ["deploy", "test"])
def test_generator_variant_is_the_sampling_rewrite(arch, split):
    opts = Options(split=split, height=64, width=64, batch=1, dropout=True, data="input")
    plain = build_net(arch, opts)
    sampling = build_net(arch, opts.replace(mc_dropout=True))
    assert mc_dropout.dropout_layer_count(plain) > 0 and mc_dropout.dropout_layer_count(sampling) == 0
    assert str(sampling) == str(mc_dropout.sampling_net_param(plain))
    # nets without dropout, and training nets, are what they were
    assert str(build_net(arch, opts.replace(dropout=False))) == str(mc_dropout.sampling_net_param(
        build_net(arch, opts.replace(dropout=False))))
    with pytest.raises(OptionsError, match="needs --dropout"):
        build_net(arch, opts.replace(dropout=False, mc_dropout=True))
    with pytest.raises(OptionsError, match="test and deploy"):
        build_net(arch, opts.replace(split="train", mc_dropout=True))


def bn_identity(net):
    for name, blobs in net.params.items():
        if name.endswith("_bn"):
            blobs[0].data[...] = 0
            blobs[1].data[...] = 1
            blobs[2].data[...] = 1


def test_sampling_deploy_net_samples_and_plain_one_does_not():
    opts = Options(split="deploy", height=32, width=32, batch=1, dropout=True)
    plain = net_from_spec(build_net("segnet-basic", opts))
    bn_identity(plain)
    sampling = net_from_spec(build_net("segnet-basic", opts.replace(mc_dropout=True)))
    for name, blobs in plain.params.items():
        for i, blob in enumerate(blobs):
            sampling.params[name][i].data[...] = blob.data
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    outs = {}
    for key, net in (("plain", plain), ("sampling", sampling)):
        net.blobs["data"].data[...] = x
        outs[key] = [net.forward()["prob"].copy() for _ in range(2)]
    assert np.array_equal(*outs["plain"])  # BVLC Dropout in TEST: a copy
    assert np.abs(outs["sampling"][0] - outs["sampling"][1]).max() > 1e-3
    assert [name for _, name, _ in mc_dropout.mc_layers(sampling)] == ["encdrop3", "encdrop4", "decdrop4",
                                                                        "decdrop3"]


# ------------------------------------------------------------------------------------------------ tools.segment

def tiny_dropout_spec(h=90, w=120):
    """Input -> 1x1 conv 3->16 -> ReLU -> Dropout 0.5 -> 1x1 conv 16->11 -> Softmax: a small untrained Bayesian
    net (BVLC Dropout, as a run folder's deploy.prototxt has it)."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, h, w]))
    n.hidden = L.Convolution(n.data, num_output=16, kernel_size=1, weight_filler=dict(type="gaussian", std=0.02),
                             bias_filler=dict(type="constant", value=0.1))
    n.relu = L.ReLU(n.hidden, in_place=True)
    n.drop = L.Dropout(n.relu, in_place=True, dropout_ratio=0.5)
    n.score = L.Convolution(n.relu, num_output=camvid.NUM_CLASSES, kernel_size=1,
                            weight_filler=dict(type="gaussian", std=0.3))
    n.prob = L.Softmax(n.score)
    return n


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-dropout")
    spec = tiny_dropout_spec()
    (folder / "deploy.prototxt").write_text(str(spec.to_proto()))
    caffe.set_random_seed(1)
    net = net_from_spec(spec)
    net.save(str(folder / "w.caffemodel"))
    return folder / "deploy.prototxt", folder / "w.caffemodel"


@pytest.fixture(scope="module")
def image(camvid_dir):
    path = camvid.read_list(camvid_dir, "test")[0][0]
    return path, cv2.imread(str(path))


def torch_labels(prob, size):
    import torch
    import torch.nn.functional as F

    up = F.interpolate(torch.from_numpy(prob[None].astype(np.float64)), size=size, mode="bilinear",
                       align_corners=False)[0].numpy()
    top2 = np.sort(up, axis=0)[-2:]
    return up.argmax(axis=0), top2[1] - top2[0] > 1e-5


def manual_samples(tiny_model, bgr, n, seed):
    """N sampled forwards of an independently loaded sampling net, fed by hand (INTER_AREA, the documented
    rule for shrinking 360x480 to 90x120)."""
    net = segment.load_net(*tiny_model, sampling=True)
    mc_dropout.seed_net(net, seed)
    net.blobs["data"].data[0] = cv2.resize(bgr, (120, 90), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    return np.stack([net.forward()["prob"][0].copy() for _ in range(n)])


def test_one_sample_is_a_single_sampled_pass(tiny_model, image):
    _, bgr = image
    net = segment.load_net(*tiny_model, sampling=True)
    pred = segment.predict_image(net, bgr, samples=1, seed=3)
    one = manual_samples(tiny_model, bgr, 1, seed=3)[0]
    assert np.array_equal(pred.probabilities, one)
    expected, clear = torch_labels(one, bgr.shape[:2])
    assert clear.mean() > 0.99 and (pred.labels[clear] == expected[clear]).all()
    assert (pred.uncertainty == 0).all()
    # a sampled pass differs from the deterministic one (the plain net, BVLC Dropout: a copy at test)
    plain = segment.predict_image(segment.load_net(*tiny_model), bgr)
    assert (plain.labels != pred.labels).mean() > 0.01


def test_mean_of_samples_and_uncertainty(tiny_model, image):
    _, bgr = image
    net = segment.load_net(*tiny_model, sampling=True)
    pred = segment.predict_image(net, bgr, samples=6, seed=9)
    samples = manual_samples(tiny_model, bgr, 6, seed=9)
    assert not np.array_equal(samples[0], samples[1])
    assert np.abs(pred.probabilities - samples.mean(axis=0)).max() < 1e-6
    variance = samples.astype(np.float64).var(axis=0).mean(axis=0)  # Kendall et al.: variance, mean over classes
    up = cv2.resize(variance.astype(np.float32), (480, 360), interpolation=cv2.INTER_LINEAR)
    assert np.abs(pred.uncertainty - up).max() < 1e-6 and pred.uncertainty.max() > 1e-4
    expected, clear = torch_labels(samples.mean(axis=0), bgr.shape[:2])
    assert clear.mean() > 0.99 and (pred.labels[clear] == expected[clear]).all()
    # the same seed, the same result; another seed, other masks
    again = segment.predict_image(net, bgr, samples=6, seed=9)
    assert np.array_equal(again.labels, pred.labels) and np.array_equal(again.uncertainty, pred.uncertainty)
    other = segment.predict_image(net, bgr, samples=6, seed=10)
    assert not np.array_equal(other.probabilities, pred.probabilities)


def test_samples_need_dropout(tmp_path, image):
    from tests.test_segment import channel_argmax_net, make_net

    model = tmp_path / "deploy.prototxt"
    model.write_text(str(channel_argmax_net(90, 120).to_proto()))
    make_net(90, 120).save(str(tmp_path / "w.caffemodel"))
    with pytest.raises(segment.SegmentError, match="no Dropout layer"):
        segment.load_net(model, tmp_path / "w.caffemodel", sampling=True)
    with pytest.raises(segment.SegmentError, match="no sampling dropout layer"):
        segment.predict_image(segment.load_net(model, tmp_path / "w.caffemodel"), image[1], samples=2)


def test_command_line_samples_writes_mean_prediction_and_uncertainty(tiny_model, image, tmp_path):
    path, bgr = image
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "tools.segment", "--model", str(tiny_model[0]), "--weights", str(tiny_model[1]),
           "--out", str(out), "--json", "--samples", "4", "--seed", "2", str(path)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["samples"] == 4 and report["seed"] == 2 and report["upsample"] == "bilinear"
    pred = segment.predict_image(segment.load_net(*tiny_model, sampling=True), bgr, samples=4, seed=2)
    labels = np.array(Image.open(out / path.name))
    assert np.array_equal(labels, pred.labels)
    unc = np.array(Image.open(out / f"{path.stem}_uncertainty.png"))
    assert unc.dtype == np.uint16 and np.array_equal(unc, segment.uncertainty_png(pred.uncertainty))
    assert np.abs(unc / segment.UNCERTAINTY_PNG_SCALE - pred.uncertainty).max() <= 0.5 / segment.UNCERTAINTY_PNG_SCALE
    colour = np.array(Image.open(out / f"{path.stem}_uncertainty_colour.png"))
    assert colour.shape == (*bgr.shape[:2], 3)
    assert report["images"][0]["uncertainty"].endswith("_uncertainty.png")
    # --samples on a net without dropout: one line, non-zero
    from tests.test_segment import channel_argmax_net, make_net
    model = tmp_path / "plain.prototxt"
    model.write_text(str(channel_argmax_net(90, 120).to_proto()))
    make_net(90, 120).save(str(tmp_path / "plain.caffemodel"))
    bad = subprocess.run([sys.executable, "-m", "tools.segment", "--model", str(model), "--weights",
                          str(tmp_path / "plain.caffemodel"), "--out", str(tmp_path / "bad"), "--samples", "3",
                          str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "no Dropout layer" in bad.stderr and "Traceback" not in bad.stderr
