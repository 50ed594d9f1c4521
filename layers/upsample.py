"""SegNet's ``Upsample`` (DeconvNet's max ``UNPOOLING``): upsampling with max-pooling indices, a Python layer.

Use::

    layer { name: "upsample4" type: "Python" bottom: "conv5" bottom: "pool4_mask" top: "upsample4"
            python_param { module: "layers.upsample" layer: "Upsample"
                           param_str: '{"scale": 2, "pad_out_h": true}' } }

Bottoms are ``[values, mask]``, where ``mask`` is the second top of a BVLC MAX Pooling layer (a float
holding the flat index ``h*W + w`` inside each (n, c) plane of the pooling *input*), or ``[values, mask,
reference]``, where the output takes the height and width of ``reference`` (meant to be the pooling input:
"unpool to its size").

``param_str`` is JSON with exactly caffe-segnet's ``upsample_param`` keys (``scale``, ``scale_h``,
``scale_w``, ``pad_out_h``, ``pad_out_w``, ``upsample_h``, ``upsample_w``); an empty ``param_str`` means
``scale: 2``. Semantics follow caffe-segnet's ``src/caffe/layers/upsample_layer.cpp``
(docs/caffe.md §1.2): zero-filled top, ``top[mask[i]] = value[i]`` per plane;
backward ``value_diff[i] = top_diff[mask[i]]`` (a pure gather, no accumulation); no gradient to the mask.
Deliberate differences, each turning silent misbehaviour into an error:

* the output size is recomputed on every reshape (caffe-segnet fixed it at the first reshape in scale mode);
* negative mask indices are rejected (caffe-segnet wrote out of bounds), and out-of-range ones, on every
  forward (caffe-segnet's CPU backward compared against an uninitialised size: its issue #34);
* ``upsample_h/w`` that no ``scale``-sized, stride-``scale`` pooling of the mask's shape can come from is
  rejected: caffe-segnet read the flat indices with the wrong row width and scrambled the output silently. A
  ``pad_out_w`` on an even pooled width (60 -> 30 -> 59) cannot be told from a right one by shapes; the
  index range check catches it whenever a maximum lies in the last column;
* ``upsample_h`` without ``upsample_w`` (or the reverse), and ``pad_out_*`` together with ``upsample_h/w``,
  are rejected instead of ignored.

The pure NumPy functions (``parse_params``, ``output_size``, ``flat_indices``, ``upsample_forward``,
``upsample_backward``) hold the logic; the ``Upsample`` class moves blobs in and out. All of it is
vectorised over the whole batch."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

try:
    import caffe

    _LayerBase = caffe.Layer
except ImportError:  # the pure functions stay usable without Caffe (PyTorch-only tools); the layer needs it
    caffe = None
    _LayerBase = object

PARAM_KEYS = ("scale", "scale_h", "scale_w", "pad_out_h", "pad_out_w", "upsample_h", "upsample_w")
_INT_KEYS = ("scale", "scale_h", "scale_w", "upsample_h", "upsample_w")
_BOOL_KEYS = ("pad_out_h", "pad_out_w")
# The mask is a float32 blob: flat indices are exact only up to 2**24 (docs/caffe.md §1.2).
MAX_PLANE = 2**24


class UpsampleError(ValueError):
    """A bad Upsample configuration or input; the message starts with "Upsample layer: "."""

    def __init__(self, message: str):
        super().__init__(f"Upsample layer: {message}")


@dataclass(frozen=True)
class UpsampleParams:
    """The parsed ``param_str``. Exactly one of three modes: reference bottom, explicit size, or scale."""

    scale_h: int = 2
    scale_w: int = 2
    pad_out_h: bool = False
    pad_out_w: bool = False
    upsample_h: int | None = None
    upsample_w: int | None = None
    from_reference: bool = False

    @property
    def mode(self) -> str:
        if self.from_reference:
            return "reference"
        return "size" if self.upsample_h is not None else "scale"


def parse_params(param_str: str | None, with_reference: bool = False) -> UpsampleParams:
    """Parse and check ``param_str`` with caffe-segnet's precedence: upsample_h/w, else scale_h/w, else scale.

    ``with_reference``: the layer has a third bottom, which alone gives the output size, so no key may be set.
    """
    raw = _read_json(param_str)
    if with_reference:
        if raw:
            raise UpsampleError(
                "the third bottom gives the output size, so param_str must be empty or {}, "
                f"got {param_str!r}"
            )
        return UpsampleParams(from_reference=True)
    scale_h, scale_w = _scales(raw, param_str)
    if "upsample_h" in raw:
        return _explicit_size(raw, param_str, scale_h, scale_w)
    pad_h, pad_w = raw.get("pad_out_h", False), raw.get("pad_out_w", False)
    if pad_h and scale_h != 2:
        raise UpsampleError(f"pad_out_h needs scale 2 (as in caffe-segnet), got scale {scale_h}")
    if pad_w and scale_w != 2:
        raise UpsampleError(f"pad_out_w needs scale 2 (as in caffe-segnet), got scale {scale_w}")
    return UpsampleParams(scale_h=scale_h, scale_w=scale_w, pad_out_h=pad_h, pad_out_w=pad_w)


def _read_json(param_str: str | None) -> dict:
    """param_str as a dict of known keys with values of the right types."""
    text = (param_str or "").strip()
    try:
        raw = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise UpsampleError(f"param_str {param_str!r} is not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise UpsampleError(f"param_str {param_str!r} must be a JSON object like {{\"scale\": 2}}")
    unknown = sorted(set(raw) - set(PARAM_KEYS))
    if unknown:
        raise UpsampleError(
            f"unknown key(s) {unknown} in param_str {param_str!r}; allowed: {list(PARAM_KEYS)}"
        )
    for key in _INT_KEYS:
        # bool is an int in Python; caffe-segnet's fields are uint32, so `true` is a mistake, not 1.
        if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], int)):
            raise UpsampleError(f"{key} must be an integer, got {raw[key]!r} in param_str {param_str!r}")
    for key in _BOOL_KEYS:
        if key in raw and not isinstance(raw[key], bool):
            raise UpsampleError(f"{key} must be true or false, got {raw[key]!r} in param_str {param_str!r}")
    return raw


def _scales(raw: dict, param_str: str | None) -> tuple[int, int]:
    """The scale pair, with caffe-segnet's pairing rules (checked before the size, as its LayerSetUp does)."""
    has = raw.__contains__
    if has("upsample_h") != has("upsample_w"):
        # caffe-segnet silently fell back to scale mode here; a half-given size is surely a mistake.
        raise UpsampleError(f"upsample_h and upsample_w must be given together (param_str {param_str!r})")
    # caffe-segnet's LayerSetUp CHECK: scale_h and scale_w come as a pair and exclude scale.
    if has("scale_h") != has("scale_w"):
        raise UpsampleError(f"scale_h and scale_w must be given together (param_str {param_str!r})")
    if has("scale") and has("scale_h"):
        raise UpsampleError(f"give either scale or scale_h/scale_w, not both (param_str {param_str!r})")

    if has("scale_h"):
        scale_h, scale_w = raw["scale_h"], raw["scale_w"]
    else:
        scale_h = scale_w = raw.get("scale", 2)  # caffe-segnet's default scale is 2
    if scale_h <= 1 or scale_w <= 1:
        raise UpsampleError(f"scales must be > 1, got {scale_h}x{scale_w} (param_str {param_str!r})")
    return scale_h, scale_w


