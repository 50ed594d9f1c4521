"""The machine a benchmark ran on: the project's provenance record plus what only timings need (CPU model,
usable CPUs, memory, the BLAS and its threads, the GPU, the load average).

`machine_info` is the record of tools.benchmark and tools.cpu_speed, `memory_machine` that of
tools.benchmark_memory; both start from `segnet_bvlc.core.provenance.provenance()`, and the keys each writes are
the ones the committed results (and their tests) read.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.core.provenance import provenance


def total_memory_bytes() -> int:
    """The machine's physical memory (the kernel's MemTotal)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        return next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "")
    except OSError:
        return ""


def short_commit(full: str) -> str:
    """git's abbreviation of the project commit; "unknown" where there is no git (the Docker image) or no
    repository (an unpacked archive)."""
    if not full:
        return "unknown"
    try:
        return subprocess.run(["git", "rev-parse", "--short", full], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def gpu_name(gpu: int | None) -> str | None:
    """nvidia-smi's name and driver version of device `gpu` (None on the CPU)."""
    if gpu is None:
        return None
    q = subprocess.run(["nvidia-smi", f"--id={gpu}", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                       capture_output=True, text=True)
    return q.stdout.strip() or None


def openblas_info() -> dict:
    """Threads and build of the OpenBLAS that Caffe links (numpy bundles its own, reported separately)."""
    info: dict = {"OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                  "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    name = ctypes.util.find_library("openblas")
    try:
        lib = ctypes.CDLL(name or "libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        info.update(threads=lib.openblas_get_num_threads(), config=lib.openblas_get_config().decode())
    except (OSError, AttributeError):
        info["threads"] = None
    return info


def blas_in_use() -> str:
    """The BLAS that Caffe's cblas_sgemm resolves to in this process: a preloaded MKL (its version string), else
    the OpenBLAS libcaffe links (its build string)."""
    if "mkl" in os.environ.get("LD_PRELOAD", ""):
        buf = ctypes.create_string_buffer(256)
        ctypes.CDLL(os.environ["LD_PRELOAD"].split(":")[0]).mkl_get_version_string(buf, len(buf))
        return buf.value.decode().strip() + f" ({os.environ.get('MKL_THREADING_LAYER', 'INTEL')} threading)"
    info = openblas_info()
    return f"{info.get('config', '?')}, {info.get('threads')} threads"


def torch_info() -> dict:
    """PyTorch's version, threads and the BLAS / CPU kernels its build uses (torch.__config__.show())."""
    import torch  # optional (the test extra): only `--peer torch` asks for it

    shown = torch.__config__.show()
    keep = [line.strip(" -") for line in shown.splitlines() if "CPU capability" in line]
    keep += re.findall(r"\b((?:BLAS_INFO|LAPACK_INFO|USE_MKLDNN|USE_OPENMP)=[^,]*)", shown)
    return {"version": torch.__version__, "threads": torch.get_num_threads(), "config": keep}


def machine_info(gpu: int | None) -> dict:
    """The machine record of tools.benchmark and tools.cpu_speed (the `machine` object of their JSON)."""
    import caffe  # heavy: only a measurement needs it (and it is loaded by then); for its version

    prov = provenance()
    build = prov["caffe"]["build"] or ""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(), "os": prov["platform"], "cpu": cpu_model(),
        "cpus_usable": len(os.sched_getaffinity(0)), "memory_gib": round(total_memory_bytes() / 2 ** 30, 1),
        "caffe_build": "CUDA" if "-cuda" in build else "CPU", "caffe_prefix": build,
        "caffe_version": getattr(caffe, "__version__", "?"), "mode": "GPU" if gpu is not None else "CPU",
        "gpu": gpu_name(gpu), "python": prov["python"], "numpy": prov["packages"].get("numpy"),
        "protobuf": prov["packages"].get("protobuf"), "openblas": openblas_info(),
        "project_commit": short_commit(prov["git_commit"]),
        # Other processes on the machine skew absolute times (and, as they come and go, the ratios too).
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def memory_machine() -> dict:
    """The machine record of tools.benchmark_memory: the provenance record and the machine's memory in GiB."""
    return {**provenance(), "memory_gb": total_memory_bytes() / 2 ** 30}
