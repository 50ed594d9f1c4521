"""One protocol table (prototxt/protocol.py), and every consumer agrees with it: for each (architecture, preset)
the run's configuration, its solver, its train net's batch, size and loss weighting, the committed solvers and
nets, tools.train's command-line defaults, and the README's table.

The expected values are written here from the paper's text (docs/paper.md §2.1 Table 1 protocol: SGD, fixed lr
0.1, momentum 0.9, batch 12, median-frequency weights; §2.2 benchmark: lr 1e-3, momentum 0.9, batch 5, no class
balancing, up to 140K iterations) and the presets' documented sizes, not read from the table under test."""

from __future__ import annotations

import argparse
import json

import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from prototxt import ARCHS
from prototxt.protocol import ARCH_PROTOCOL, PRESETS, markdown
from prototxt.registry import ARCH_LIST
from segnet_bvlc.pipeline import pipeline_config
from segnet_bvlc.training.config import config_from_args
from segnet_bvlc.training.nets import write_nets
from tests.conftest import ROOT
from tools.train import build_parser

TABLE1 = {"segnet-basic", "segnet-basic-single-channel-decoder", "segnet-basic-encoder-addition",
          "bilinear-interpolation", "fcn-basic", "fcn-basic-no-addition", "fcn-basic-no-dim-reduction",
          "fcn-basic-no-addition-no-dim-reduction"}
BENCHMARK = {"segnet", "fcn", "fcn-learnt-deconv", "deconvnet", "deeplab-largefov"}
PAPER = {"table1": dict(lr=0.1, momentum=0.9, batch=12, max_iter=10000, weights="published"),
         "benchmark": dict(lr=0.001, momentum=0.9, batch=5, max_iter=140000, weights="none")}
SIZES = {"paper": (360, 480), "quick": (90, 120), "smoke": (45, 60)}
SHORT = {"quick": dict(batch=4, max_iter=1200, weights="published", val_every=300),
         "smoke": dict(batch=2, max_iter=4, weights="none", val_every=2)}


# The one deviation from the paper's solver: the FCN-Basic family diverges at lr 0.1 in this reconstruction
# (tests/test_train.py::test_fcn_basic_family_trains_at_its_learning_rate shows both sides) and trains at 0.01.
FCN_BASIC = {a for a in TABLE1 if a.startswith("fcn-basic")}


def expected(arch: str, preset: str) -> dict:
    family = "table1" if arch in TABLE1 else "benchmark"
    e = dict(PAPER[family], val_every=1000)
    if arch in FCN_BASIC:
        e["lr"] = 0.01
    e.update(SHORT.get(preset, {}))
    e["height"], e["width"] = SIZES[preset]
    return e


def test_every_architecture_has_a_family():
    assert TABLE1 | BENCHMARK == set(ARCHS) and not TABLE1 & BENCHMARK


def _ns(arch, preset, run):
    return argparse.Namespace(arch=arch, preset=preset, run=run, lmdb=None, seed=1, init_weights=None,
                              init_force=False, max_iter=None, batch=None, iter_size=None, height=None, width=None,
                              class_weights=None, base_lr=None)


def _read(path, message):
    return text_format.Merge(path.read_text(), message)


@pytest.mark.parametrize("preset", list(SIZES))
@pytest.mark.parametrize("arch", ARCHS)
def test_run_solver_and_train_net_follow_the_table(arch, preset, tmp_path):
    assert set(PRESETS) == set(SIZES)
    e = expected(arch, preset)
    cfg = pipeline_config(_ns(arch, preset, tmp_path / "run"))
    if arch == "deconvnet" and preset != "paper":  # its valid 7x7 fc6 needs pool5 >= 7x7: inputs >= 193x193
        with pytest.raises(ValueError, match=r"deconvnet at \d+x\d+: pool5 is \d+x\d+ .* needs at least 7x7"):
            write_nets(cfg, tmp_path / "run")
        return
    assert (cfg.height, cfg.width, cfg.batch, cfg.max_iter, cfg.base_lr, cfg.momentum, cfg.class_weights,
            cfg.val_every) == (e["height"], e["width"], e["batch"], e["max_iter"], e["lr"], e["momentum"],
                               e["weights"], e["val_every"])
    assert cfg.weight_decay == 5e-4  # SegNet-Tutorial's solvers (the paper does not say)
    paths = write_nets(cfg, tmp_path / "run")
    solver = _read(paths["solver"], caffe_pb2.SolverParameter())
    assert (solver.type, solver.lr_policy, solver.base_lr, solver.momentum, solver.max_iter) == \
        ("SGD", "fixed", pytest.approx(e["lr"]), pytest.approx(e["momentum"]), e["max_iter"])
    net = _read(paths["train"], caffe_pb2.NetParameter())
    data = [json.loads(layer.python_param.param_str) for layer in net.layer if layer.type == "Python"
            and layer.python_param.layer == "CamVidData"]
    assert len(data) == 1 and data[0]["batch_size"] == e["batch"], data
    losses = [layer for layer in net.layer if layer.type in ("InfogainLoss", "SoftmaxWithLoss")]
    assert len(losses) == 1
    if e["weights"] == "published":
        assert losses[0].type == "InfogainLoss"
        assert losses[0].infogain_loss_param.source.endswith("data/class_weights/camvid_published.binaryproto")
    else:
        assert losses[0].type == "SoftmaxWithLoss"


