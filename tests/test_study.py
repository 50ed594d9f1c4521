"""The Table 1 study (segnet_bvlc.study, `python -m tools.study`, `make table1`): the smoke preset's whole path,
killed and resumed, and the report checked against independent recomputations (NumPy confusion counts from the
written PNGs, rank correlations by hand, the paper's cells read from the paper's text as docs/paper.md transcribes
it)."""

from __future__ import annotations

import fcntl
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segnet_bvlc.study.compare import compare
from segnet_bvlc.study.costs import paper_gpu_step_ms, paper_preset_hours
from segnet_bvlc.study.findings import findings, rank_agreement
from segnet_bvlc.study.planning import finished, plan
from segnet_bvlc.study.report import report as write_report
from tests.conftest import ROOT

PY = sys.executable
VARIANTS = ["bilinear-interpolation", "segnet-basic", "segnet-basic-encoder-addition",
            "segnet-basic-single-channel-decoder", "fcn-basic", "fcn-basic-no-addition", "fcn-basic-no-dim-reduction",
            "fcn-basic-no-addition-no-dim-reduction"]


def _wait_unlocked(lock: Path, timeout: float = 120) -> None:
    """Until no process holds the run folder's lock (the killed study's child snapshots and exits first)."""
    end = time.time() + timeout
    while lock.exists() and time.time() < end:
        try:
            with open(lock) as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
        except (BlockingIOError, FileNotFoundError):
            time.sleep(0.2)


@pytest.fixture(scope="module")
def smoke_study(camvid_dir, tmp_path_factory):
    """`tools.study run --preset smoke`: SIGKILLed while its second run trains, then run again to the end."""
    results = tmp_path_factory.mktemp("study")
    args = [PY, "-m", "tools.study", "run", "--study", "table1", "--preset", "smoke", "--camvid", str(camvid_dir),
            "--results", str(results)]
    folder = results / "table1-smoke"
    victim = folder / "segnet-basic-mfb"
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.time() + 300
    while not (victim / "config.json").is_file() and first.poll() is None and time.time() < end:
        time.sleep(0.05)
    assert first.poll() is None, "the study ended before its second run started:\n" + first.stdout.read()
    first.send_signal(signal.SIGKILL)
    first.wait()
    _wait_unlocked(folder / ".segnet-basic-mfb.lock")
    assert not finished(victim)
    second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    third = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return folder, second, third


def test_smoke_study_survives_a_kill_and_finishes(smoke_study):
    folder, second, third = smoke_study
    assert second.returncode == 0, second.stderr[-3000:]
    assert "1/16 bilinear-interpolation-mfb: finished" in second.stderr
    assert "2/16 segnet-basic-mfb: resuming" in second.stderr
    for arch in VARIANTS:
        for w in ("mfb", "nf"):
            assert finished(folder / f"{arch}-{w}"), f"{arch}-{w}"
    # The killed run ended at the preset's last iteration, every stage recorded.
    victim = folder / "segnet-basic-mfb"
    stages = [json.loads(line)["stage"] for line in (victim / "stages.jsonl").read_text().splitlines()]
    assert stages[-5:] == ["lmdb_s", "train_s", "bn_stats_s", "evaluate_s", "evaluate_train_s"]
    assert json.loads((victim / "state.json").read_text())["iteration"] == 4
    # The weightings reached the nets: MFB runs train with the published weights, NF with none.
    assert 'type: "InfogainLoss"' in (folder / "segnet-basic-mfb" / "net" / "train.prototxt").read_text()
    nf = (folder / "segnet-basic-nf" / "net" / "train.prototxt").read_text()
    assert 'type: "SoftmaxWithLoss"' in nf and "Infogain" not in nf
    # A third time: nothing left to do.
    assert third.returncode == 0, third.stderr[-2000:]
    assert third.stderr.count(": finished") == 16 and "starting" not in third.stderr


def _confusion(gt_paths, pred_dir: Path) -> np.ndarray:
    cm = np.zeros((11, 11), np.int64)
    for gt_path in gt_paths:
        gt = np.asarray(Image.open(gt_path)).astype(np.int64)
        pred = np.asarray(Image.open(pred_dir / gt_path.name)).astype(np.int64)
        keep = gt != 11
        cm += np.bincount(gt[keep] * 11 + pred[keep], minlength=121).reshape(11, 11)
    return cm


