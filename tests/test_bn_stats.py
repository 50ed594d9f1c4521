"""BatchNorm statistics from a full pass equal a NumPy computation over the same data; folding preserves outputs."""

from __future__ import annotations

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P

from tests.conftest import net_from_spec
from tools import bn_stats

C_IN, C1, C2, H, W = 3, 4, 5, 6, 7


def small_bn_net(global_stats: bool, batch: int = 2):
    """data -> 1x1 conv -> BN -> Scale -> ReLU -> 1x1 conv -> BN -> Scale (1x1 convs keep the NumPy reference short)."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, C_IN, H, W]))
    n.conv1 = L.Convolution(n.data, num_output=C1, kernel_size=1, weight_filler=dict(type="gaussian", std=1.0),
                            bias_filler=dict(type="constant", value=0.5))
    n.conv1_bn = L.BatchNorm(n.conv1, in_place=True, batch_norm_param=dict(use_global_stats=global_stats))
    n.conv1_scale = L.Scale(n.conv1_bn, bias_term=True, in_place=True,
                            filler=dict(type="constant", value=1.5), bias_filler=dict(type="constant", value=0.2))
    n.relu1 = L.ReLU(n.conv1_scale, in_place=True)
    n.conv2 = L.Convolution(n.relu1, num_output=C2, kernel_size=1, weight_filler=dict(type="gaussian", std=1.0))
    n.conv2_bn = L.BatchNorm(n.conv2, in_place=True, batch_norm_param=dict(use_global_stats=global_stats))
    n.conv2_scale = L.Scale(n.conv2_bn, bias_term=True, in_place=True)
    return n.to_proto()


def conv1x1(x, w, b):
    return np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b[None, :, None, None]


def numpy_moments(batches, params):
    """Reference: the pass in float64 NumPy, BN in batch mode (biased batch variance, eps 1e-5)."""
    w1, b1 = params["conv1"]
    g1, be1 = params["conv1_scale"]
    w2, b2 = params["conv2"]
    seen1, seen2 = [], []
    for x in batches:
        y1 = conv1x1(x.astype(np.float64), w1, b1)
        seen1.append(y1)
        mu, var = y1.mean(axis=(0, 2, 3)), y1.var(axis=(0, 2, 3))
        z = (y1 - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
        z = np.maximum(g1[None, :, None, None] * z + be1[None, :, None, None], 0)
        seen2.append(conv1x1(z, w2, np.zeros(C2)))
    return seen1, seen2


def exact(seen):
    allv = np.concatenate([s.transpose(1, 0, 2, 3).reshape(s.shape[1], -1) for s in seen], axis=1)
    return allv.mean(axis=1), allv.var(axis=1, ddof=1)


def tutorial(seen):
    """Each batch's mean and unbiased (ddof=1) variance over its N·H·W values, averaged weighted by N·H·W."""
    flat = [s.transpose(1, 0, 2, 3).reshape(s.shape[1], -1) for s in seen]
    sizes = [f.shape[1] for f in flat]
    means = np.average([f.mean(axis=1) for f in flat], axis=0, weights=sizes)
    variances = np.average([f.var(axis=1, ddof=1) for f in flat], axis=0, weights=sizes)
    return means, variances


@pytest.mark.parametrize("sizes", [(2, 2, 2), (2, 2, 1)], ids=["full", "partial-last"])
@pytest.mark.parametrize("rule, reference", [("exact", exact), ("tutorial", tutorial)])
def test_statistics_match_numpy(rule, reference, sizes):
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 255, (n, C_IN, H, W)).astype(np.float32) for n in sizes]
    net = net_from_spec(bn_stats.in_batch_mode(small_bn_net(False)))
    params = {name: [b.data.astype(np.float64) for b in net.params[name]] for name in ("conv1", "conv1_scale", "conv2")}
    moments = bn_stats.accumulate(net, ({"data": x} for x in batches))
    bn_stats.write_statistics(net, moments, rule)
    seen1, seen2 = numpy_moments(batches, params)
    for name, seen in (("conv1_bn", seen1), ("conv2_bn", seen2)):
        mean, var = reference(seen)
        assert moments[name].count == sum(sizes) * H * W
        np.testing.assert_allclose(net.params[name][0].data, mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(net.params[name][1].data, var, rtol=1e-4, atol=1e-4)
        assert net.params[name][2].data[0] == 1.0


def test_uneven_last_batch_counts_every_pixel_once():
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(2, C_IN, H, W)).astype(np.float32), rng.normal(size=(1, C_IN, H, W)).astype(np.float32)]
    net = net_from_spec(bn_stats.in_batch_mode(small_bn_net(False)))
    moments = bn_stats.accumulate(net, ({"data": x} for x in batches))
    assert moments["conv1_bn"].count == 3 * H * W