@pytest.mark.parametrize("arch", ARCHS)
def test_committed_solvers_and_nets_follow_the_paper(arch):
    e = expected(arch, "paper")
    solver = _read(ROOT / "prototxt" / "models" / arch / "solver.prototxt", caffe_pb2.SolverParameter())
    assert (solver.base_lr, solver.momentum, solver.max_iter, solver.lr_policy) == \
        (pytest.approx(e["lr"]), pytest.approx(e["momentum"]), e["max_iter"], "fixed")
    net = _read(ROOT / "prototxt" / "models" / arch / "train.prototxt", caffe_pb2.NetParameter())
    loss = [layer.type for layer in net.layer if layer.type.endswith("Loss")]
    assert loss == ["InfogainLoss" if e["weights"] == "published" else "SoftmaxWithLoss"]
    header = (ROOT / "prototxt" / "models" / arch / "train.prototxt").read_text().split("\nname:")[0]
    assert f"batch {e['batch']}, class weights {e['weights']}" in header.replace("\n#   ", " ")


@pytest.mark.parametrize("arch", ARCHS)
def test_train_command_line_defaults_are_the_architectures_protocol(arch, tmp_path):
    e = expected(arch, "paper")
    cfg = config_from_args(build_parser().parse_args(["--arch", arch, "--run", str(tmp_path)]))
    assert (cfg.base_lr, cfg.batch, cfg.max_iter, cfg.class_weights, cfg.momentum) == \
        (e["lr"], e["batch"], e["max_iter"], e["weights"], e["momentum"])
    override = config_from_args(build_parser().parse_args(["--arch", arch, "--run", str(tmp_path), "--lr", "0.02",
                                                           "--momentum", "0.5"]))
    assert (override.base_lr, override.momentum, override.batch) == (0.02, 0.5, e["batch"])


def test_readme_table_is_the_protocol_table():
    readme = (ROOT / "README.md").read_text()
    assert markdown() in readme, "README's protocol table differs from `python -m prototxt --protocols`"
    # and the table itself says what the paper says, row by row
    rows = [r for r in markdown().splitlines() if r.startswith("| table1") or r.startswith("| benchmark")]
    assert "| table1 (8) | paper | 360×480 | SGD lr 0.1 fixed, momentum 0.9, wd 0.0005 | 12 | 10,000 | published |" \
        in rows[0]
    assert markdown().rstrip().endswith("Except: fcn-basic, fcn-basic-no-addition, fcn-basic-no-dim-reduction, "
                                        "fcn-basic-no-addition-no-dim-reduction: lr 0.01 at every preset "
                                        "(prototxt/protocol.py says why).")
    assert rows[3].startswith("| benchmark (5) | paper | 360×480 | SGD lr 0.001 fixed, momentum 0.9, wd 0.0005 | 5 | "
                              "140,000 | none |")


def test_every_architecture_has_one_protocol_in_the_registry_order():
    """The protocol table names each architecture once, in the registry's order, with the protocol the paper
    trained it under: Table 1's for the SegNet-Basic family and the FCN-Basic variants, the benchmark's for the
    deep nets (docs/paper.md §2)."""
    assert list(ARCH_PROTOCOL) == [a.name for a in ARCH_LIST] == ARCHS
    table1 = {a for a in ARCHS if a.startswith(("segnet-basic", "fcn-basic")) or a == "bilinear-interpolation"}
    assert {a for a, p in ARCH_PROTOCOL.items() if p == "table1"} == table1
    assert len(table1) == 8