def test_report_numbers_are_the_runs_and_the_papers(smoke_study, camvid_dir):
    folder, _, _ = smoke_study
    report = json.loads((folder / "table1.json").read_text())
    assert (folder / "table1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {(r["arch"], r["weighting"]): r for r in report["runs"]}
    assert len(rows) == 16 and report["missing"] == []
    test_list = [line.split()[1] for line in (camvid_dir / "test.txt").read_text().split("\n") if line.strip()][:3]
    gts = [camvid_dir / "testannot" / Path(p).name for p in test_list]
    for (arch, w), row in rows.items():
        cm = _confusion(gts, folder / f"{arch}-{w}" / "eval" / "test" / "predictions")
        # G from the counts; C and mIoU with the MATLAB script's rule (every class, absent ones count 0).
        g = np.trace(cm) / cm.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.nan_to_num(np.diag(cm) / cm.sum(1))
            iou = np.nan_to_num(np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm)))
        assert row["test_G"] == pytest.approx(100 * g, abs=0.006), (arch, w)
        assert row["test_C"] == pytest.approx(100 * acc.mean(), abs=0.006), (arch, w)
        assert row["test_mIoU"] == pytest.approx(100 * iou.mean(), abs=0.006), (arch, w)
        assert row["train_G"] is not None and "train_BF" not in row or row.get("train_BF") is None
    # The paper's cells, from docs/paper.md's transcription of Table 1 (FCN-Basic MFB test: 81.7 62.4 47.3 38.11;
    # SegNet-Basic NF train mIoU 73.3) and the difference column.
    fcn = rows[("fcn-basic", "mfb")]
    assert [fcn[f"paper_test_{m}"] for m in ("G", "C", "mIoU", "BF")] == [81.7, 62.4, 47.3, 38.11]
    assert rows[("segnet-basic", "nf")]["paper_train_mIoU"] == 73.3
    assert fcn["diff_test_mIoU"] == pytest.approx(fcn["test_mIoU"] - 47.3, abs=0.011)
    # Params from the generated nets (the paper's 0.65 M for FCN-Basic, within 1 %) and Table 1's storage column.
    assert fcn["params_m"] == pytest.approx(0.65, rel=0.01)
    assert rows[("segnet-basic-encoder-addition", "nf")]["storage"] == 64
    md = (folder / "table1.md").read_text()
    # No benchmark in this results folder: the inference time is the paper's alone (24.2 ms, Table 1).
    assert re.search(r"\| fcn-basic \| 0\.6\d\d \| 11 \| — / 24\.2 \| 0\.01 \| [\d.]+ / 81\.7 \(", md)
    # Each run's learning rate, and the note that says why the FCN-Basic rows differ from the paper's 0.1.
    assert {(a, row["lr"]) for (a, _), row in rows.items()} == \
        {(a, 0.01 if a.startswith("fcn-basic") else 0.1) for a, _ in rows}
    assert "trains at 0.01 (docs/paper.md §9.4)" in md


def test_rank_agreement_by_hand():
    # Ranks 1..5 vs 2,1,3,5,4: d^2 = 1+1+0+1+1 = 4, rho = 1 - 6*4/(5*24) = 0.8; concordant pairs 8 of 10 -> tau 0.6.
    ours = dict(zip("abcde", [5, 4, 3, 2, 1]))
    paper = dict(zip("abcde", [4, 5, 3, 1, 2]))
    r = rank_agreement(ours, paper)
    assert (r["n"], r["spearman"], r["kendall"]) == (5, 0.8, 0.6)
    assert rank_agreement({"a": 1, "b": 2}, {"a": 1, "b": 2})["spearman"] is None


def _table(mfb: dict, nf: dict | None = None) -> dict:
    """{arch: {w: {"test": {G, C, mIoU, BF}}}} from {arch: (G, C, mIoU, BF)}."""
    out: dict = {}
    for w, cells in (("mfb", mfb), ("nf", nf or {})):
        for arch, (g, c, miou, bf) in cells.items():
            out.setdefault(arch, {})[w] = {"test": {"G": g, "C": c, "mIoU": miou, "BF": bf}}
    return out


