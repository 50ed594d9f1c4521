"""The foundation: the project's own BVLC Caffe build does what every other part relies on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import caffe
import lmdb
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from tests.conftest import ROOT, net_from_spec

VENV = ROOT / ".venv"


def test_caffe_is_the_projects_bvlc_build():
    prefix = Path((VENV / ".caffe-prefix").read_text().strip())
    assert Path(caffe.__file__).resolve().is_relative_to(prefix.resolve())
    assert "bvlc-99bd997" in prefix.name
    # BVLC master has the fields caffe-segnet lacks, and none of the fork's.
    assert "round_mode" in caffe_pb2.PoolingParameter.DESCRIPTOR.fields_by_name
    assert "upsample_param" not in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name



def test_provenance_names_the_caffe_that_is_imported(tmp_path):
    """A result's provenance names the build `import caffe` finds: PYTHONPATH can put another install prefix of
    the build cache first (tools.cpu_speed does), and then that one made the numbers, not the venv's link."""
    import json
    import sys

    other = tmp_path / "bvlc-other-prefix"
    (other / "python" / "caffe").mkdir(parents=True)
    (other / "python" / "caffe" / "__init__.py").write_text("")
    (other / "lib").mkdir()
    code = "import json; from segnet_bvlc.core.provenance import provenance; print(json.dumps(provenance()['caffe']))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(other / "python"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["build"] == "bvlc-other-prefix"
    # Without it, the venv's own build (the one `make setup` linked).
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    linked = Path((VENV / ".caffe-prefix").read_text().strip())
    assert Path(json.loads(out.stdout)["prefix"]).resolve() == linked.resolve()


def numpy_max_pool_with_mask(x: np.ndarray, k: int = 2, s: int = 2):
    """Caffe's MAX pooling (ceil mode, no pad): value and flat index h*W+w of the first maximum."""
    n, c, h, w = x.shape
    ph, pw = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    values = np.empty((n, c, ph, pw), x.dtype)
    mask = np.empty((n, c, ph, pw), np.float32)
    for i in range(ph):
        for j in range(pw):
            h0, w0 = i * s, j * s
            window = x[:, :, h0:min(h0 + k, h), w0:min(w0 + k, w)]
            flat = window.reshape(n, c, -1)
            arg = flat.argmax(axis=2)  # first maximum in row-major order, like Caffe's strict '>'
            values[:, :, i, j] = flat.max(axis=2)
            ww = window.shape[3]
            mask[:, :, i, j] = (h0 + arg // ww) * w + (w0 + arg % ww)
    return values, mask


@pytest.mark.parametrize("shape", [(2, 3, 45, 60), (1, 2, 23, 30), (1, 1, 5, 5), (2, 2, 7, 9)])
def test_max_pooling_mask_top_is_numpy_argmax(shape):
    rng = np.random.default_rng(0)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    n.pool, n.pool_mask = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=2, stride=2, ntop=2)
    net = net_from_spec(n)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, :2, :2] = 1.0  # a tie: the first maximum in row-major order wins
    net.blobs["data"].data[...] = x
    net.forward()
    values, mask = numpy_max_pool_with_mask(x)
    assert net.blobs["pool"].data.shape == values.shape  # ceil mode: 45 -> 23, 23 -> 12
    np.testing.assert_array_equal(net.blobs["pool"].data, values)
    np.testing.assert_array_equal(net.blobs["pool_mask"].data, mask)


def test_python_layer_forward_and_backward_inside_net():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 3, 4, 5]))
    n.sq = L.Python(n.data, module="tests.pylayers", layer="Square")
    n.loss = L.Reduction(n.sq, operation=P.Reduction.SUM, loss_weight=1)
    proto = n.to_proto()
    proto.force_backward = True  # Input blobs need no gradient unless asked
    net = net_from_spec(proto)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    net.blobs["data"].data[...] = x
    out = net.forward()
    assert out["loss"] == pytest.approx(float(np.square(x).sum()), rel=1e-5)
    net.backward()
    np.testing.assert_allclose(net.blobs["data"].diff, 2 * x, rtol=1e-6)


def write_datum_lmdb(path: Path, arrays: list[np.ndarray], labels: list[int]) -> None:
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, (a, label) in enumerate(zip(arrays, labels)):
            datum = caffe.io.array_to_datum(a, label)
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()


