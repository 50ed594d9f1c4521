"""The PNGs of a prediction: class colours, overlays, the uncertainty maps and the class legend.

NAME_uncertainty.png is 16-bit grey, the uncertainty x 65535 / 0.25 (0.25 being the largest variance a
probability can have, so values compare across images); NAME_uncertainty_colour.png is the bone_r colour map
from 0 to the image's maximum, as SegNet-Tutorial's test_bayesian_segnet.py shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segnet_bvlc.core.files import atomic_path
from segnet_bvlc.dataset import camvid

# NAME_uncertainty.png stores round(uncertainty * UNCERTAINTY_PNG_SCALE) in 16 bits: 0.25, the largest variance
# of a value in [0, 1], maps to 65535.
UNCERTAINTY_PNG_SCALE = 65535 / 0.25


def overlay(bgr_image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB blend of the image and the CamVid colours of `labels` (alpha = weight of the colours)."""
    rgb = bgr_image[..., ::-1].astype(np.float32)
    blend = (1 - alpha) * rgb + alpha * camvid.colourise(labels).astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def class_names(k: int) -> list[str]:
    """CamVid's names for an 11-class net, else `class i`."""
    return list(camvid.CLASSES) if k == camvid.NUM_CLASSES else [f"class {i}" for i in range(k)]


def class_colours(k: int) -> np.ndarray:
    """(k, 3) uint8 RGB: CamVid's colours for up to 11 (12 with void) classes, else a fixed random table."""
    if k <= camvid.NUM_CLASSES:
        return camvid.COLOURS[:k]
    return np.random.default_rng(0).integers(0, 256, (k, 3), dtype=np.uint8)


def colour_labels(labels: np.ndarray, k: int) -> np.ndarray:
    """RGB (H, W, 3) of a label map in the colours of a k-class net."""
    return camvid.colourise(labels) if k <= camvid.NUM_CLASSES else class_colours(k)[labels]


def uncertainty_png(uncertainty: np.ndarray) -> np.ndarray:
    """The 16-bit grey NAME_uncertainty.png of an uncertainty map (fixed scale, UNCERTAINTY_PNG_SCALE)."""
    return np.clip(np.rint(uncertainty.astype(np.float64) * UNCERTAINTY_PNG_SCALE), 0, 65535).astype(np.uint16)


def uncertainty_colour(uncertainty: np.ndarray) -> np.ndarray:
    """RGB view of an uncertainty map: matplotlib's bone_r from 0 to the map's maximum (test_bayesian_segnet.py's
    display: white = certain, dark = uncertain)."""
    from matplotlib import colormaps  # heavy: only for a sampled prediction

    top = float(uncertainty.max())
    norm = uncertainty / top if top > 0 else np.zeros_like(uncertainty)
    return (colormaps["bone_r"](norm)[..., :3] * 255 + 0.5).astype(np.uint8)


def legend(names: Sequence[str] = camvid.CLASSES, colours: np.ndarray = camvid.COLOURS) -> np.ndarray:
    """RGB image: one colour swatch and class name per row."""
    font = ImageFont.load_default()
    row, swatch = 22, 32
    width = swatch + 16 + max(int(font.getlength(n)) for n in names) + 10
    img = Image.new("RGB", (width, row * len(names) + 8), "white")
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        y = 4 + i * row
        draw.rectangle([6, y + 2, 6 + swatch, y + row - 4], fill=tuple(int(c) for c in colours[i]),
                       outline="black")
        draw.text((swatch + 14, y + 4), name, fill="black", font=font)
    return np.array(img)


def save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:  # no half-written PNG is ever left
        Image.fromarray(array).save(tmp, format="PNG")
