"""tools.segment on two real CamVid images with tiny deploy nets whose output is known in advance.

The channel-argmax net is Input -> 1x1 Convolution to 11 classes (classes 0, 1, 2 copy B, G, R; the others
score 0; no bias) -> Softmax `prob`, so the predicted class of a pixel at the net's size is the index of its
largest BGR channel (ties: the first), computed here with NumPy and OpenCV only. The hue net (smooth
probabilities, every class somewhere) checks the default bilinear score upsampling against PyTorch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import caffe
import cv2
import numpy as np
import pytest
from caffe import layers as L
from PIL import Image

from segnet_bvlc.dataset import camvid
from segnet_bvlc.evaluation import segment
from tests.conftest import ROOT, net_from_spec
from tools import segment as segment_command


def channel_argmax_net(h: int, w: int, classes: int = camvid.NUM_CLASSES):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, h, w]))
    n.score = L.Convolution(n.data, num_output=classes, kernel_size=1, bias_term=False,
                            weight_filler=dict(type="constant", value=0))
    n.prob = L.Softmax(n.score)
    return n


def make_net(h: int, w: int, classes: int = camvid.NUM_CLASSES):
    net = net_from_spec(channel_argmax_net(h, w, classes))
    weights = np.zeros((classes, 3, 1, 1), np.float32)
    for c in range(min(classes, 3)):
        weights[c, c, 0, 0] = 1.0  # class c <- channel c (B, G, R)
    net.params["score"][0].data[...] = weights
    return net


@pytest.fixture(scope="module")
def images(camvid_dir) -> list[Path]:
    return [image for image, _ in camvid.read_list(camvid_dir, "test")[:2]]


def expected_labels(bgr: np.ndarray, h: int, w: int) -> np.ndarray:
    """upsample="nearest" written out: the documented "auto" rule (a box filter, INTER_AREA, when shrinking both
    sides, bilinear otherwise), the channel argmax at the net's size, labels back to the image size by nearest
    neighbour."""
    size = bgr.shape[:2]
    small = bgr
    if size != (h, w):
        flag = cv2.INTER_AREA if h <= size[0] and w <= size[1] else cv2.INTER_LINEAR
        small = cv2.resize(bgr, (w, h), interpolation=flag)
    labels = small.argmax(axis=2).astype(np.uint8)
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def test_predict_at_the_image_size(images):
    net = make_net(360, 480)
    bgr = cv2.imread(str(images[0]))
    labels = segment.predict(net, bgr)
    assert labels.shape == bgr.shape[:2] and labels.dtype == np.uint8
    assert (labels == bgr.argmax(axis=2)).all()
    assert len(np.unique(labels)) > 1  # the test image really exercises the argmax


def test_predict_resizes_input_and_output_nearest_on_request(images):
    net = make_net(90, 120)
    bgr = cv2.imread(str(images[1]))
    labels = segment.predict(net, bgr, upsample="nearest")
    assert labels.shape == (360, 480)
    assert (labels == expected_labels(bgr, 90, 120)).all()
    pred = segment.predict_image(net, bgr, upsample="nearest")
    assert (pred.labels == labels).all() and pred.uncertainty is None and pred.samples == 0
    # the winning score is the net's largest probability, enlarged the same way
    best = cv2.resize(pred.probabilities.max(axis=0), (480, 360), interpolation=cv2.INTER_NEAREST)
    assert (pred.score == best).all()


def test_default_is_the_evaluations_bilinear_upsampling(images):
    """predict() and predict_image() default to bilinear score upsampling, which differs from the nearest
    labels on this image, and the CLI's default is the same (build_parser)."""
    bgr = cv2.imread(str(images[0]))
    net = hue_net(90, 120)
    default = segment.predict(net, bgr)
    assert (default == segment.predict(net, bgr, upsample="bilinear")).all()
    assert (default != segment.predict(net, bgr, upsample="nearest")).mean() > 0.01
    assert segment_command.build_parser().get_default("upsample") == "bilinear"
    with pytest.raises(segment.SegmentError, match="unknown upsample"):
        segment.predict(net, bgr, upsample="bicubic")


def test_segment_images_writes_labels_colours_overlays_and_legend(images, tmp_path):
    net = make_net(180, 240)
    written = segment.segment_images(net, images, tmp_path, alpha=0.5, upsample="nearest")
    assert len(written) == 2 and (tmp_path / "legend.png").is_file()
    for image_path, out in zip(images, written):
        bgr = cv2.imread(str(image_path))
        labels = np.array(Image.open(out["labels"]))
        assert Path(out["labels"]).name == image_path.name  # named like the GT, for tools.evaluate
        assert (labels == expected_labels(bgr, 180, 240)).all()
        assert "uncertainty" not in out and out["seconds"] > 0
        colour = np.array(Image.open(out["colour"]))
        assert (colour == camvid.COLOURS[labels]).all()
        over = np.array(Image.open(out["overlay"])).astype(int)
        blend = np.rint(0.5 * bgr[..., ::-1] + 0.5 * camvid.COLOURS[labels])
        assert np.abs(over - blend).max() <= 1
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    legend = np.array(Image.open(tmp_path / "legend.png"))
    assert legend.ndim == 3 and legend.shape[0] >= 11 * 22  # one row per CamVid class


