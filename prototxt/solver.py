"""Solvers for the paper's two protocols, with every number from the protocol table (prototxt/protocol.py:
docs/paper.md §2.1, §2.2): SGD, fixed learning rate, momentum, weight decay, max_iter, snapshot interval.
`random_seed` comes from the options, solver_mode is CPU (a CPU-only Caffe aborts on GPU mode; `caffe train
--gpu N` and the training tool's `caffe.set_mode_gpu()` still use the GPU).
No test net unless one is given: the test net needs BatchNorm statistics computed first (tools.bn_stats),
so validation during training is the training tool's job, not Caffe's `test_interval`.
"""

from __future__ import annotations

from caffe.proto import caffe_pb2

from .options import Options
from .protocol import settings
from .registry import resolve


def build_solver(arch: str, opts: Options | None = None, train_net: str | None = None, test_net: str | None = None,
                 snapshot_prefix: str | None = None, max_iter: int | None = None, test_iter: int = 101,
                 test_interval: int = 1000) -> caffe_pb2.SolverParameter:
    """The SolverParameter of `arch` under its protocol (or `opts.protocol`).

    Paths are written as given (the committed solvers use repo-relative ones; Caffe resolves them from the
    working directory, which is the repository root for every tool)."""
    o = resolve(arch, (opts or Options()).replace(split="train"))
    p = settings(arch, "paper", o.protocol)
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
    s.momentum = p["momentum"]
    s.weight_decay = p["weight_decay"]
    s.max_iter = max_iter if max_iter is not None else p["max_iter"]
    s.display = p["log_every"]
    s.average_loss = p["log_every"]
    s.snapshot = p["snapshot_every"]
    s.snapshot_prefix = snapshot_prefix or f"runs/{arch}/snapshots/{arch}"
    s.random_seed = o.seed
    s.solver_mode = caffe_pb2.SolverParameter.CPU
    return s
