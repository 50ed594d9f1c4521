"""Small shared pieces of the command-line tools: errors, atomic writes, prototxt I/O, provenance."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def logger(tool: str) -> logging.Logger:
    """The tool's logger. Messages go nowhere until a command line calls console_logging() (so library calls and
    tests stay quiet), and into a run folder's log file inside run_log()."""
    return logging.getLogger(f"segnet.{tool}")


def console_logging() -> None:
    """Every `segnet.*` logger's INFO messages on stderr, as written (a command line's first call)."""
    root = logging.getLogger("segnet")
    root.setLevel(logging.INFO)
    if not any(getattr(h, "segnet_console", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.segnet_console = True
        root.addHandler(handler)


def open_run_log(path: Path) -> logging.Handler:
    """Append every `segnet.*` message to `path` (a run folder's train.log) until close_run_log(handler)."""
    root = logging.getLogger("segnet")
    root.setLevel(logging.INFO)
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    return handler


def close_run_log(handler: logging.Handler) -> None:
    logging.getLogger("segnet").removeHandler(handler)
    handler.close()


def command_parser(tool: str, doc: str, epilog_from: int = 1, description_at: int = 0):
    """The argparse parser of `python -m tools.TOOL`: the module docstring's paragraph `description_at` as the
    description, its paragraphs from `epilog_from` on as the epilog (kept as written)."""
    import argparse

    paragraphs = doc.split("\n\n")
    return argparse.ArgumentParser(prog=f"python -m tools.{tool}", description=paragraphs[description_at],
                                   epilog="\n\n".join(paragraphs[epilog_from:]),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def fail(tool: str, message: str, code: int = 2):
    """The one-line reason every tool gives, `TOOL: error: MESSAGE` on stderr, then a non-zero exit.

    The exit statuses of every `python -m tools.X`: 0 done; 2 an input, setting or folder that cannot be used (the
    message names it; nothing was left half-written); 128 + N stopped by signal N (130: Ctrl-C), the same command
    again finishes the work; 1 is left to Python itself (an unexpected error, which is a bug to report)."""
    print(f"{tool}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def fail_diverged(tool: str, error: FloatingPointError):
    """fail() for a training whose loss went NaN or infinite, without the interpreter's teardown.

    BVLC's Accuracy layer (in every generated TRAIN net) sorts the class scores with std::partial_sort, which is
    undefined on NaN and corrupts the heap: freeing Caffe's objects afterwards aborts the process ("double free or
    corruption", exit 134) after the one-line reason. Everything the run keeps is already on disk (its snapshots
    and state are written atomically, and nothing is written after a diverged step), so the process leaves at
    once with fail()'s line and status."""
    import logging

    print(f"{tool}: error: {error}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(2)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path next to `path`, renamed onto it only if the block succeeds (else removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; results are ordinary files
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Busy(RuntimeError):
    """Another live process holds the folder (tools.runio.folder_lock)."""


@contextlib.contextmanager
def folder_lock(folder: Path | str) -> Iterator[None]:
    """Hold `folder` for this process: a second command on the same run (say, a study re-run while a killed
    study's child still trains) is refused with Busy instead of writing into it at the same time. The lock is
    an flock on a hidden sibling file, so the kernel drops it when the holder dies, however it dies."""
    import fcntl

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f".{folder.name}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise Busy(f"{folder} is in use by {holder}: wait for it to end (or stop it) and run again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def load_net_param(path: Path | str):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    param = caffe_pb2.NetParameter()
    try:
        text_format.Merge(Path(path).read_text(), param)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
        raise ValueError(f"{path}: not a readable Caffe prototxt ({e})") from None
    return param


def gpu_device() -> str:
    """The GPU to run on: SEGNET_GPU=<device>; GPU 0 by default where the CUDA build is in use (CAFFE_BUILD=cuda,
    as the Docker image sets it); "" (the CPU) otherwise. SEGNET_GPU= (empty) forces the CPU."""
    return os.environ.get("SEGNET_GPU", "0" if os.environ.get("CAFFE_BUILD") == "cuda" else "")


def set_caffe_mode(gpu: int | None = None):
    """Caffe on `gpu` when given (a tool's --gpu), else on gpu_device() (SEGNET_GPU), else on the CPU: the one
    place every tool picks its device. Returns the caffe module."""
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


def out_folder_problem(path: Path) -> str | None:
    """Why `path` cannot be an output folder (checked before the work, creating nothing), or None."""
    path = Path(path)
    if path.exists():
        return None if path.is_dir() else f"{path}: exists and is not a folder (--out)"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return None if parent.is_dir() else f"{path}: cannot be created ({parent} is not a folder) (--out)"


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


def fault_point(name: str, count: int) -> None:
    """Test-only hook for the fault-injection suite (tests/test_faults.py): with SEGNET_FAULT=NAME:COUNT in the
    environment, the process kills itself with SIGKILL (or SEGNET_FAULT_SIGNAL, e.g. SIGTERM) when it reaches
    this point with this count. Deterministic kill points, without timing races; a no-op otherwise."""
    if os.environ.get("SEGNET_FAULT") == f"{name}:{count}":
        import signal

        os.kill(os.getpid(), getattr(signal, os.environ.get("SEGNET_FAULT_SIGNAL", "SIGKILL")))


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file; a torn last line (a kill mid-append) is dropped."""
    records = []
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
