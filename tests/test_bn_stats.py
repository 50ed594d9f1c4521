"""BatchNorm statistics from a full pass equal the rules computed independently over the same data (the layer
inputs from a PyTorch forward pass; NumPy pooled moments; SegNet-Tutorial's compute_bn_statistics.py transcribed);
folding preserves outputs."""

from __future__ import annotations

import caffe
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from caffe import layers as L
from caffe import params as P

from segnet_bvlc import bn_stats
from tests.conftest import net_from_spec

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


HP, WP = 6, 8  # even, so Caffe's ceil-mode 2x2 pooling and PyTorch's agree without padding questions


def pooled_bn_net(batch: int = 2):
    """data -> 3x3 conv -> BN -> Scale -> ReLU -> 2x2 max pool -> 3x3 conv -> BN -> Scale: the two BatchNorms see
    maps of different sizes (6x8 and 3x4), so a statistic over the wrong number of values per channel shows."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, C_IN, HP, WP]))
    n.conv1 = L.Convolution(n.data, num_output=C1, kernel_size=3, pad=1,
                            weight_filler=dict(type="gaussian", std=0.3), bias_filler=dict(type="constant", value=0.5))
    n.conv1_bn = L.BatchNorm(n.conv1, in_place=True, batch_norm_param=dict(use_global_stats=False))
    n.conv1_scale = L.Scale(n.conv1_bn, bias_term=True, in_place=True,
                            filler=dict(type="constant", value=1.5), bias_filler=dict(type="constant", value=0.2))
    n.relu1 = L.ReLU(n.conv1_scale, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=C2, kernel_size=3, pad=1, weight_filler=dict(type="gaussian", std=0.3))
    n.conv2_bn = L.BatchNorm(n.conv2, in_place=True, batch_norm_param=dict(use_global_stats=False))
    n.conv2_scale = L.Scale(n.conv2_bn, bias_term=True, in_place=True)
    return n.to_proto()


def torch_bn_inputs(batches, params):
    """Reference forward pass in float64 PyTorch: the input of each BatchNorm, batch by batch. BatchNorm in
    training mode normalises with the batch's mean and biased variance (eps 1e-5, BVLC's default), as the pass
    runs it (use_global_stats: false)."""
    t = {k: [torch.from_numpy(v) for v in vs] for k, vs in params.items()}
    seen1, seen2 = [], []
    for x in batches:
        y1 = F.conv2d(torch.from_numpy(x.astype(np.float64)), t["conv1"][0], t["conv1"][1], padding=1)
        seen1.append(y1.numpy())
        z = F.batch_norm(y1, None, None, weight=t["conv1_scale"][0], bias=t["conv1_scale"][1], training=True, eps=1e-5)
        z = F.max_pool2d(F.relu(z), 2, 2)
        seen2.append(F.conv2d(z, t["conv2"][0], None, padding=1).numpy())
    return seen1, seen2


def exact(seen):
    """The `exact` rule (docs/bn_statistics.md): every value of the pass pooled, per channel: the mean and the
    unbiased variance over all N·H·W values of the layer input."""
    allv = np.concatenate([s.transpose(1, 0, 2, 3).reshape(s.shape[1], -1) for s in seen], axis=1)
    return allv.mean(axis=1), allv.var(axis=1, ddof=1)


def script_tutorial(seen):
    """SegNet-Tutorial Scripts/compute_bn_statistics.py (commit 63b77a9), make_test_files, for one BN layer.

    The fork's BN layer in LEARN mode gives, per forward, its batch mean and biased batch variance as the extra
    tops `-mean`, `-var` (make_testable adds them, lines 38-41; docs/caffe.md §2): here `batch_mean`, `batch_var`.
    """
    def batch_mean(x):
        return x.mean(axis=(0, 2, 3))

    def batch_var(x):
        return ((x - batch_mean(x)[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))

    num_iterations = len(seen)
    bn_avg_mean = batch_mean(seen[0]).copy()          # l. 68-69: res = net.forward(); bn_avg_mean = squeeze(res[...])
    bn_avg_var = batch_var(seen[0]).copy()            # l. 70
    for i in range(1, num_iterations):                # l. 73: for i in xrange(1, num_iterations)
        bn_avg_mean += batch_mean(seen[i])            # l. 76
        bn_avg_var += batch_var(seen[i])              # l. 78
    bn_avg_mean /= num_iterations                     # l. 83
    bn_avg_var /= num_iterations                      # l. 85
    blob = seen[-1]                                   # net.blobs[bn_blob]: the last forward's
    m = np.prod(blob.shape) / np.prod(bn_avg_var.shape)  # l. 88: N·C·H·W / C
    bn_avg_var *= m / (m - 1)                         # l. 89 (the factor as written; docs/bn_statistics.md on the
    return bn_avg_mean, bn_avg_var                    # Python 2 integer division)


def test_script_transcription_by_hand():
    """One channel, 1x1x2 images, two full batches of 2: A = [1, 3, 5, 7] (mean 4, biased variance 5),
    B = [2, 2, 4, 4] (mean 3, biased variance 1); m = 4: mean (4 + 3) / 2 = 3.5, variance (5 + 1) / 2 · 4/3 = 4."""
    a = np.array([1, 3, 5, 7], float).reshape(2, 1, 1, 2)
    b = np.array([2, 2, 4, 4], float).reshape(2, 1, 1, 2)
    mean, var = script_tutorial([a, b])
    np.testing.assert_allclose([mean[0], var[0]], [3.5, 4.0], rtol=1e-15)
    moments = bn_stats.Moments()
    moments.add(a.astype(np.float32))
    moments.add(b.astype(np.float32))
    np.testing.assert_allclose(np.ravel(moments.result("tutorial")), [3.5, 4.0], rtol=1e-12)
    np.testing.assert_allclose(np.ravel(moments.result("exact")), [3.5, np.var([1, 3, 5, 7, 2, 2, 4, 4], ddof=1)],
                               rtol=1e-12)


@pytest.mark.parametrize("sizes", [(2, 2, 2), (2, 2, 1)], ids=["full", "partial-last"])
@pytest.mark.parametrize("rule", ["exact", "tutorial"])
def test_statistics_match_an_independent_forward_pass(rule, sizes):
    """The statistics a full pass writes into each BatchNorm == the rule applied to that BatchNorm's input as a
    PyTorch forward pass computes it (batch-mode BN, so each layer sees what it saw in training).

    Oracles: `exact` is NumPy's mean and var(ddof=1) over all N·H·W values of the pass; `tutorial` with full
    batches is the transcribed script. With a partial last batch the script does not apply (its list wraps
    round, every batch is full): the oracle is then docs/bn_statistics.md's stated reading, each batch's
    mean and unbiased variance weighted by its m_b = n_b·H·W, which it also works by hand (tested below)."""
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 255, (n, C_IN, HP, WP)).astype(np.float32) for n in sizes]
    net = net_from_spec(bn_stats.in_batch_mode(pooled_bn_net()))
    params = {name: [b.data.astype(np.float64) for b in net.params[name]] for name in ("conv1", "conv1_scale", "conv2")}
    moments = bn_stats.accumulate(net, ({"data": x} for x in batches))
    bn_stats.write_statistics(net, moments, rule)
    seen1, seen2 = torch_bn_inputs(batches, params)
    for name, seen, hw in (("conv1_bn", seen1, HP * WP), ("conv2_bn", seen2, HP * WP // 4)):
        if rule == "exact":
            mean, var = exact(seen)
        elif len(set(sizes)) == 1:
            mean, var = script_tutorial(seen)
        else:
            m = np.array([s.shape[0] * hw for s in seen], float)
            flat = [s.transpose(1, 0, 2, 3).reshape(s.shape[1], -1) for s in seen]
            mean = sum(mb * f.mean(axis=1) for mb, f in zip(m, flat)) / m.sum()
            var = sum(mb * f.var(axis=1, ddof=1) for mb, f in zip(m, flat)) / m.sum()
        assert moments[name].count == sum(sizes) * hw
        np.testing.assert_allclose(net.params[name][0].data, mean, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(net.params[name][1].data, var, rtol=1e-5, atol=1e-4)
        assert net.params[name][2].data[0] == 1.0
    if rule == "tutorial" and len(set(sizes)) == 1:
        # The rules differ on these data (else the comparison could not tell them apart).
        assert not np.allclose(exact(seen2)[1], script_tutorial(seen2)[1], rtol=1e-3)


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
