"""The Upsample Python layer inside real caffe.Net objects, against caffe-segnet's golden vector and PyTorch.

PyTorch is the independent oracle (docs/caffe.md §1.3): max_pool2d(ceil_mode=True,
return_indices=True) gives the same values and flat indices as BVLC's MAX Pooling with kernel >= stride, and
max_unpool2d(output_size=...) scatters and gathers like caffe-segnet's Upsample. All comparisons are exact.
"""

from __future__ import annotations

import json

import caffe
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from caffe import layers as L
from caffe import params as P

from layers.upsample import (
    UpsampleError,
    flat_indices,
    output_size,
    parse_params,
    upsample_backward,
    upsample_forward,
)
from tests.conftest import net_from_spec


def _upsample(*bottoms, param_str: str = ""):
    return L.Python(
        *bottoms, python_param=dict(module="layers.upsample", layer="Upsample", param_str=param_str)
    )


def pool_unpool_net(shape, param_str: str = "", reference: bool = False):
    """Input -> MAX Pooling k2 s2 (two tops) -> Upsample, with force_backward so diffs reach the input."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    n.pool, n.mask = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2, ntop=2)
    bottoms = [n.pool, n.mask] + ([n.data] if reference else [])
    n.up = _upsample(*bottoms, param_str=param_str)
    proto = n.to_proto()
    proto.force_backward = True
    return net_from_spec(proto)


def direct_net(values_shape, mask_shape=None, param_str: str = "", reference_shape=None):
    """Upsample fed by Input blobs, so tests can write any values, mask and reference."""
    n = caffe.NetSpec()
    n.values = L.Input(shape=dict(dim=list(values_shape)))
    n.mask = L.Input(shape=dict(dim=list(mask_shape or values_shape)))
    bottoms = [n.values, n.mask]
    if reference_shape is not None:
        n.ref = L.Input(shape=dict(dim=list(reference_shape)))
        bottoms.append(n.ref)
    n.up = _upsample(*bottoms, param_str=param_str)
    proto = n.to_proto()
    proto.force_backward = True
    return net_from_spec(proto)


def torch_pool_unpool(x: np.ndarray, top_diff: np.ndarray):
    """PyTorch's pooled values, indices, unpooled output, and the gradients of the pooled values and input."""
    xt = torch.from_numpy(x).requires_grad_()
    pooled, idx = F.max_pool2d(xt, 2, 2, ceil_mode=True, return_indices=True)
    pooled.retain_grad()
    up = F.max_unpool2d(pooled, idx, 2, 2, output_size=x.shape[-2:])
    up.backward(torch.from_numpy(top_diff))
    return pooled.detach().numpy(), idx.numpy(), up.detach().numpy(), pooled.grad.numpy(), xt.grad.numpy()


def test_caffe_segnet_golden_vector():
    # caffe-segnet src/caffe/test/test_upsample_layer.cpp, TestForwardSquare.
    net = direct_net((1, 1, 2, 2), param_str='{"scale": 2}')
    net.blobs["values"].data[...] = np.array([1, 2, 9, 4], np.float32).reshape(1, 1, 2, 2)
    net.blobs["mask"].data[...] = np.array([2, 5, 12, 14], np.float32).reshape(1, 1, 2, 2)
    top = net.forward()["up"]
    expected = np.zeros(16, np.float32)
    expected[[2, 5, 12, 14]] = [1, 2, 9, 4]
    assert top.shape == (1, 1, 4, 4)
    assert np.array_equal(top.reshape(-1), expected)
    # Backward is the gather at the same indices.
    net.blobs["up"].diff[...] = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    net.backward()
    assert np.array_equal(net.blobs["values"].diff.reshape(-1), [2, 5, 12, 14])


# (input shape, param_str, use the input as reference bottom)
CASES = [
    ((2, 3, 45, 60), '{"scale": 2, "pad_out_h": true}', False),  # SegNet-Basic upsample4
    ((1, 2, 45, 60), '{"scale": 2, "upsample_h": 45, "upsample_w": 60}', False),  # SegNet-Tutorial upsample4
    ((2, 2, 45, 60), "", True),
    ((3, 2, 23, 30), '{"upsample_h": 23, "upsample_w": 30}', False),  # SegNet upsample5
    ((1, 4, 23, 30), '{"pad_out_h": true, "pad_out_w": false}', False),
    ((2, 3, 23, 30), "{}", True),
    ((2, 2, 5, 5), '{"pad_out_h": true, "pad_out_w": true}', False),
    ((1, 3, 7, 9), "", True),
    ((4, 2, 8, 12), "", False),  # even sizes, default scale 2
    ((2, 1, 6, 10), '{"scale_h": 2, "scale_w": 2}', False),
]


