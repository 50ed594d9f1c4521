"""The nets and the solver a training run writes into its net/ folder, and the one edit made to them afterwards
(the data layer's parameters)."""

from __future__ import annotations

import json
from pathlib import Path

from caffe.proto import caffe_pb2

from layers.camvid_data import MODULE as DATA_LAYER_MODULE
from prototxt import Options, build_net, build_solver
from segnet_bvlc.core.device import gpu_device
from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.training.config import TrainConfig, absolute


def set_data_param(net_param, **updates) -> None:
    """Update the JSON param_str of the CamVidData layer (start_iter on resume, RAM cache)."""
    for layer in net_param.layer:
        if layer.type == "Python" and layer.python_param.module == DATA_LAYER_MODULE:
            params = json.loads(layer.python_param.param_str or "{}")
            params.update(updates)
            layer.python_param.param_str = json.dumps(params, sort_keys=True)


def _absolute_class_weights(net_param) -> None:
    """Class-weight files are repo-relative in the committed prototxts; a run folder names them absolutely."""
    for layer in net_param.layer:
        if layer.type == "InfogainLoss" and layer.infogain_loss_param.source:
            src = Path(layer.infogain_loss_param.source)
            if not src.is_absolute():
                layer.infogain_loss_param.source = str((ROOT / src).resolve())


def solver_settings(cfg: TrainConfig) -> dict:
    """The solver fields a run sets beyond the protocol's (build_solver): its own learning settings, no snapshots
    or display by Caffe (this package takes the snapshots and keeps best/last), and the device it runs on."""
    mode = caffe_pb2.SolverParameter
    return {"base_lr": cfg.base_lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay,
            "iter_size": cfg.iter_size, "snapshot": 0, "display": 0,
            "solver_mode": mode.GPU if gpu_device() else mode.CPU}


def write_nets(cfg: TrainConfig, run: Path, start_iter: int = 0) -> dict[str, Path]:
    """Generate train/deploy prototxts and the solver for this run (absolute paths, so the folder stands alone).

    Caffe writes snapshots under snapshots/.writing/; `segnet_bvlc.training.snapshots.commit_snapshot` moves them
    into place when whole."""
    net_dir = run / "net"
    common = dict(classes=cfg.classes, height=cfg.height, width=cfg.width, batchnorm=cfg.batchnorm,
                  dropout=cfg.dropout)
    train_opts = Options(split="train", batch=cfg.batch, source=absolute(cfg.train_source), seed=cfg.seed,
                         mirror=cfg.mirror, class_weights=cfg.class_weights, **common)
    train = build_net(cfg.arch, train_opts)
    _absolute_class_weights(train)
    # The data layer counts forward passes: iter_size of them per solver iteration.
    set_data_param(train, start_iter=start_iter * cfg.iter_size, cache=True)
    deploy = build_net(cfg.arch, Options(split="deploy", batch=1, **common))
    paths = {"train": net_dir / "train.prototxt", "deploy": net_dir / "deploy.prototxt",
             "solver": net_dir / "solver.prototxt"}
    write_text_atomic(paths["train"], str(train))
    write_text_atomic(paths["deploy"], str(deploy))
    # build_solver sets the protocol's fields (SGD, fixed policy, random_seed from the options, no test net);
    # the run's own settings replace its numbers (build_solver has no arguments for them yet).
    solver = build_solver(cfg.arch, train_opts, train_net=str(paths["train"].resolve()),
                          snapshot_prefix=str((run / "snapshots" / ".writing" / "iter").resolve()),
                          max_iter=cfg.max_iter)
    for field, value in solver_settings(cfg).items():
        setattr(solver, field, value)
    write_text_atomic(paths["solver"], str(solver))
    return paths
