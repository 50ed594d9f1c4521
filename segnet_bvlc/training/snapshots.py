"""A run's snapshots: written by Caffe, moved into place whole, checked before a resume trusts them.

tools.train snapshots every --snapshot-every iterations and at every validation. Caffe writes the caffemodel and
the solverstate into snapshots/.writing/; `commit_snapshot` moves them into snapshots/ in an order that never
leaves a solverstate without its weights and state beside it, and `check_snapshot` tells an intact snapshot of a
net from a torn or foreign one (the training then falls back to the next older one).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from caffe.proto import caffe_pb2
from google.protobuf.message import DecodeError

from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.core.faults import fault_point
from segnet_bvlc.core.files import atomic_path, write_text_atomic
from segnet_bvlc.nets.load import check_weights
from segnet_bvlc.nets.weights_file import WeightsError


class SnapshotError(SegnetError):
    """A snapshot that cannot be resumed from; the message says what is wrong with it."""


def snapshot_stem(run: Path, iteration: int) -> Path:
    return run / "snapshots" / f"iter_iter_{iteration}"


def commit_snapshot(solver, run: Path, state: dict) -> Path:
    """Snapshot through Caffe into snapshots/.writing/, then move it into place whole: the caffemodel first, then
    the snapshot's state, then the solverstate (rewritten to name the caffemodel's final path). A solverstate in
    snapshots/ therefore always has its weights and state beside it; a kill at any point leaves at most an
    unfinished .writing/ that the next start clears."""
    it = solver.iter
    solver.snapshot()
    writing = run / "snapshots" / ".writing" / f"iter_iter_{it}"
    fault_point("snapshot-written", it)
    stem = snapshot_stem(run, it)
    os.replace(writing.with_suffix(".caffemodel"), stem.with_suffix(".caffemodel"))
    fault_point("snapshot-model-moved", it)
    write_text_atomic(stem.with_suffix(".state.json"), json.dumps(state, indent=2))
    relink_solverstate(writing.with_suffix(".solverstate"), stem.with_suffix(".solverstate"),
                        str(stem.with_suffix(".caffemodel")))
    writing.with_suffix(".solverstate").unlink()
    for suffix in (".caffemodel", ".solverstate"):
        with atomic_path(run / f"last{suffix}") as tmp:
            shutil.copyfile(stem.with_suffix(suffix), tmp)
    return stem


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def relink_solverstate(src: Path, dst: Path, learned_net: str) -> None:
    """Copy Caffe's solverstate `src` to `dst` (atomically) with its learned_net replaced.

    Caffe serialises SolverState in field order, iter (1) then learned_net (2), then the history (3), which is as
    large as the weights: only the head is rewritten and the history is copied as bytes, so a snapshot costs no
    second in-memory copy of it. Any other layout is rewritten through caffe_pb2."""
    name = learned_net.encode()
    with open(src, "rb") as f:
        head = f.read(1 << 16)
        try:
            tag, i = _varint(head, 0)
            _, i = _varint(head, i) if tag == 0x08 else (None, -1)
            tag, j = _varint(head, i) if i > 0 else (None, -1)
            length, j = _varint(head, j) if tag == 0x12 else (0, -1)
        except IndexError:
            j = -1
        with atomic_path(dst) as tmp:
            with open(tmp, "wb") as out:
                if j > 0:
                    size, k = bytearray(), len(name)
                    while True:
                        size.append((k & 0x7F) | (0x80 if k > 0x7F else 0))
                        k >>= 7
                        if not k:
                            break
                    out.write(head[:i] + b"\x12" + bytes(size) + name)
                    f.seek(j + length)
                    shutil.copyfileobj(f, out, 1 << 20)
                else:
                    f.seek(0)
                    state = caffe_pb2.SolverState()
                    state.ParseFromString(f.read())
                    state.learned_net = learned_net
                    out.write(state.SerializeToString())


def snapshot_candidates(run: Path) -> list[tuple[int, Path]]:
    found = []
    for path in (run / "snapshots").glob("iter_iter_*.solverstate"):
        try:
            found.append((int(path.stem.rsplit("_", 1)[1]), path))
        except ValueError:
            pass
    return sorted(found, reverse=True)


def check_snapshot(path: Path, net) -> tuple[int, dict]:
    """(iteration, state) of an intact snapshot of `net`; SnapshotError saying what is wrong otherwise."""
    solver_state = caffe_pb2.SolverState()
    try:
        solver_state.ParseFromString(path.read_bytes())
    except (OSError, DecodeError, RuntimeError, ValueError):
        raise SnapshotError(f"{path.name} does not parse (torn or corrupt)") from None
    expected = [b.data.size for blobs in net.params.values() for b in blobs]
    history = [len(h.data) for h in solver_state.history]
    if history != expected:
        raise SnapshotError(f"{path.name} holds {len(history)} solver history blobs, the net has {len(expected)} "
                       "learnable blobs of other sizes (torn, or another net)")
    weights = Path(solver_state.learned_net)
    if not weights.is_file():
        raise SnapshotError(f"{path.name}: its weights {weights.name} are missing")
    try:
        check_weights(net, weights)
    except WeightsError as e:
        raise SnapshotError(f"{path.name}: {e}") from None
    state_path = path.with_name(path.stem + ".state.json")
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError):
        raise SnapshotError(f"{path.name}: its state {state_path.name} is missing or torn") from None
    if solver_state.iter != state.get("iteration"):
        raise SnapshotError(f"{path.name}: solver at iteration {solver_state.iter}, state at {state.get('iteration')}")
    return solver_state.iter, state
