"""A deploy net as segmentation uses it: loaded through the one loader, its image input and score output.

The deploy net takes one raw 0-255 BGR image (Input `data` 1x3xHxW, no mean subtraction, as SegNet-Tutorial
trains) resized to its H x W as the training images were (segnet_bvlc.lmdb_data.convert's `interpolation` rule),
and outputs class probabilities in blob `prob`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.dataset.camvid import interpolation_for
from segnet_bvlc.nets import load as nets


class SegmentError(SegnetError):
    """Bad segmentation input; the message names the file and the problem."""


def load_net(model: Path | str, weights: Path | str, sampling: bool = False):
    """segnet_bvlc.nets.load.load_net (model and weights checked; sampling=True: the Monte Carlo dropout net),
    its refusals as SegmentError, the error the segmentation's callers handle."""
    try:
        return nets.load_net(model, weights, sampling=sampling)
    except ValueError as e:  # WeightsError, or a prototxt that does not parse
        raise SegmentError(str(e)) from None


def input_blob(net) -> tuple[str, int, int]:
    """(name, H, W) of the net's image input (its first input blob, N x 3 x H x W)."""
    if not net.inputs:
        raise SegmentError("the net has no input blob (a deploy net starts with an Input layer)")
    name = net.inputs[0]
    shape = net.blobs[name].data.shape
    if len(shape) != 4 or shape[1] != 3:
        raise SegmentError(f"input blob '{name}' has shape {shape}, expected N x 3 x H x W")
    return name, shape[2], shape[3]


def output_blob(net) -> str:
    """`prob` (SegNet-Tutorial's deploy output), else the net's last output."""
    return "prob" if "prob" in net.blobs else net.outputs[-1]


def num_classes(net) -> int:
    return net.blobs[output_blob(net)].data.shape[1]


def net_input(net, bgr_image: np.ndarray, interpolation: str = "auto") -> np.ndarray:
    """The image as the net takes it: resized to the net's H x W with segnet_bvlc.lmdb_data.convert's
    `interpolation` rule (nothing is done when the sizes agree), 3 x H x W float32 raw 0-255 BGR."""
    if bgr_image.ndim != 3 or bgr_image.shape[2] != 3:
        raise SegmentError(f"expected an H x W x 3 BGR image, got shape {bgr_image.shape}")
    _, h, w = input_blob(net)
    size = bgr_image.shape[:2]
    image = bgr_image
    if size != (h, w):
        image = cv2.resize(image, (w, h), interpolation=interpolation_for(size, (h, w), interpolation))
    return image.transpose(2, 0, 1).astype(np.float32)


def forward(net, data: np.ndarray) -> np.ndarray:
    """One forward at batch 1; a copy of the output scores (K x h x w float32)."""
    name, h, w = input_blob(net)
    if net.blobs[name].data.shape[0] != 1:
        net.blobs[name].reshape(1, 3, h, w)
        net.reshape()
    net.blobs[name].data[0] = data
    net.forward()
    scores = net.blobs[output_blob(net)].data[0]
    if scores.ndim != 3:
        raise SegmentError(f"output blob '{output_blob(net)}' has shape {scores.shape}, expected K x H x W")
    return scores.copy()
