"""LMDB I/O shared by the CamVid converter, its verifier, the data layer and the benchmarks.

An "LMDB pair" is a folder holding two LMDBs with identical keys, as `tools.camvid_to_lmdb` writes it:

    OUT/images/  Datum per key: uint8, BGR, C x H x W (exactly what Caffe's own convert_imageset stores)
    OUT/labels/  Datum per key: uint8, 1 x H x W, class indices 0..VOID (the last = void)
    OUT/meta.json

Keys are `%08d_<stem>`, so LMDB's lexicographic key order is the list order.
Caffe's `Datum` message comes from `caffe.proto.caffe_pb2`. BVLC's own `Data` layer can read these LMDBs too.
"""

from __future__ import annotations

import json
from pathlib import Path

import lmdb
import numpy as np

IMAGES, LABELS, META = "images", "labels", "meta.json"
PAGE = 4096


def caffe_pb2():
    # Imported lazily: pycaffe is heavy and only its protobuf module is needed here.
    from caffe.proto import caffe_pb2 as pb2

    return pb2


def encode_datum(array: np.ndarray) -> bytes:
    """A C x H x W uint8 array as a serialised, unencoded Caffe Datum (label field 0, as unused)."""
    if array.dtype != np.uint8 or array.ndim != 3:
        raise ValueError(f"expected a C x H x W uint8 array, got {array.dtype} {array.shape}")
    datum = caffe_pb2().Datum()
    datum.channels, datum.height, datum.width = (int(s) for s in array.shape)
    datum.data = np.ascontiguousarray(array).tobytes()
    datum.label = 0
    return datum.SerializeToString()


def decode_datum(buffer, datum=None) -> np.ndarray:
    """A serialised Datum -> C x H x W uint8 array (a view on the Datum's own bytes, read-only)."""
    datum = datum if datum is not None else caffe_pb2().Datum()
    datum.ParseFromString(bytes(buffer) if isinstance(buffer, memoryview) else buffer)
    if datum.encoded:
        raise ValueError("encoded (PNG/JPEG) Datum: this toolkit stores raw pixels only")
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        array = np.frombuffer(datum.data, dtype=np.uint8)
    elif len(datum.float_data):
        array = np.asarray(datum.float_data, dtype=np.float32)
    else:
        raise ValueError("Datum holds no data")
    if array.size != shape[0] * shape[1] * shape[2]:
        raise ValueError(f"Datum data size {array.size} does not match its shape {shape}")
    return array.reshape(shape)


def value_footprint(nbytes: int) -> int:
    """Bytes one LMDB value of `nbytes` takes: large values go to whole overflow pages, plus a leaf entry."""
    return (nbytes + 64 + PAGE - 1) // PAGE * PAGE + 256


def map_size_for(value_bytes: int, count: int) -> int:
    """A map size for `count` values of about `value_bytes` each: twice the footprint plus 64 MiB of slack.

    The map size is only a reservation of address space (the file grows as written), so erring large is free.
    """
    return 2 * count * value_footprint(value_bytes) + (64 << 20)


class PairWriter:
    """Writes the two LMDBs of a pair, committing every `commit_every` keys and growing the map when full."""

    def __init__(self, folder: Path, map_size: int, commit_every: int = 64):
        self.envs = {}
        for name in (IMAGES, LABELS):
            # sync off while writing, one explicit sync in close(): the folder is only renamed into place after
            # close(), so a crash can never expose a half-synced database at the final path.
            self.envs[name] = lmdb.open(str(folder / name), map_size=map_size, subdir=True, sync=False,
                                        metasync=False, meminit=False, map_async=False, lock=True)
        self.pending: list[tuple[bytes, bytes, bytes]] = []
        self.commit_every = commit_every

    def put(self, key: bytes, image_datum: bytes, label_datum: bytes) -> None:
        self.pending.append((key, image_datum, label_datum))
        if len(self.pending) >= self.commit_every:
            self.flush()

    def flush(self) -> None:
        for column, name in ((1, IMAGES), (2, LABELS)):
            env = self.envs[name]
            while True:
                try:
                    with env.begin(write=True) as txn:
                        for item in self.pending:
                            if not txn.put(item[0], item[column], overwrite=False):
                                raise ValueError(f"duplicate key {item[0].decode()}")
                    break
                except lmdb.MapFullError:
                    env.set_mapsize(env.info()["map_size"] * 2)
        self.pending = []

    def close(self) -> None:
        self.flush()
        for env in self.envs.values():
            env.sync(True)
            env.close()
        self.envs = {}

    def discard(self) -> None:
        """Close without writing what is pending (the caller deletes the folder)."""
        for env in self.envs.values():
            env.close()
        self.envs, self.pending = {}, []


def disk_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


# py-lmdb refuses to open one environment twice in a process, but a solver's train and test nets (or two
# readers in a test) may read the same LMDB: environments are shared per path and reference-counted.
_SHARED: dict[str, list] = {}


def _open_shared(path: Path) -> lmdb.Environment:
    key = str(Path(path).resolve())
    if key not in _SHARED:
        # readonly + lock=False: no lock file, so read-only copies and any number of processes work.
        _SHARED[key] = [lmdb.open(key, readonly=True, lock=False, readahead=False, subdir=True), 0]
    _SHARED[key][1] += 1
    return _SHARED[key][0]


def _close_shared(path: Path) -> None:
    key = str(Path(path).resolve())
    entry = _SHARED.get(key)
    if entry is not None:
        entry[1] -= 1
        if entry[1] <= 0:
            entry[0].close()
            del _SHARED[key]


class PairReader:
    """Random access to an LMDB pair by list index, through one long-lived read transaction per LMDB.

    `cache=True` decodes everything once into RAM (uint8, ~0.7 MB per pair at CamVid's native size).
    """

    def __init__(self, folder: Path | str, cache: bool = False):
        self.folder = Path(folder)
        for name in (IMAGES, LABELS):
            if not (self.folder / name / "data.mdb").is_file():
                raise FileNotFoundError(f"{self.folder / name}: no LMDB here (expected the output of "
                                        f"tools.camvid_to_lmdb: {IMAGES}/ and {LABELS}/)")
        meta_path = self.folder / META
        self.meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.envs = {name: _open_shared(self.folder / name) for name in (IMAGES, LABELS)}
        self.txns = {name: env.begin(buffers=True) for name, env in self.envs.items()}
        with self.txns[IMAGES].cursor() as cursor:
            self.keys = [bytes(k) for k in cursor.iternext(keys=True, values=False)]
        with self.txns[LABELS].cursor() as cursor:
            label_keys = [bytes(k) for k in cursor.iternext(keys=True, values=False)]
        if label_keys != self.keys:
            raise ValueError(f"{self.folder}: the image and label LMDBs have different keys")
        if not self.keys:
            raise ValueError(f"{self.folder}: the LMDBs are empty")
        self._datum = caffe_pb2().Datum()
        self.cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if cache:
            self.cache = [self._read(i) for i in range(len(self.keys))]

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        key = self.keys[index]
        image = decode_datum(self.txns[IMAGES].get(key), self._datum)
        label = decode_datum(self.txns[LABELS].get(key), self._datum)
        return image, label

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image C x H x W uint8 BGR, label 1 x H x W uint8) of the index-th key in list order."""
        return self.cache[index] if self.cache is not None else self._read(index)

    def shape(self) -> tuple[int, int, int]:
        return tuple(self[0][0].shape)

    def close(self) -> None:
        for txn in self.txns.values():
            txn.abort()
        for name in (IMAGES, LABELS):
            _close_shared(self.folder / name)
        self.txns, self.envs = {}, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
