"""Files that are whole or absent: atomic writes, the run-folder lock, JSON lines that survive a torn append."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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


def write_text_atomic(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


class Busy(RuntimeError):
    """Another live process holds the folder (folder_lock)."""


@contextlib.contextmanager
def folder_lock(folder: Path | str) -> Iterator[None]:
    """Hold `folder` for this process: a second command on the same run (say, a study re-run while a killed
    study's child still trains) is refused with Busy instead of writing into it at the same time. The lock is
    an flock on a hidden sibling file, so the kernel drops it when the holder dies, however it dies."""
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


def out_folder_problem(path: Path) -> str | None:
    """Why `path` cannot be an output folder (checked before the work, creating nothing), or None."""
    path = Path(path)
    if path.exists():
        return None if path.is_dir() else f"{path}: exists and is not a folder (--out)"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return None if parent.is_dir() else f"{path}: cannot be created ({parent} is not a folder) (--out)"


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