def _explicit_size(raw: dict, param_str: str | None, scale_h: int, scale_w: int) -> UpsampleParams:
    """upsample_h/upsample_w given: the size wins over the scale."""
    up_h, up_w = raw["upsample_h"], raw["upsample_w"]
    if up_h <= 1 or up_w <= 1:  # caffe-segnet: CHECK_GT(upsample_h_, 1)
        raise UpsampleError(f"upsample_h and upsample_w must be > 1, got {up_h}x{up_w}")
    if "pad_out_h" in raw or "pad_out_w" in raw:
        # caffe-segnet ignored pad_out_* here; an explicit size and a padding rule cannot both be meant.
        raise UpsampleError(
            f"pad_out_h/pad_out_w cannot be combined with upsample_h/upsample_w ({param_str!r})"
        )
    # SegNet-Tutorial writes `scale: 2` next to upsample_h/w; caffe-segnet ignores it for the size.
    # We use it (default 2) only to check that the size fits the mask (see output_size).
    return UpsampleParams(scale_h=scale_h, scale_w=scale_w, upsample_h=up_h, upsample_w=up_w)


def output_size(
    params: UpsampleParams, in_h: int, in_w: int, ref_shape: tuple[int, ...] | None = None
) -> tuple[int, int]:
    """The (out_h, out_w) for a mask of in_h x in_w, exactly as caffe-segnet computes it, plus our fit checks.

    Scale mode: ``in*scale - pad_out``. Size mode: ``upsample_h/w``. Reference mode: the reference's H and W.
    """
    if params.from_reference:
        if ref_shape is None or len(ref_shape) < 2:
            raise UpsampleError(f"the reference bottom needs a height and a width, got shape {ref_shape}")
        out_h, out_w = int(ref_shape[-2]), int(ref_shape[-1])
    elif params.upsample_h is not None:
        out_h, out_w = params.upsample_h, params.upsample_w
        # A mask from a kernel = stride = s ceil-mode pool of a W-wide input has ceil(W/s) columns. Any other
        # out_w reads the flat indices h*W+w with the wrong row width: caffe-segnet scrambled the output
        # silently. INTERPRETATION: this assumes non-overlapping pooling with stride = scale (SegNet,
        # DeconvNet); to unpool other poolings, give the pooling input as a third bottom, which skips it.
        checks = (("upsample_h", out_h, in_h, params.scale_h), ("upsample_w", out_w, in_w, params.scale_w))
        for name, out, inp, s in checks:
            if math.ceil(out / s) != inp:
                lo, hi = (inp - 1) * s + 1, inp * s
                raise UpsampleError(
                    f"{name}={out} does not fit a mask of {in_h}x{in_w}: a {s}x{s} stride-{s} max pool gives "
                    f"{inp} from an input of {lo}..{hi}, so {name} must be in that range "
                    f"(a wrong width would scramble the mask's flat indices)"
                )
    else:
        out_h = in_h * params.scale_h - int(params.pad_out_h)
        out_w = in_w * params.scale_w - int(params.pad_out_w)
    if out_h < in_h or out_w < in_w:
        raise UpsampleError(f"output {out_h}x{out_w} is smaller than the input {in_h}x{in_w}")
    if out_h * out_w > MAX_PLANE:
        raise UpsampleError(f"output plane {out_h}x{out_w} exceeds 2**24 pixels: float32 indices are inexact")
    return out_h, out_w