def test_command_line_end_to_end(images, camvid_dir, tmp_path):
    pairs = camvid.read_list(camvid_dir, "test")[:2]
    assert [image for image, _ in pairs] == images
    spec = channel_argmax_net(90, 120)
    model = tmp_path / "deploy.prototxt"
    model.write_text(str(spec.to_proto()))
    net = make_net(90, 120)
    weights = tmp_path / "w.caffemodel"
    net.save(str(weights))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "tools.segment", "--model", str(model), "--weights", str(weights)]
    r = subprocess.run([*cmd, "--out", str(out), "--json", "--upsample", "nearest", *map(str, images)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert len(result["images"]) == 2
    bgr = cv2.imread(str(images[0]))
    assert (np.array(Image.open(out / images[0].name)) == expected_labels(bgr, 90, 120)).all()
    # The written label PNGs, scored by tools.evaluate against the real CamVid ground truth, give the global
    # accuracy counted here with NumPy: correct non-void pixels / non-void pixels, over both images.
    from segnet_bvlc.evaluation import evaluate
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    correct = counted = 0
    for image, label in pairs:
        (gt_dir / image.name).write_bytes(label.read_bytes())
        gt = np.array(Image.open(label))
        predicted = expected_labels(cv2.imread(str(image)), 90, 120)
        valid = gt != 11  # void
        correct += int((predicted == gt)[valid].sum())
        counted += int(valid.sum())
    expected_g = correct / counted
    assert 0.0 < expected_g < 1.0  # a real, imperfect score: an error in either direction shows
    assert evaluate.evaluate_dirs(out, gt_dir, boundary=False)["global_accuracy"] == pytest.approx(expected_g,
                                                                                                    rel=1e-12)

    bad = subprocess.run([*cmd, "--out", str(tmp_path / "bad"), str(tmp_path / "missing.png")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "missing.png" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "bad").exists()  # no lone legend.png when no image succeeded


def hue_spec(h: int, w: int):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, h, w]))
    n.score = L.Convolution(n.data, num_output=camvid.NUM_CLASSES, kernel_size=1)
    n.prob = L.Softmax(n.score)
    return n


def hue_net(h: int, w: int):
    """Input -> 1x1 conv -> Softmax whose class c scores the pixel's chroma along the direction 2πc/11
    (0.2·(cos·(B − G) + sin·(G − R))) plus a bias 0.03·c that breaks the ties of grey pixels: every class wins
    somewhere on a CamVid image, and the probabilities vary smoothly, so upsampling them bilinearly moves the
    argmax boundaries."""
    net = net_from_spec(hue_spec(h, w))
    net.params["score"][1].data[...] = 0.03 * np.arange(camvid.NUM_CLASSES)
    theta = 2 * np.pi * np.arange(camvid.NUM_CLASSES) / camvid.NUM_CLASSES
    weights = 0.2 * (np.cos(theta)[:, None] * [1, -1, 0] + np.sin(theta)[:, None] * [0, 1, -1])
    net.params["score"][0].data[...] = weights[:, :, None, None]
    return net


def test_bilinear_upsampling_of_scores_equals_torch(images):
    """predict(upsample="bilinear"): the net's class scores (its `prob` output) resized bilinearly to the image
    size, then the argmax. Oracle: the same net fed the image shrunk with INTER_AREA (the documented rule for
    shrinking, written as a literal), then torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False) of `prob` (pixel centres aligned, edges clamped: OpenCV's INTER_LINEAR convention)
    and the argmax."""
    import torch
    import torch.nn.functional as F

    h, w = 90, 120
    bgr = cv2.imread(str(images[0]))
    pred = segment.predict_image(hue_net(h, w), bgr, upsample="bilinear")
    labels = pred.labels
    assert labels.shape == bgr.shape[:2] and labels.dtype == np.uint8

    oracle = hue_net(h, w)
    small = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    oracle.blobs["data"].data[0] = small.transpose(2, 0, 1).astype(np.float32)
    prob = torch.from_numpy(oracle.forward()["prob"].astype(np.float64))
    up = F.interpolate(prob, size=bgr.shape[:2], mode="bilinear", align_corners=False)[0].numpy()
    expected = up.argmax(axis=0)
    top2 = np.sort(up, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-5  # leave out near-ties, where float32 and float64 rounding may differ
    assert clear.mean() > 0.99
    assert (labels[clear] == expected[clear]).all()
    # the score shown with a label is that class's upsampled probability
    assert np.abs(pred.score - up.max(axis=0)).max() < 1e-5
    # The test can tell bilinear from nearest: upsampling the small argmax instead changes many pixels.
    nearest = cv2.resize(prob[0].numpy().argmax(axis=0).astype(np.uint8), (bgr.shape[1], bgr.shape[0]),
                         interpolation=cv2.INTER_NEAREST)
    assert (nearest != expected).mean() > 0.01
    assert len(np.unique(expected)) == camvid.NUM_CLASSES


def test_command_line_default_is_bilinear(images, tmp_path):
    """Without --upsample the command writes the evaluation's labels: predict_image's bilinear ones, which the
    PyTorch oracle of the test above confirms on the same hue net."""
    import torch
    import torch.nn.functional as F

    model = tmp_path / "deploy.prototxt"
    model.write_text(str(hue_spec(90, 120).to_proto()))
    net = hue_net(90, 120)
    weights = tmp_path / "w.caffemodel"
    net.save(str(weights))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "tools.segment", "--model", str(model), "--weights", str(weights),
                        "--out", str(out), "--json", str(images[1])],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["upsample"] == "bilinear"
    written = np.array(Image.open(out / images[1].name))
    bgr = cv2.imread(str(images[1]))
    assert (written == segment.predict(net, bgr)).all()
    small = cv2.resize(bgr, (120, 90), interpolation=cv2.INTER_AREA)
    net.blobs["data"].data[0] = small.transpose(2, 0, 1).astype(np.float32)
    prob = torch.from_numpy(net.forward()["prob"].astype(np.float64))
    up = F.interpolate(prob, size=bgr.shape[:2], mode="bilinear", align_corners=False)[0].numpy()
    top2 = np.sort(up, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-5
    assert clear.mean() > 0.99 and (written[clear] == up.argmax(axis=0)[clear]).all()
