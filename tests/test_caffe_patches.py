"""The speed patches of tools/caffe_patches change no number.

im2col_openmp.patch runs Caffe's im2col_cpu / col2im_cpu over channels in parallel. The oracle is NumPy's
im2col and col2im written here from their definition (a column entry is the input pixel its kernel tap covers,
zero in the padding; col2im adds each tap's column back into its pixel, taps in row-major order as Caffe's loop
visits them), so the comparison is bit for bit. Caffe's own `Im2col` layer calls exactly these two functions
(forward: im2col_cpu per image, backward: col2im_cpu), and each thread count runs in a child process because
OpenMP reads OMP_NUM_THREADS once, when libcaffe loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

CHILD = r"""
import sys, tempfile, numpy as np
import caffe
case = dict(np.load(sys.argv[1]))
k, s, p, d = (int(case[x]) for x in ("kernel", "stride", "pad", "dilation"))
proto = ('force_backward: true\n'
         'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: %d dim: %d dim: %d dim: %d } } }\n'
         'layer { name: "col" type: "Im2col" bottom: "data" top: "col" convolution_param { kernel_size: %d '
         'stride: %d pad: %d dilation: %d } }\n') % (tuple(case["image"].shape) + (k, s, p, d))
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(proto)
net = caffe.Net(f.name, caffe.TEST)
net.blobs["data"].data[...] = case["image"]
net.forward()
net.blobs["col"].diff[...] = case["grad"]
net.backward()
np.savez(sys.argv[2], col=net.blobs["col"].data, image_grad=net.blobs["data"].diff)
"""


def im2col(image: np.ndarray, k: int, s: int, p: int, d: int) -> np.ndarray:
    n, c, h, w = image.shape
    oh, ow = (h + 2 * p - (d * (k - 1) + 1)) // s + 1, (w + 2 * p - (d * (k - 1) + 1)) // s + 1
    padded = np.zeros((n, c, h + 2 * p, w + 2 * p), image.dtype)
    padded[:, :, p:p + h, p:p + w] = image
    col = np.empty((n, c, k, k, oh, ow), image.dtype)
    for i in range(k):
        for j in range(k):
            col[:, :, i, j] = padded[:, :, i * d:i * d + s * (oh - 1) + 1:s, j * d:j * d + s * (ow - 1) + 1:s]
    return col.reshape(n, c * k * k, oh, ow)


def col2im(col: np.ndarray, shape: tuple, k: int, s: int, p: int, d: int) -> np.ndarray:
    n, c, h, w = shape
    oh, ow = col.shape[2:]
    col = col.reshape(n, c, k, k, oh, ow)
    acc = np.zeros((n, c, h + 2 * p, w + 2 * p), col.dtype)
    for i in range(k):  # taps in the order Caffe adds them: one float32 addition per tap and pixel
        for j in range(k):
            acc[:, :, i * d:i * d + s * (oh - 1) + 1:s, j * d:j * d + s * (ow - 1) + 1:s] += col[:, :, i, j]
    return acc[:, :, p:p + h, p:p + w]


# (image shape, kernel, stride, pad, dilation): SegNet-Basic's 7x7 layer (parallel path), a strided dilated one
# (parallel path), and one below the patch's 4096-entry threshold (serial path).
CASES = [((2, 64, 45, 60), 7, 1, 3, 1), ((1, 16, 64, 80), 3, 2, 2, 2), ((2, 5, 11, 13), 3, 2, 1, 2)]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", CASES, ids=["7x7-64ch", "3x3-s2-d2", "small-serial"])
def test_im2col_and_col2im_are_bit_identical_to_their_definition(case, threads, tmp_path):
    shape, k, s, p, d = case
    rng = np.random.default_rng(sum(shape) + k)
    image = rng.standard_normal(shape).astype(np.float32)
    col = im2col(image, k, s, p, d)
    grad = rng.standard_normal(col.shape).astype(np.float32)
    np.savez(tmp_path / "case.npz", image=image, grad=grad, kernel=k, stride=s, pad=p, dilation=d)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "case.npz"), str(tmp_path / "out.npz")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["col"], col)
    np.testing.assert_array_equal(out["image_grad"], col2im(grad, shape, k, s, p, d))


def test_the_patched_caffe_is_the_one_in_use():
    """libcaffe links OpenMP (the patch's -DUSE_OPENMP=ON), and its install recorded every patch in
    tools/caffe_patches as applied."""
    import caffe

    prefix = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(caffe.__file__))))
    libs = [f for f in os.listdir(os.path.join(prefix, "lib")) if f.startswith("libcaffe.so")]
    assert libs, prefix
    needed = subprocess.run(["ldd", os.path.join(prefix, "lib", sorted(libs)[0])], capture_output=True,
                            text=True, check=True).stdout
    assert "libgomp" in needed, needed
    source = os.path.join(prefix, "share", "segnet-bvlc", "im2col.cpp")
    assert "#pragma omp parallel for" in open(source).read(), source


def test_openmp_threads_sleep_between_loops(tmp_path):
    """The install step makes OpenMP's threads sleep when a loop ends (OMP_WAIT_POLICY=PASSIVE, set as the venv's
    interpreter starts and by the `caffe` wrapper) unless the user chose otherwise: spinning, they took the cores
    from OpenBLAS's threads (results/cpu-speed/README.md)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    show = [sys.executable, "-c", "import os; print(os.environ.get('OMP_WAIT_POLICY'))"]
    assert subprocess.run(show, env=env, capture_output=True, text=True, check=True).stdout.strip() == "PASSIVE"
    chosen = subprocess.run(show, env=dict(env, OMP_WAIT_POLICY="ACTIVE"), capture_output=True, text=True,
                            check=True).stdout.strip()
    assert chosen == "ACTIVE"
    script = tmp_path / "policy.sh"
    wrapper = (Path(sys.executable).parent / "caffe").read_text()
    script.write_text(wrapper.replace('exec "', 'echo "$OMP_WAIT_POLICY" #', 1))
    assert subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "PASSIVE"