def _check_pair(values: np.ndarray, mask: np.ndarray) -> None:
    if values.shape != mask.shape:
        raise UpsampleError(
            f"values {tuple(values.shape)} and mask {tuple(mask.shape)} must have the same shape"
        )
    if values.ndim != 4:
        raise UpsampleError(f"values and mask must be 4-D (N, C, H, W), got shape {tuple(values.shape)}")


def flat_indices(mask: np.ndarray, out_h: int, out_w: int, buffer: np.ndarray | None = None) -> np.ndarray:
    """Validated int64 indices into the raveled (N, C, out_h, out_w) top: plane offset + mask, (N*C, H*W).

    ``buffer``: an int64 array of that shape to fill instead of allocating. Measured at SegNet's first layer
    (4x64x180x240): filling a reused buffer and adding the offsets takes half the time of ``astype`` + add,
    whose fresh 88 MB array pays page faults on every call.
    """
    planes = mask.shape[0] * mask.shape[1]
    plane = out_h * out_w
    if mask.size:
        # Two fast float32 reductions; the cast further down truncates like caffe-segnet's (int).
        lo, hi = mask.min(), mask.max()
        if not lo >= 0:  # also catches NaN
            raise UpsampleError(
                f"mask has a negative index ({lo}); BVLC pooling writes -1 for all-NaN or -FLT_MAX windows"
            )
        if hi >= plane:
            raise UpsampleError(
                f"mask index {int(hi)} is out of range for the {out_h}x{out_w} output (mask "
                f"{tuple(mask.shape)}): the target size does not fit the pooling that made the mask"
            )
    shape = (planes, mask.shape[2] * mask.shape[3])
    if buffer is None or buffer.shape != shape or buffer.dtype != np.int64:
        buffer = np.empty(shape, np.int64)
    buffer[...] = mask.reshape(shape)
    buffer += (np.arange(planes, dtype=np.int64) * plane)[:, None]
    return buffer


def upsample_forward(
    values: np.ndarray,
    mask: np.ndarray,
    out_h: int,
    out_w: int,
    out: np.ndarray | None = None,
    index: np.ndarray | None = None,
) -> np.ndarray:
    """Zero-filled (N, C, out_h, out_w) with ``values`` scattered to ``mask`` inside each (n, c) plane.

    ``out``: a C-contiguous float32 array to write into (the top blob). ``index``: ``flat_indices(mask, ...)``
    already computed, else it is computed here. With duplicate indices (overlapping pools) the last value in
    row-major order wins, as on caffe-segnet's CPU.
    """
    _check_pair(values, mask)
    shape = (values.shape[0], values.shape[1], out_h, out_w)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or not out.flags.c_contiguous:
        raise UpsampleError(f"output buffer {out.shape} must be a C-contiguous array of shape {shape}")
    if index is None:
        index = flat_indices(mask, out_h, out_w)
    out.fill(0)
    # Fancy assignment on the raveled view with int64 indices measured fastest: np.put, int32 indices,
    # np.put_along_axis per plane and 2-D (row, column) indexing were all 1.2-1.4x slower.
    out.reshape(-1)[index.reshape(-1)] = values.reshape(-1)
    return out