def test_findings_on_the_papers_own_table_all_hold_and_a_swap_breaks_them():
    from segnet_bvlc.core import paper

    cells = lambda w: {a: tuple(paper.table1()[a][w]["test"][m] for m in ("G", "C", "mIoU", "BF"))  # noqa: E731
                       for a in VARIANTS}
    held = findings(_table(cells("mfb"), cells("nf")))
    assert [f["status"] for f in held] == ["held"] * 5
    # Hand-made: Bilinear no longer lowest, SegNet-Basic below its single-channel decoder, MFB lowers C.
    mfb = dict(cells("mfb"))
    mfb["bilinear-interpolation"] = (90, 90, 90, 90)
    mfb["segnet-basic"] = (70, 40, 30, 20)
    out = {f["finding"][:30]: f["status"] for f in findings(_table(mfb, cells("nf")))}
    assert list(out.values()) == ["not held", "not held", "not held", "not held", "not held"]
    missing = findings(_table({"segnet-basic": (1, 2, 3, 4)}))
    assert {f["status"] for f in missing} == {"not measured"}


def test_plan_orders_and_shards_runs():
    pairs = plan("table1", "both")
    assert len(pairs) == 16 and pairs[0] == ("bilinear-interpolation", "mfb") and pairs[8] == ("bilinear-interpolation", "nf")
    shards = [plan("table1", "both", shard=(i, 3)) for i in (1, 2, 3)]
    assert sorted(p for s in shards for p in s) == sorted(pairs) and [len(s) for s in shards] == [6, 5, 5]
    assert plan("table1", "nf", ["fcn-basic", "segnet-basic"]) == [("segnet-basic", "nf"), ("fcn-basic", "nf")]