def test_lmdb_data_layer_reads_what_was_written(tmp_path):
    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 256, (3, 6, 8), dtype=np.uint8) for _ in range(3)]
    write_datum_lmdb(tmp_path / "db", arrays, [0, 1, 2])
    n = caffe.NetSpec()
    n.data, n.label = L.Data(source=str(tmp_path / "db"), backend=P.Data.LMDB, batch_size=3, ntop=2)
    net = net_from_spec(n, caffe.TEST)
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, np.stack(arrays).astype(np.float32))
    np.testing.assert_array_equal(net.blobs["label"].data, [0, 1, 2])


def tiny_regression_net(path: Path) -> None:
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[4, 3]))
    n.target = L.Input(shape=dict(dim=[4, 1]))
    n.fc = L.InnerProduct(n.data, num_output=1, weight_filler=dict(type="constant", value=0.0))
    n.loss = L.EuclideanLoss(n.fc, n.target)
    path.write_text(str(n.to_proto()))


def test_one_sgd_solver_step_lowers_the_loss(tmp_path):
    tiny_regression_net(tmp_path / "net.prototxt")
    solver_param = caffe_pb2.SolverParameter(
        net=str(tmp_path / "net.prototxt"), base_lr=0.1, lr_policy="fixed", momentum=0.9,
        max_iter=10, snapshot_prefix=str(tmp_path / "snap"), random_seed=1)
    (tmp_path / "solver.prototxt").write_text(str(solver_param))
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    x = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    solver.net.blobs["data"].data[...] = x
    solver.net.blobs["target"].data[...] = y
    before = float(solver.net.forward()["loss"])
    solver.step(1)
    after = float(solver.net.forward()["loss"])
    assert solver.iter == 1
    assert after < before


def test_caffe_cli_times_a_net_with_a_python_layer(tmp_path):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 8, 8]))
    n.sq = L.Python(n.data, module="tests.pylayers", layer="Square")
    n.loss = L.Reduction(n.sq, operation=P.Reduction.SUM, loss_weight=1)
    (tmp_path / "net.prototxt").write_text(str(n.to_proto()))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["GLOG_minloglevel"] = "0"  # the timing lines are INFO logs
    result = subprocess.run([str(VENV / "bin" / "caffe"), "time", "-model", str(tmp_path / "net.prototxt"),
                             "-iterations", "2"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Average Forward-Backward" in result.stderr


def run_installer(tmp_path, **env_extra):
    env = dict(os.environ, SEGNET_CACHE=str(tmp_path / "cache"), **env_extra)
    return subprocess.run(["bash", str(ROOT / "tools" / "install_caffe.sh"), "--no-apt", "--no-venv"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_installer_refuses_a_tarball_with_the_wrong_checksum(tmp_path):
    bad = tmp_path / "caffe_1.0.0+git20180821.99bd997.orig.tar.gz"
    bad.write_bytes(b"not the BVLC source")
    result = run_installer(tmp_path, CAFFE_ORIG_TARBALL=str(bad))
    assert result.returncode != 0
    assert "sha256" in result.stderr and str(bad) in result.stderr
    assert not list((tmp_path / "cache").glob("*.tar.gz"))


def test_installer_help_and_unknown_option():
    help_ = subprocess.run(["bash", str(ROOT / "tools" / "install_caffe.sh"), "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--cuda" in help_.stdout
    bad = subprocess.run(["bash", str(ROOT / "tools" / "install_caffe.sh"), "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--frobnicate" in bad.stderr


def test_venv_python_imports_caffe_without_environment_variables():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    code = ("import sys, caffe, layers, segnet_bvlc.dataset.camvid; "
            "print('ok', sys.version_info[0], sys.version_info[1], sys.prefix)")
    result = subprocess.run([str(VENV / "bin" / "python"), "-c", code],
                            capture_output=True, text=True, env=env, cwd="/")
    assert result.returncode == 0, result.stderr
    # what the subprocess itself reports: the .venv interpreter, Python 3.11
    ok, major, minor, prefix = result.stdout.split()
    assert ok == "ok" and (int(major), int(minor)) == (3, 11), result.stdout
    assert Path(prefix).resolve() == VENV.resolve(), result.stdout