@pytest.mark.parametrize("shape,param_str,reference", CASES)
def test_pool_upsample_matches_pytorch(shape, param_str, reference):
    rng = np.random.default_rng(sum(shape))
    net = pool_unpool_net(shape, param_str, reference)
    x = rng.standard_normal(shape).astype(np.float32)
    top_diff = rng.standard_normal(shape).astype(np.float32)
    pooled, idx, up, pooled_grad, x_grad = torch_pool_unpool(x, top_diff)

    net.blobs["data"].data[...] = x
    out = net.forward()["up"]
    # The oracle's premise first: BVLC pooling and PyTorch agree on values and flat indices.
    assert np.array_equal(net.blobs["pool"].data, pooled)
    assert np.array_equal(net.blobs["mask"].data, idx.astype(np.float32))
    assert out.shape == shape
    assert np.array_equal(out, up)

    net.blobs["up"].diff[...] = top_diff
    net.backward()
    assert np.array_equal(net.blobs["pool"].diff, pooled_grad)
    assert np.array_equal(net.blobs["data"].diff, x_grad)


def test_pure_functions_match_pytorch():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 23, 30)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    pooled, idx, up, pooled_grad, _ = torch_pool_unpool(x, g)
    mask = idx.astype(np.float32)
    assert np.array_equal(upsample_forward(pooled, mask, 23, 30), up)
    assert np.array_equal(upsample_backward(g, mask), pooled_grad)
    # Reused output and index buffers give the same answer (the layer reuses them across iterations).
    out = np.full(x.shape, 5, np.float32)
    index = flat_indices(mask, 23, 30, buffer=np.full((12, 12 * 15), -3, np.int64))
    assert np.array_equal(upsample_forward(pooled, mask, 23, 30, out=out, index=index), up)
    grad = np.full(pooled.shape, 5, np.float32)
    assert np.array_equal(upsample_backward(g, mask, out=grad, index=index), pooled_grad)


def test_numeric_gradient():
    """Central finite differences of L = sum(w * top) w.r.t. the input, through pooling and upsampling."""
    shape = (1, 2, 5, 7)
    rng = np.random.default_rng(3)
    # Values at least 0.1 apart so that a +-1e-2 step never changes which element a pool window picks.
    x = (rng.permutation(np.prod(shape)).reshape(shape) * 0.1).astype(np.float32)
    w = rng.standard_normal(shape)
    net = pool_unpool_net(shape, "", reference=True)

    def loss(inp):
        net.blobs["data"].data[...] = inp
        return float(np.sum(w * net.forward()["up"]))

    loss(x)
    net.blobs["up"].diff[...] = w
    net.backward()
    analytic = net.blobs["data"].diff.copy()
    analytic_pool = net.blobs["pool"].diff.copy()
    eps = 1e-2
    numeric = np.zeros(shape)
    for i in np.ndindex(*shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        numeric[i] = (loss(plus) - loss(minus)) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-3)
    assert np.count_nonzero(analytic) == analytic_pool.size  # exactly one input per window gets gradient


def test_reshape_recomputes_output_size():
    # caffe-segnet kept the output size of the first reshape in scale mode; we recompute it.
    net = pool_unpool_net((1, 2, 45, 60), "")
    assert net.blobs["up"].data.shape == (1, 2, 46, 60)
    for shape, expected in [((2, 2, 10, 12), (2, 2, 10, 12)), ((1, 2, 23, 30), (1, 2, 24, 30))]:
        net.blobs["data"].reshape(*shape)
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        net.blobs["data"].data[...] = x
        out = net.forward()["up"]
        assert out.shape == expected
        pooled, idx = F.max_pool2d(torch.from_numpy(x), 2, 2, ceil_mode=True, return_indices=True)
        assert np.array_equal(out, F.max_unpool2d(pooled, idx, 2, 2, output_size=expected[-2:]).numpy())

    ref = pool_unpool_net((1, 1, 45, 60), "", reference=True)
    ref.blobs["data"].reshape(2, 1, 23, 31)
    ref.reshape()
    assert ref.blobs["up"].data.shape == (2, 1, 23, 31)


@pytest.mark.parametrize(
    "param_str,in_hw,expected",
    [
        ("", (23, 30), (46, 60)),
        ('{"scale": 3}', (4, 5), (12, 15)),
        ('{"scale_h": 2, "scale_w": 3}', (4, 5), (8, 15)),
        ('{"pad_out_h": true}', (23, 30), (45, 60)),
        ('{"scale": 2, "pad_out_w": true, "pad_out_h": false}', (23, 30), (46, 59)),
        ('{"scale": 2, "upsample_h": 45, "upsample_w": 60}', (23, 30), (45, 60)),
        ('{"upsample_h": 14, "upsample_w": 14}', (7, 7), (14, 14)),  # DeconvNet's unpool_size: 14
        ('{"scale": 3, "upsample_h": 7, "upsample_w": 9}', (3, 3), (7, 9)),
    ],
)
def test_output_size_rules(param_str, in_hw, expected):
    assert output_size(parse_params(param_str), *in_hw) == expected