@pytest.mark.parametrize("argv, message", [
    (["run", "--archs", "segnet,bogus"], "--archs: segnet, bogus not in table1"),
    (["run", "--camvid", "NO_CAMVID_HERE"], "nothing: no train.txt"),
    (["run", "--preset", "huge"], "unknown preset 'huge'"),
    (["report", "--results", "NO_RESULTS_HERE"], "no such study folder"),
])
def test_bad_input_is_one_line(argv, message, tmp_path, camvid_dir):
    argv = [a.replace("NO_CAMVID_HERE", str(tmp_path / "nothing")).replace("NO_RESULTS_HERE", str(tmp_path / "r"))
            for a in argv]
    if argv[0] == "run" and "--camvid" not in argv:
        argv += ["--camvid", str(camvid_dir)]
    run = subprocess.run([PY, "-m", "tools.study", *argv, "--results", str(tmp_path / "r")] if "--results" not in argv
                         else [PY, "-m", "tools.study", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_compare_two_runs(smoke_study, camvid_dir, tmp_path):
    folder, _, _ = smoke_study
    runs = {"nf": folder / "segnet-basic-nf", "mfb": folder / "segnet-basic-mfb"}
    summary = compare(runs, tmp_path, "SegNet-Basic, NF against MFB")
    test_list = [line.split()[1] for line in (camvid_dir / "test.txt").read_text().split("\n") if line.strip()][:3]
    gts = [camvid_dir / "testannot" / Path(p).name for p in test_list]
    g = {}
    for label, run in runs.items():
        cm = _confusion(gts, run / "eval" / "test" / "predictions")
        g[label] = 100 * np.trace(cm) / cm.sum()
        assert 100 * summary["metrics"][label]["global_accuracy"] == pytest.approx(g[label], abs=1e-6)
    md = (tmp_path / "comparison.md").read_text()
    assert f"| G | {g['nf']:.2f} | {g['mfb']:.2f} | {g['mfb'] - g['nf']:+.2f} |" in md
    assert md.count("\n| ") == 1 + 4 + 1 + 1 + 11  # header, G C mIoU BF, s / image, per-class header, 11 classes
    # A folder with a metrics.json (a run's eval/test-mcN) stands for that scoring.
    again = compare({"folder": runs["nf"] / "eval" / "test"}, tmp_path / "again", "one folder")
    assert 100 * again["metrics"]["folder"]["global_accuracy"] == pytest.approx(g["nf"], abs=1e-6)



def test_paper_preset_estimate_by_hand():
    """The paper preset is 10,000 iterations of 12 images with a pass over CamVid's 101 validation images every
    1,000 (docs/paper.md §2.1; the split sizes 367/101/233)."""
    # 10,000 x 12 x 300 ms + 10 x 101 x 50 ms = 36,000 s + 50.5 s = 10.0140 h.
    assert paper_preset_hours("segnet-basic", 300.0, 50.0) == pytest.approx(36050.5 / 3600, rel=1e-12)
    # The FCN-Basic family's own lr changes nothing in the count.
    assert paper_preset_hours("fcn-basic", 1.0, 0.0) == pytest.approx(120.0 / 3600, rel=1e-12)
    # The paper's GPU: Table 1's 52.6 ms (SegNet-Basic) x (422.5 + 488.71) / 422.5 (SegNet's forward and backward
    # ms in Table 6) = 113.443 ms per image.
    assert paper_gpu_step_ms("segnet-basic") == pytest.approx(52.6 * 911.21 / 422.5, rel=1e-12)
    assert paper_gpu_step_ms("fcn-basic-no-addition") == pytest.approx(23.8 * 911.21 / 422.5, rel=1e-12)


def test_inference_time_and_paper_preset_estimate_from_a_benchmark(smoke_study, tmp_path):
    """The report's benchmark columns from a hand-written benchmark.json, the estimate by hand: the paper preset
    is 10,000 iterations of 12 images with a pass over CamVid's 101 validation images every 1,000 (docs/paper.md
    §2.1; data/camvid.json's split sizes are 367/101/233)."""
    folder, _, _ = smoke_study
    results = tmp_path / "results"
    (results / "table1-smoke").mkdir(parents=True)
    for run in folder.iterdir():
        if run.is_dir() and run.name != "lmdb":
            (results / "table1-smoke" / run.name).symlink_to(run)
    rows = [{"arch": a, "forward_ms": 100.0 + i, "backward_ms": 200.0, "infer_ms": 50.0}
            for i, a in enumerate(VARIANTS)]
    machine = {"mode": "CPU", "cpu": "Hand CPU", "cpus_usable": 2, "caffe_prefix": "p", "date": "d",
               "load_average_start": [0.1]}
    (results / "benchmark").mkdir()
    (results / "benchmark" / "benchmark.json").write_text(json.dumps({"machine": machine, "rows": rows}))
    r = write_report("table1", "smoke", results)
    est = r["paper_preset_estimate"]
    # Bilinear-Interpolation (i = 0): 10,000 x 12 x 300 ms + 10 x 101 x 50 ms = 36,050.5 s = 10.014 h.
    assert est["archs"]["bilinear-interpolation"]["step_ms"] == 300.0
    assert est["archs"]["bilinear-interpolation"]["hours"] == 10.01
    # FCN-Basic (i = 4): 10,000 x 12 x 304 ms + 50.5 s = 36,530.5 s = 10.147 h (its lr changes nothing here).
    assert est["archs"]["fcn-basic"]["hours"] == 10.15
    # The paper's GPU, SegNet-Basic: Table 1's 52.6 ms x (422.5 + 488.71) / 422.5 (SegNet, Table 6) = 113.44 ms;
    # 10,000 x 12 x 113.44 ms + 10 x 101 x 52.6 ms = 13,666.3 s = 3.80 h.
    assert est["archs"]["segnet-basic"]["paper_gpu_step_ms"] == 113.4
    assert est["archs"]["segnet-basic"]["paper_gpu_hours"] == 3.8
    assert {x["infer_ms"] for x in r["runs"]} == {50.0}
    md = (results / "table1-smoke" / "table1.md").read_text()
    assert re.search(r"\| segnet-basic \| 1\.4\d\d \| 1 \| 50\.0 / 52\.6 \| 0\.1 \|", md)
    assert "| segnet-basic-encoder-addition | 302.0 | 10.1 | 114.3 | 3.8 |" in md  # 53.0 x 2.1567 = 114.31
    # All 16 runs: 2 x (8 x 36,050.5 s + 120 s x (0 + 1 + ... + 7)) = 2 x 291,764 s = 162 h.
    assert "Hand CPU, 2 CPUs" in md and "all 16 runs: 162 hours" in md
