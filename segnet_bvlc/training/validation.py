"""Validation during training: full-pass BatchNorm statistics, then G, C and mIoU on the validation split."""

from __future__ import annotations

import gc
from pathlib import Path

from segnet_bvlc import bn_stats
from segnet_bvlc.core.faults import fault_point
from segnet_bvlc.core.files import atomic_path
from segnet_bvlc.evaluation import metrics
from segnet_bvlc.lmdb_data.pairs import PairReader
from segnet_bvlc.nets.load import load_net, load_net_param, net_from_param, read_weights


class Validator:
    """Validation as the paper does it (§3.3, §4): BatchNorm statistics from a full pass over the training set
    with the weights of a snapshot, then G, C and mIoU on the validation split.

    BVLC's moving averages (moving_average_fraction 0.999) are no substitute early in training: after a few
    hundred iterations they are close to a uniform average over every past iteration's weights.

    Memory: a validation runs while the solver is released (the training snapshots, frees the solver, validates
    from the snapshot's weights, then restores the solver from the same snapshot, exactly as a resume does), so
    it adds nothing to the training's peak: the statistics pass net (forward only, at the training batch) and
    the scoring net (batch 1) are each smaller than the training net, and each is released before the next is
    built. The pass keeps the training batch because the batch matters: every BatchNorm after the first sees
    inputs normalised with the statistics of its mini-batch (docs/memory.md).
    """

    def __init__(self, deploy: Path, train_source: str, val_source: str, classes: int, batch: int):
        self.deploy, self.train_source, self.batch = deploy, train_source, batch
        self.reader = PairReader(val_source, cache=True)
        self.classes = classes

    def __call__(self, weights: Path, iteration: int, save_if_better=None) -> dict:
        """Metrics of `weights`; `save_if_better(metrics)` returns a path for the scored net (weights and their
        full-pass statistics), or None."""
        weights = read_weights(weights)  # parsed once for both nets
        batches, _ = bn_stats.lmdb_batches(Path(self.train_source), self.batch)
        pass_net = net_from_param(bn_stats.in_batch_mode(load_net_param(self.deploy)), weights=weights)
        moments = bn_stats.accumulate(pass_net, batches)
        del pass_net
        gc.collect()
        fault_point("validation-statistics", iteration)
        net = load_net(self.deploy, weights)
        try:
            bn_stats.write_statistics(net, moments)
            acc = metrics.MetricAccumulator(num_classes=self.classes, boundary=False)
            for i in range(len(self.reader)):
                image, label = self.reader[i]
                net.blobs["data"].data[0] = image
                prob = net.forward()["prob"][0]
                acc.update(label[0], prob.argmax(axis=0))
            cm = acc.cm
            result = {"val_global_accuracy": metrics.global_accuracy(cm),
                      "val_class_average_accuracy": metrics.class_average_accuracy(cm),
                      "val_mean_iou": metrics.mean_iou(cm)}
            target = save_if_better(result) if save_if_better else None
            if target is not None:
                with atomic_path(target) as tmp:
                    net.save(str(tmp))
            return result
        finally:
            del net
            gc.collect()
