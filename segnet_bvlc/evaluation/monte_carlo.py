"""Monte Carlo dropout (Bayesian SegNet): the mean of sampled softmax outputs and their variance.

A sampling net (segnet_bvlc.nets.load.load_net(..., sampling=True)) has layers.mc_dropout's MCDropout in place
of every Dropout layer, which samples a new mask at every forward as caffe-segnet's `sample_weights_test` does.
The uncertainty is Bayesian SegNet's (Kendall et al., and SegNet-Tutorial's test_bayesian_segnet.py): the
variance of the samples of each class, averaged over the classes, at the net's size.
"""

from __future__ import annotations

import numpy as np

from segnet_bvlc.evaluation.deploy_net import SegmentError, forward, net_input


def sample_probabilities(net, bgr_image: np.ndarray, samples: int, seed: int | None = 0,
                         interpolation: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo dropout: `samples` stochastic forwards of a net with MCDropout layers (load_net(...,
    sampling=True)), the masks reseeded from `seed` first (None: not reseeded). Returns the mean of the sampled
    scores (K x h x w float32) and Bayesian SegNet's uncertainty: the variance over the samples of each class's
    score, averaged over the classes (h x w float32; np.var's population variance). With samples=1 the mean is
    that single pass's scores and the uncertainty is 0."""
    from layers.mc_dropout import mc_layers, seed_net  # imports caffe (heavy): only when sampling

    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise SegmentError(f"samples must be an integer >= 1, got {samples!r}")
    if not mc_layers(net):
        raise SegmentError("the net has no sampling dropout layer: Monte Carlo samples need a net with Dropout "
                           "layers (trained with --dropout), loaded with sampling=True")
    if seed is not None:
        seed_net(net, seed)
    data = net_input(net, bgr_image, interpolation)
    total = total_sq = None
    for _ in range(samples):
        p = forward(net, data).astype(np.float64)
        total = p if total is None else total + p
        total_sq = p * p if total_sq is None else total_sq + p * p
    mean = total / samples
    variance = np.maximum(total_sq / samples - mean * mean, 0.0)
    return mean.astype(np.float32), variance.mean(axis=0).astype(np.float32)
