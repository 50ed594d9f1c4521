"""The class-weighted loss the generators emit, forward and backward in Caffe, against PyTorch.

SegNet's median-frequency balancing (paper §3.3) is caffe-segnet's weighted SoftmaxWithLoss; on BVLC Caffe the
generators emit InfogainLoss with H = diag(w) and `normalization: VALID` (prototxt/blocks.py, docs/caffe.md §3):
loss = -Σ_valid w[y]·log softmax(score)[y] / N_valid, with void (label 11) pixels ignored. The oracle is
torch.nn.functional.cross_entropy(weight=w, ignore_index=11, reduction="sum") / N_valid (docs/caffe.md §3.3:
torch's "mean" divides by Σ w[y] instead), and its autograd gradient. The weights PyTorch gets are read from
the JSON files (data/camvid.json, data/class_weights/camvid_recomputed.json), not from the .binaryproto Caffe
reads.
"""

from __future__ import annotations

import json

import caffe
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from caffe.proto import caffe_pb2

from prototxt import Options, build_net
from segnet_bvlc.dataset.camvid import NUM_CLASSES as K
from segnet_bvlc.dataset.camvid import VOID
from tests.conftest import ROOT, net_from_spec

N, H, W = 2, 16, 20  # the generators' minimum size is 16; H != W catches a transposed layout


def json_weights(name: str) -> np.ndarray | None:
    if name == "published":
        return np.array(json.loads((ROOT / "data" / "camvid.json").read_text())["published_weights"])
    if name == "recomputed":
        data = json.loads((ROOT / "data" / "class_weights" / "camvid_recomputed.json").read_text())
        return np.array(data["median_frequency"])
    return None  # "none": the plain softmax loss


def generated_train_net(class_weights: str) -> caffe_pb2.NetParameter:
    """SegNet-Basic's train net from the generator, with Input layers for data and label."""
    param = build_net("segnet-basic", Options(split="train", data="input", height=H, width=W, batch=N,
                                              class_weights=class_weights))
    for layer in param.layer:  # the class-weight files are repo-relative; tests may run from anywhere
        if layer.type == "InfogainLoss":
            layer.infogain_loss_param.source = str(ROOT / layer.infogain_loss_param.source)
    return param


def loss_layer(param: caffe_pb2.NetParameter) -> caffe_pb2.LayerParameter:
    (layer,) = [layer for layer in param.layer if layer.type in ("InfogainLoss", "SoftmaxWithLoss")]
    return layer


def loss_only_net(class_weights: str):
    """Input score (N x K x H x W) and label -> the generator's own loss layer, copied as it is emitted."""
    layer = loss_layer(generated_train_net(class_weights))
    net = caffe_pb2.NetParameter()
    net.force_backward = True  # the Input score needs its diff
    for name, dims in (("score", [N, K, H, W]), ("label", [N, 1, H, W])):
        top = net.layer.add(name=name, type="Input", top=[name])
        top.input_param.shape.add(dim=dims)
    copy = net.layer.add()
    copy.CopyFrom(layer)
    copy.bottom[:] = ["score", "label"]
    return net_from_spec(net, caffe.TRAIN), layer.type


def torch_loss_and_grad(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None):
    s = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    target = torch.from_numpy(labels.astype(np.int64))
    w = None if weights is None else torch.from_numpy(weights.astype(np.float64))
    valid = int((target != VOID).sum())
    loss = F.cross_entropy(s, target, weight=w, ignore_index=VOID, reduction="sum") / valid
    loss.backward()
    return float(loss.detach()), s.grad.numpy()


def random_labels(rng, shape) -> np.ndarray:
    labels = rng.integers(0, K, shape)
    labels[rng.random(shape) < 0.2] = VOID  # about a fifth of the pixels void
    labels[0, 0, :] = VOID                   # and one whole row
    return labels


def assert_grad_close(caffe_grad: np.ndarray, torch_grad: np.ndarray) -> None:
    scale = np.abs(torch_grad).max()
    np.testing.assert_allclose(caffe_grad, torch_grad, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("class_weights", ["published", "recomputed", "none"])
def test_loss_and_score_gradient_equal_torch(class_weights):
    net, kind = loss_only_net(class_weights)
    assert kind == ("SoftmaxWithLoss" if class_weights == "none" else "InfogainLoss")
    rng = np.random.default_rng(0)
    scores = (rng.normal(size=(N, K, H, W)) * 3).astype(np.float32)
    labels = random_labels(rng, (N, H, W))
    net.blobs["score"].data[...] = scores
    net.blobs["label"].data[...] = labels[:, None].astype(np.float32)
    loss = float(net.forward()["loss"])
    net.backward()
    grad = net.blobs["score"].diff.copy()

    expected_loss, expected_grad = torch_loss_and_grad(scores, labels, json_weights(class_weights))
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert_grad_close(grad, expected_grad)
    void = labels == VOID
    assert (grad.transpose(0, 2, 3, 1)[void] == 0).all()  # ignored pixels get no gradient
    assert np.abs(grad.transpose(0, 2, 3, 1)[~void]).min() > 0


def test_hand_computed_two_pixel_case():
    """Two pixels, both scores 0 for every class (p = 1/11 each), labels 3 and void: the loss is
    w_3·log 11 / 1 (one valid pixel; torch's weighted "mean" would divide by w_3 and give log 11), and the
    gradient at the valid pixel is w_3·(1/11 - [k == 3])."""
    layer = loss_layer(generated_train_net("published"))
    net = caffe_pb2.NetParameter()
    net.force_backward = True
    for name, dims in (("score", [1, K, 1, 2]), ("label", [1, 1, 1, 2])):
        net.layer.add(name=name, type="Input", top=[name]).input_param.shape.add(dim=dims)
    net.layer.add().CopyFrom(layer)
    net.layer[-1].bottom[:] = ["score", "label"]
    net = net_from_spec(net, caffe.TRAIN)
    w3 = 0.1417  # Road's published weight, SegNet-Tutorial's segnet_train.prototxt
    net.blobs["score"].data[...] = 0
    net.blobs["label"].data[...] = np.array([3, VOID], np.float32).reshape(1, 1, 1, 2)
    assert float(net.forward()["loss"]) == pytest.approx(w3 * np.log(11), rel=1e-6)
    net.backward()
    expected = np.full(K, w3 / 11)
    expected[3] -= w3
    np.testing.assert_allclose(net.blobs["score"].diff[0, :, 0, 0], expected, rtol=1e-6, atol=1e-9)
    assert (net.blobs["score"].diff[0, :, 0, 1] == 0).all()


def test_generated_train_net_backpropagates_the_weighted_loss():
    """The whole generated SegNet-Basic train net (published weights) at 16x20: its loss and the gradient
    arriving at its classifier's output equal PyTorch's on the classifier scores the net computed."""
    param = generated_train_net("published")
    net = net_from_spec(param, caffe.TRAIN)
    rng = np.random.default_rng(1)
    labels = random_labels(rng, (N, H, W))
    net.blobs["data"].data[...] = rng.uniform(0, 255, (N, 3, H, W))
    net.blobs["label"].data[...] = labels[:, None].astype(np.float32)
    score = loss_layer(param).bottom[0]
    loss = float(net.forward()["loss"])
    net.backward()
    scores = net.blobs[score].data.copy()
    expected_loss, expected_grad = torch_loss_and_grad(scores, labels, json_weights("published"))
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert_grad_close(net.blobs[score].diff, expected_grad)
