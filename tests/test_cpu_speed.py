"""tools.cpu_speed (segnet_bvlc.benchmark.cpu_speed): its own arithmetic and input checks (its measurements are in
results/cpu-speed): the numerical comparison against hand-computed differences, and a bad --config refused in one
line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from segnet_bvlc.benchmark.cpu_speed import SpeedError, differences, parse_config
from tests.conftest import ROOT


def test_differences_by_hand(tmp_path):
    a = {"blob/x": np.array([1.0, -4.0, 2.0], np.float32), "grad/w/0": np.array([[0.5, 0.25]], np.float32)}
    np.savez(tmp_path / "a.npz", **a)
    np.savez(tmp_path / "same.npz", **{k: v.copy() for k, v in a.items()})
    np.savez(tmp_path / "b.npz", **{"blob/x": np.array([1.0, -4.0, 2.5], np.float32),
                                    "grad/w/0": np.array([[0.5, 0.125]], np.float32)})
    assert differences(tmp_path / "a.npz", tmp_path / "same.npz") == \
        {"identical": True, "max_abs": 0.0, "max_rel": 0.0, "arrays": 2}
    d = differences(tmp_path / "a.npz", tmp_path / "b.npz")
    # blob/x: |2.5 - 2| = 0.5 against its largest magnitude 4 -> 0.125; grad: 0.125 against 0.5 -> 0.25.
    assert (d["identical"], d["max_abs"], d["max_rel"]) == (False, 0.5, 0.25)


def test_config_parsing_and_bad_configs(tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "python" / "caffe").mkdir(parents=True)
    (prefix / "python" / "caffe" / "__init__.py").write_text("")
    c = parse_config(f"omp={prefix}:OMP_NUM_THREADS=2:OMP_WAIT_POLICY=PASSIVE")
    assert (c["label"], c["prefix"], c["env"]) == \
        ("omp", str(prefix.resolve()), {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"})
    for bad, reason in ((f"{prefix}", "expected LABEL=PREFIX"), (f"x={prefix}:THREADS", "is not VAR=VALUE"),
                        (f"x={tmp_path}", "is not a Caffe install prefix")):
        with pytest.raises(SpeedError, match=reason):
            parse_config(bad)
    proc = subprocess.run([sys.executable, "-m", "tools.cpu_speed", "--config", f"x={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == \
        [f"cpu_speed: error: --config 'x={tmp_path}': {tmp_path} is not a Caffe install prefix (no python/caffe)"]