BAD_PARAMS = [
    ("not json", "is not JSON"),
    ("[2]", "must be a JSON object"),
    ('{"scale": 2, "kernel_size": 2}', r"unknown key\(s\) \['kernel_size'\]"),
    ('{"scale": 2, "scale_h": 2, "scale_w": 2}', "either scale or scale_h/scale_w"),
    ('{"scale_h": 2}', "scale_h and scale_w must be given together"),
    ('{"scale": 1}', "scales must be > 1"),
    ('{"scale_h": 2, "scale_w": 0}', "scales must be > 1"),
    ('{"scale": 3, "pad_out_h": true}', "pad_out_h needs scale 2"),
    ('{"scale_h": 2, "scale_w": 3, "pad_out_w": true}', "pad_out_w needs scale 2"),
    ('{"upsample_h": 45}', "upsample_h and upsample_w must be given together"),
    ('{"upsample_h": 1, "upsample_w": 60}', "must be > 1"),
    ('{"upsample_h": 45, "upsample_w": 60, "pad_out_h": true}', "cannot be combined"),
    ('{"scale": 2.5}', "scale must be an integer"),
    ('{"scale": true}', "scale must be an integer"),
    ('{"pad_out_h": 1}', "pad_out_h must be true or false"),
]


@pytest.mark.parametrize("param_str,message", BAD_PARAMS)
def test_bad_params_raise_from_net(param_str, message):
    with pytest.raises(UpsampleError, match=message):
        pool_unpool_net((1, 1, 45, 60), param_str)


@pytest.mark.parametrize("param_str", ['{"scale": 2}', '{"upsample_h": 45, "upsample_w": 60}'])
def test_size_keys_with_reference_bottom_are_contradictory(param_str):
    with pytest.raises(UpsampleError, match="third bottom gives the output size"):
        pool_unpool_net((1, 1, 45, 60), param_str, reference=True)


@pytest.mark.parametrize(
    "param_str,message",
    [
        # The original's silent scrambling: a width that no 2x2 pool of 45x60 -> 23x30 came from.
        ('{"upsample_h": 45, "upsample_w": 62}', r"upsample_w=62 does not fit a mask of 23x30.*59\.\.60"),
        ('{"upsample_h": 47, "upsample_w": 60}', r"upsample_h=47 does not fit"),
        ('{"upsample_h": 44, "upsample_w": 60}', r"upsample_h=44 does not fit"),
    ],
)
def test_width_that_does_not_fit_the_mask(param_str, message):
    with pytest.raises(UpsampleError, match=message):
        pool_unpool_net((1, 1, 45, 60), param_str)


def test_values_and_mask_of_different_shape():
    message = r"values \(1, 2, 4, 4\) and mask \(1, 2, 4, 5\) must have the same shape"
    with pytest.raises(UpsampleError, match=message):
        direct_net((1, 2, 4, 4), (1, 2, 4, 5))
    with pytest.raises(UpsampleError, match="same shape"):
        upsample_forward(np.zeros((1, 1, 2, 2), np.float32), np.zeros((1, 1, 2, 3), np.float32), 4, 4)


def test_wrong_number_of_bottoms():
    n = caffe.NetSpec()
    n.values = L.Input(shape=dict(dim=[1, 1, 2, 2]))
    n.up = _upsample(n.values)
    with pytest.raises(UpsampleError, match=r"needs bottoms \[values, mask\]"):
        net_from_spec(n)


@pytest.mark.parametrize(
    "bad_index,message",
    [(-1, "negative index"), (16, "index 16 is out of range for the 4x4 output"), (np.nan, "negative")],
)
def test_bad_mask_index_checked_on_every_forward(bad_index, message):
    # A backward after a failed forward has no validated indices to reuse, so it checks the mask again.
    net = direct_net((2, 3, 2, 2), param_str='{"scale": 2}')
    net.blobs["values"].data[...] = 1
    net.blobs["mask"].data[...] = np.array([0, 3, 8, 10], np.float32).reshape(2, 2)
    net.forward()  # a valid mask first: the check is not a one-off at setup
    net.blobs["mask"].data[1, 2, 1, 1] = bad_index
    with pytest.raises(UpsampleError, match=message):
        net.forward()
    with pytest.raises(UpsampleError, match=message):
        net.backward()


