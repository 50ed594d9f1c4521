"""Solvers for the paper's two protocols (docs/paper.md §2.1, §2.2, §2.3).

- table1 (decoder-variant study, SegNet-Basic family): SGD, fixed lr 0.1, momentum 0.9, batch 12 (in the
  train net); max_iter 10000 as SegNet-Tutorial's segnet_basic_solver (the paper: "until convergence").
- benchmark (SegNet, FCN, DeconvNet, DeepLab): SGD, fixed lr 1e-3, momentum 0.9, batch 5; max_iter 40000
  (the first checkpoint of Table 3, and segnet_solver's).
Both: weight decay 5e-4 (the public solvers; the paper does not say), snapshot every 1000 iterations (the
paper validates every 1000), `random_seed` from the options, solver_mode CPU (a CPU-only Caffe aborts on
GPU mode; `caffe train --gpu N` and the training tool's `caffe.set_mode_gpu()` still use the GPU).
No test net unless one is given: the test net needs BatchNorm statistics computed first (tools.bn_stats),
so validation during training is the training tool's job, not Caffe's `test_interval`.
"""

from __future__ import annotations

from caffe.proto import caffe_pb2

from .options import Options
from .registry import resolve

PROTOCOLS = {
    "table1": dict(base_lr=0.1, max_iter=10000),
    "benchmark": dict(base_lr=0.001, max_iter=40000),
}


def build_solver(arch: str, opts: Options | None = None, train_net: str | None = None, test_net: str | None = None,
                 snapshot_prefix: str | None = None, max_iter: int | None = None, test_iter: int = 101,
                 test_interval: int = 1000) -> caffe_pb2.SolverParameter:
    """The SolverParameter of `arch` under its protocol (or `opts.protocol`).

    Paths are written as given (the committed solvers use repo-relative ones; Caffe resolves them from the
    working directory, which is the repository root for every tool)."""
    o = resolve(arch, (opts or Options()).replace(split="train"))
    p = PROTOCOLS[o.protocol]
    s = caffe_pb2.SolverParameter()
    s.train_net = train_net or f"prototxt/models/{arch}/train.prototxt"
    if test_net:
        s.test_net.append(test_net)
        s.test_iter.append(test_iter)
        s.test_interval = test_interval
        s.test_initialization = False
    s.type = "SGD"
    s.base_lr = p["base_lr"]
    s.lr_policy = "fixed"
    s.momentum = 0.9
    s.weight_decay = 0.0005
    s.max_iter = max_iter if max_iter is not None else p["max_iter"]
    s.display = 20
    s.average_loss = 20
    s.snapshot = 1000
    s.snapshot_prefix = snapshot_prefix or f"runs/{arch}/snapshots/{arch}"
    s.random_seed = o.seed
    s.solver_mode = caffe_pb2.SolverParameter.CPU
    return s
