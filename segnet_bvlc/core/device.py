"""Which Caffe build is in use and which device it runs on: the one place every tool picks its device."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from segnet_bvlc.core.paths import ROOT


def gpu_device() -> str:
    """The GPU to run on: SEGNET_GPU=<device>; GPU 0 by default where the CUDA build is in use (CAFFE_BUILD=cuda,
    as the Docker image sets it); "" (the CPU) otherwise. SEGNET_GPU= (empty) forces the CPU."""
    return os.environ.get("SEGNET_GPU", "0" if os.environ.get("CAFFE_BUILD") == "cuda" else "")


def set_caffe_mode(gpu: int | None = None):
    """Caffe on `gpu` when given (a tool's --gpu), else on gpu_device() (SEGNET_GPU), else on the CPU. Returns
    the caffe module (imported here: Caffe is heavy, and importing this module must not load it)."""
    import caffe

    gpu = str(gpu) if gpu is not None else gpu_device()
    if gpu:
        caffe.set_device(int(gpu))
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    return caffe


def gpu_problem(gpu: int) -> str | None:
    """Why `--gpu gpu` cannot work, or None: Caffe aborts the whole process (a glog CHECK) on a negative device
    or on any GPU call of its CPU-only build (known from the build's prefix, as `make setup` names it)."""
    if gpu < 0:
        return f"--gpu must be >= 0, got {gpu}"
    prefix = caffe_prefix()
    if prefix is not None and "-cuda" not in prefix.name and os.environ.get("CAFFE_BUILD") != "cuda":
        return f"--gpu {gpu}: this Caffe is the CPU-only build ({prefix.name}); run without --gpu"
    return None


def caffe_prefix() -> Path | None:
    """The install prefix of the Caffe that `import caffe` finds (PREFIX/python/caffe; PYTHONPATH can put another
    build of the cache first, as tools.cpu_speed does), else the one `make setup` linked (.venv/.caffe-prefix)."""
    spec = importlib.util.find_spec("caffe")  # locates the package without importing it
    if spec is not None and spec.origin:
        prefix = Path(spec.origin).resolve().parents[2]
        if (prefix / "lib").is_dir():
            return prefix
    marker = ROOT / ".venv" / ".caffe-prefix"
    return Path(marker.read_text().strip()) if marker.is_file() else None
