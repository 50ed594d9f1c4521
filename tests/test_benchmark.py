"""tools.benchmark (segnet_bvlc.benchmark) on real Caffe: the quick run end to end, the storage multiplier against
Table 1, the outputs.

Speed targets belong in the benchmark itself; these tests check what is measured and written, not how fast.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prototxt import count_params
from segnet_bvlc.benchmark import report, timing
from segnet_bvlc.benchmark import run as bench
from segnet_bvlc.benchmark.storage import storage_multiplier
from segnet_bvlc.nets import load as nets

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick(tmp_path_factory, camvid_dir):
    """One --quick run (SegNet-Basic and FCN-Basic at 64x96, one repeat) through the CLI, as `make benchmark` runs it."""
    out = tmp_path_factory.mktemp("bench") / "results"
    proc = subprocess.run([sys.executable, "-m", "tools.benchmark", "--quick", "--camvid", str(camvid_dir),
                           "--out", str(out), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout), proc.stderr


def test_quick_run_writes_all_outputs(quick):
    out, result, stderr = quick
    assert sorted(p.name for p in out.iterdir()) == sorted(bench.OUTPUTS)
    assert json.loads((out / "benchmark.json").read_text())["rows"] == result["rows"]
    rows = list(csv.DictReader((out / "benchmark.csv").open()))
    assert [r["arch"] for r in rows] == list(bench.QUICK_ARCHS)
    assert rows[0]["paper_params_m"] == "1.425" and rows[1]["paper_storage"] == "11"
    md = (out / "benchmark.md").read_text()
    for heading in ("## All architectures", "## Table 1 side by side", "## Ratios between architectures",
                    "## Cost of our Python layers in segnet-basic"):
        assert heading in md
    assert "CamVidData" in md
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob(".results.*")), "no staging folder may be left behind"
    assert "wrote" in stderr


def test_quick_run_measures_what_it_says(quick):
    _, result, _ = quick
    m = result["machine"]
    assert m["caffe_build"] == "CPU" and m["mode"] == "CPU" and m["openblas"]["threads"] >= 1
    assert result["config"]["height"] == 64 and result["config"]["width"] == 96
    by = {r["arch"]: r for r in result["rows"]}
    for arch, r in by.items():
        deploy = timing.net_param(arch, "deploy", 1, 64, 96)
        assert r["params"] == count_params(deploy)
        # The .caffemodel holds every parameter as float32 plus BatchNorm statistics and the protobuf framing.
        assert 4 * r["params"] < r["model_bytes"] < 4 * r["params"] * 1.01 + 20_000
        assert r["forward_ms"] > 0 and r["backward_ms"] > 0 and r["infer_ms"] > 0
        assert r["forward_ms"] == pytest.approx(sum(l["forward_ms"] for l in r["layers"]), rel=0.5)
        assert r["caffe_time"]["forward_ms"] > 0 and r["caffe_time"]["backward_ms"] > 0
        # Training at batch 4 with gradients needs more than inference at batch 1.
        assert 0 < r["infer_mem_mib"] < r["train_mem_mib"]
    seg = by["segnet-basic"]
    assert [l["name"] for l in seg["python_layers"]] == ["upsample4", "upsample3", "upsample2", "upsample1"]
    assert 0 < seg["python_forward_share"] < 1 and 0 < seg["python_backward_share"] < 1
    assert by["fcn-basic"]["python_layers"] == [] and by["fcn-basic"]["python_forward_share"] == 0
    assert result["data_layer"]["forward_ms"] > 0
    (ratio,) = result["ratios"]["table1"]
    assert ratio["arch"] == "fcn-basic"
    assert ratio["params"][0] == pytest.approx(by["fcn-basic"]["params"] / seg["params"])
    assert ratio["params"][1] == pytest.approx(0.65 / 1.425)


def test_storage_multiplier_matches_table1(tmp_path):
    """Derived from the nets alone; the paper's "n/a" (FCN-Basic-NoAddition keeps nothing) reads as 0."""
    for arch, (_, paper, _) in report.PAPER_TABLE1.items():
        param = timing.net_param(arch, "deploy", 1, 64, 96)
        net = nets.load_net(timing.write_prototxt(param, tmp_path, f"{arch}.prototxt"))
        channels = {k: b.data.shape[1] for k, b in net.blobs.items() if b.data.ndim == 4}
        assert storage_multiplier(param, channels) == (0 if paper is None else paper), arch


def test_paper_tables_name_real_architectures():
    from prototxt import ARCHS

    assert set(report.PAPER_TABLE1) | set(report.PAPER_TABLE6) <= set(ARCHS)
    # Table 6's DeconvNet / SegNet forward: 474.65 / 422.50.
    assert report.PAPER_TABLE6["deconvnet"][0] / report.PAPER_TABLE6["segnet"][0] == pytest.approx(1.1234, abs=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--arch", "segnet,bogus"], "--arch: unknown architecture(s) bogus"),
    (["--camvid", "CAMVID_WITHOUT_LISTS"], "CAMVID_WITHOUT_LISTS: not a CamVid folder (no train.txt)"),
])
def test_bad_input_fails_with_one_line_and_writes_nothing(tmp_path, argv, message):
    not_camvid = tmp_path / "CamVid"
    not_camvid.mkdir()
    argv = [str(not_camvid) if a == "CAMVID_WITHOUT_LISTS" else a for a in argv]
    message = message.replace("CAMVID_WITHOUT_LISTS", str(not_camvid))
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "tools.benchmark", "--quick", "--out", str(out), *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"benchmark: error: {message}")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["CamVid"]


def test_write_outputs_replaces_whole_folder_or_nothing(tmp_path, monkeypatch):
    out = tmp_path / "results"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    result = {"machine": {"date": "d", "cpu": "c", "cpus_usable": 1, "memory_gib": 1, "os": "o",
                          "caffe_version": "1", "caffe_build": "CPU", "caffe_prefix": "p", "mode": "CPU",
                          "gpu": None, "python": "3", "numpy": "2", "protobuf": "x", "project_commit": None,
                          "openblas": {"threads": 1, "OPENBLAS_NUM_THREADS": None}},
              "config": {"height": 8, "width": 8, "repeats": 1, "warmup": 0, "cli_iterations": 0, "train_batch": 4},
              "rows": [], "ratios": {"table1": [], "table6": []}, "seconds": 0.0}

    def broken_chart(*_):
        raise RuntimeError("chart failed")

    monkeypatch.setattr(report, "chart", broken_chart)
    with pytest.raises(RuntimeError):
        report.write_outputs(result, out)
    assert [p.name for p in tmp_path.iterdir()] == ["results"] and (out / "old.txt").exists()
    monkeypatch.undo()
    report.write_outputs(result, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(bench.OUTPUTS)
    assert [p.name for p in tmp_path.iterdir()] == ["results"]