def upsample_backward(
    top_diff: np.ndarray,
    mask: np.ndarray,
    out: np.ndarray | None = None,
    index: np.ndarray | None = None,
) -> np.ndarray:
    """The values' gradient: ``top_diff`` gathered at ``mask`` per plane (caffe-segnet: no accumulation).

    ``out`` and ``index`` as in ``upsample_forward``.
    """
    if top_diff.ndim != 4 or mask.ndim != 4 or top_diff.shape[:2] != mask.shape[:2]:
        raise UpsampleError(f"top diff {tuple(top_diff.shape)} does not match mask {tuple(mask.shape)}")
    if out is None:
        out = np.empty(mask.shape, np.float32)
    elif out.shape != mask.shape or not out.flags.c_contiguous:
        raise UpsampleError(f"gradient buffer {out.shape} must be a C-contiguous array of shape {mask.shape}")
    if index is None:
        index = flat_indices(mask, top_diff.shape[2], top_diff.shape[3])
    # mode="clip" skips np.take's bounds check and its output buffering (mode="raise" is 1.4x slower):
    # flat_indices has validated every index.
    np.take(np.ascontiguousarray(top_diff).reshape(-1), index, out=out.reshape(index.shape), mode="clip")
    return out


class Upsample(_LayerBase):
    """The Caffe Python layer. Bottoms ``[values, mask]`` or ``[values, mask, reference]``, one top."""

    def setup(self, bottom, top):
        if len(bottom) not in (2, 3):
            raise UpsampleError(
                f"needs bottoms [values, mask] or [values, mask, reference], got {len(bottom)} bottom(s)"
            )
        if len(top) != 1:
            raise UpsampleError(f"has exactly one top, got {len(top)}")
        self.params = parse_params(self.param_str, with_reference=len(bottom) == 3)
        self._index: np.ndarray | None = None  # int64 flat indices, reused as a buffer from call to call
        self._index_valid = False  # True when _index holds the last successful forward's validated indices

    def reshape(self, bottom, top):
        values, mask = tuple(bottom[0].shape), tuple(bottom[1].shape)  # pycaffe gives an IntVec, not a tuple
        if values != mask:  # the CHECK_EQ users hit in caffe-segnet, as an exception
            raise UpsampleError(f"values {values} and mask {mask} must have the same shape")
        if len(values) != 4:
            raise UpsampleError(f"values and mask must be 4-D (N, C, H, W), got shape {values}")
        ref = tuple(bottom[2].shape) if len(bottom) == 3 else None
        if ref is not None and len(ref) != 4:
            raise UpsampleError(f"the reference bottom must be 4-D (N, C, H, W), got shape {ref}")
        n, c, h, w = values
        # Recomputed on every reshape: caffe-segnet kept the first size forever (variable input sizes broke).
        self.out_h, self.out_w = output_size(self.params, h, w, ref)
        top[0].reshape(n, c, self.out_h, self.out_w)

    def forward(self, bottom, top):
        mask = bottom[1].data
        self._index_valid = False
        self._index = flat_indices(mask, self.out_h, self.out_w, self._index)
        upsample_forward(bottom[0].data, mask, self.out_h, self.out_w, out=top[0].data, index=self._index)
        self._index_valid = True

    def backward(self, top, propagate_down, bottom):
        # No gradient to the mask or the reference: their diffs are left untouched, as caffe-segnet did.
        if not propagate_down[0]:
            return
        mask, top_diff = bottom[1].data, top[0].diff
        # Backward reuses the indices of the last forward, as BVLC's own layers do (Pooling keeps max_idx_,
        # Dropout its rand_vec_): this saves a third of the backward. caffe-segnet re-read the mask, which
        # differs only if someone edits the mask between forward and backward. Without a valid forward
        # (e.g. it raised) the mask is read and checked again.
        expected = (mask.shape[0] * mask.shape[1], mask.shape[2] * mask.shape[3])
        same_size = top_diff.shape[2:] == (self.out_h, self.out_w)
        if self._index_valid and self._index.shape == expected and same_size:
            index = self._index
        else:
            index = self._index = flat_indices(mask, top_diff.shape[2], top_diff.shape[3], self._index)
        upsample_backward(top_diff, mask, out=bottom[0].diff, index=index)
