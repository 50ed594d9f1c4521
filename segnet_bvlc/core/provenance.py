"""The provenance record every result carries: which code, Caffe build, packages and machine produced it."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from segnet_bvlc.core.device import caffe_prefix
from segnet_bvlc.core.paths import ROOT


def provenance() -> dict:
    """Everything needed to say which code, Caffe and packages produced a result."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    packages = {}
    for name in ("numpy", "scipy", "scikit-image", "protobuf", "lmdb", "opencv-python-headless", "torch"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    prefix = caffe_prefix()
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "caffe": {"build": prefix.name if prefix else None, "prefix": str(prefix) if prefix else None,
                  "source": "BVLC caffe 99bd997 (Debian caffe_1.0.0+git20180821.99bd997.orig.tar.gz)"},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "packages": packages,
        "env": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE")
                if k in os.environ},
    }