def test_tutorial_rule_on_a_partial_last_batch_by_hand():
    """Two full batches (2 images of 1x2, m = 4) and a partial one (1 image, m = 2), one channel.

    A [1, 3, 5, 7]: mean 4, unbiased variance 20/3; B [2, 2, 4, 4]: mean 3, variance 4/3; C [10, 14]: mean 12,
    variance 8. Weighted by m (4, 4, 2 of 10): mean (16 + 12 + 24) / 10 = 5.2, variance (80/3 + 16/3 + 16) / 10
    = 4.8. (The last batch's m for every batch and equal weights would give 19/3 and 20/3.)
    """
    moments = bn_stats.Moments()
    for values in ([[1, 3], [5, 7]], [[2, 2], [4, 4]], [[10, 14]]):
        moments.add(np.array(values, np.float32).reshape(-1, 1, 1, 2))
    mean, var = moments.result("tutorial")
    np.testing.assert_allclose(mean, [5.2], rtol=1e-12)
    np.testing.assert_allclose(var, [4.8], rtol=1e-12)
    # Full batches only: the script's rule, the plain average of means and of variances times m/(m-1).
    full = bn_stats.Moments()
    full.add(np.array([[1, 3], [5, 7]], np.float32).reshape(2, 1, 1, 2))
    full.add(np.array([[2, 2], [4, 4]], np.float32).reshape(2, 1, 1, 2))
    np.testing.assert_allclose(full.result("tutorial"), [[3.5], [(5 + 1) / 2 * 4 / 3]], rtol=1e-12)


def test_folded_deploy_net_gives_the_same_output(tmp_path):
    rng = np.random.default_rng(2)
    param = small_bn_net(True, batch=1)
    net = net_from_spec(param)
    for name in ("conv1_bn", "conv2_bn"):
        c = net.params[name][0].data.shape[0]
        net.params[name][0].data[...] = rng.normal(size=c) * 3
        net.params[name][1].data[...] = rng.uniform(0.5, 2.0, size=c) * 2
        net.params[name][2].data[...] = 2.0  # BVLC stores sums divided by this factor
    for name in ("conv1_scale", "conv2_scale"):
        for blob in net.params[name]:
            blob.data[...] = rng.normal(size=blob.data.shape)
    x = rng.uniform(0, 255, (1, C_IN, H, W)).astype(np.float32)
    net.blobs["data"].data[...] = x
    expected = net.forward()["conv2"].copy()  # in-place BN and Scale write into the conv2 blob
    folded_param, params = bn_stats.fold_batchnorm(param, net)
    assert not [layer for layer in folded_param.layer if layer.type == "BatchNorm"]
    folded = net_from_spec(folded_param)
    for name in folded.params:
        for blob, value in zip(folded.params[name], params.get(name) or [b.data for b in net.params[name]]):
            blob.data[...] = value
    folded.blobs["data"].data[...] = x
    out = folded.forward()
    np.testing.assert_allclose(out["conv2"], expected, rtol=1e-4, atol=1e-3)


def test_no_batchnorm_is_an_error():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 2, 2]))
    n.pool = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    with pytest.raises(ValueError, match="no BatchNorm"):
        bn_stats.accumulate(net_from_spec(n), [])