def test_reference_smaller_than_mask_range():
    # A reference that is not the pooling input: indices fall outside its plane.
    net = direct_net((1, 1, 2, 2), param_str="", reference_shape=(1, 1, 3, 3))
    net.blobs["values"].data[...] = 1
    net.blobs["mask"].data[...] = np.array([0, 2, 6, 9], np.float32).reshape(2, 2)
    with pytest.raises(UpsampleError, match="index 9 is out of range for the 3x3 output"):
        net.forward()
    with pytest.raises(UpsampleError, match="smaller than the input"):
        direct_net((1, 1, 4, 4), param_str="", reference_shape=(1, 1, 3, 8))


def test_mask_and_reference_get_no_gradient():
    net = direct_net((1, 1, 2, 2), param_str="{}", reference_shape=(1, 1, 4, 4))
    net.blobs["mask"].data[...] = np.array([2, 5, 12, 14], np.float32).reshape(1, 1, 2, 2)
    net.blobs["mask"].diff[...] = 7
    net.blobs["ref"].diff[...] = 7
    net.forward()
    net.blobs["up"].diff[...] = 1
    net.backward()
    assert np.all(net.blobs["mask"].diff == 7) and np.all(net.blobs["ref"].diff == 7)
    assert np.all(net.blobs["values"].diff == 1)


def test_param_str_round_trip_of_every_key():
    # Every caffe-segnet key is accepted where caffe-segnet accepts it.
    for params in [
        {"scale": 2, "pad_out_h": True, "pad_out_w": False},
        {"scale_h": 2, "scale_w": 2, "pad_out_h": True, "pad_out_w": False},
        {"scale": 2, "upsample_h": 45, "upsample_w": 60},
        {"scale_h": 2, "scale_w": 2, "upsample_h": 45, "upsample_w": 60},
    ]:
        assert pool_unpool_net((1, 1, 45, 60), json.dumps(params)).blobs["up"].data.shape == (1, 1, 45, 60)


def test_pad_out_w_on_an_even_width_is_caught_by_the_range_check():
    # 23x30 -> 12x15 -> pad_out_w gives 29 columns, not 30: both pool to 15, so only the index range can tell.
    # With increasing input every window's max is its bottom-right element, index 22*30 + 29 = 689 >= 23*29.
    shape = (1, 1, 23, 30)
    net = pool_unpool_net(shape, '{"pad_out_h": true, "pad_out_w": true}')
    net.blobs["data"].data[...] = np.arange(23 * 30, dtype=np.float32).reshape(shape)
    with pytest.raises(UpsampleError, match="index 689 is out of range for the 23x29 output"):
        net.forward()


def test_backward_without_a_forward_reads_the_mask():
    # The layer reuses the last forward's indices; with none (fresh net) it reads and checks the mask itself.
    net = direct_net((1, 1, 2, 2), param_str="{}", reference_shape=(1, 1, 4, 4))
    net.blobs["mask"].data[...] = np.array([2, 5, 12, 14], np.float32).reshape(1, 1, 2, 2)
    net.blobs["up"].diff[...] = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    net.backward()
    assert np.array_equal(net.blobs["values"].diff.reshape(-1), [2, 5, 12, 14])


def test_backward_uses_the_indices_of_the_last_forward():
    # Like BVLC's Pooling (max_idx_) and Dropout (rand_vec_): backward follows what the last forward did.
    net = direct_net((1, 1, 2, 2), param_str="{}", reference_shape=(1, 1, 4, 4))
    net.blobs["mask"].data[...] = np.array([2, 5, 12, 14], np.float32).reshape(1, 1, 2, 2)
    net.forward()
    net.blobs["mask"].data[...] = np.array([0, 1, 2, 3], np.float32).reshape(1, 1, 2, 2)
    net.blobs["up"].diff[...] = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    net.backward()
    assert np.array_equal(net.blobs["values"].diff.reshape(-1), [2, 5, 12, 14])


def test_backward_overwrites_the_values_diff_and_repeats():
    """Caffe layers write their bottom diffs, they do not add to them (only parameter diffs accumulate, and
    Net::ClearParamDiffs clears those alone): a stale diff in the values blob and a second backward must both
    leave PyTorch's gradient of the pooled values, exactly. One backward on a fresh (zero) diff cannot tell."""
    shape = (2, 3, 45, 60)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(np.float32)
    top_diff = rng.standard_normal(shape).astype(np.float32)
    _, _, _, pooled_grad, _ = torch_pool_unpool(x, top_diff)
    net = pool_unpool_net(shape, '{"scale": 2, "pad_out_h": true}')
    net.blobs["data"].data[...] = x
    net.blobs["pool"].diff[...] = 123.0  # what an earlier iteration might have left there
    net.forward()
    for _ in range(2):
        net.blobs["up"].diff[...] = top_diff
        net.backward()
        assert np.array_equal(net.blobs["pool"].diff, pooled_grad)
