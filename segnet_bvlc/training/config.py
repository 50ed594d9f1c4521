"""The settings of a training run: one dataclass, stored as the run folder's config.json, with one check."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from prototxt.options import NAMED_WEIGHTS
from prototxt.protocol import PROTOCOLS
from prototxt.protocol import settings as protocol_settings
from prototxt.registry import ARCHS
from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.dataset.camvid import NUM_CLASSES


class RunError(SegnetError):
    """A run folder or setting that cannot be used; the message says why and what to do."""


_TABLE1 = PROTOCOLS["table1"]
_WHOLE_NUMBERS = ("height", "width", "classes", "batch", "iter_size", "max_iter", "log_every", "snapshot_every",
                  "val_every")


@dataclass
class TrainConfig:
    arch: str = "segnet-basic"
    train_source: str = ""        # LMDB pair of the training split (segnet_bvlc.lmdb_data.convert)
    val_source: str = ""          # LMDB pair of the validation split; "" = no validation
    # Defaults: the Table 1 protocol (prototxt/protocol.py); tools.train's command line and the pipeline fill
    # them from the architecture's protocol and preset instead.
    height: int = _TABLE1["height"]
    width: int = _TABLE1["width"]
    classes: int = NUM_CLASSES
    batch: int = _TABLE1["batch"]
    iter_size: int = 1            # Caffe's iter_size: gradients of iter_size batches per update
    max_iter: int = _TABLE1["max_iter"]
    base_lr: float = _TABLE1["base_lr"]
    momentum: float = _TABLE1["momentum"]
    weight_decay: float = _TABLE1["weight_decay"]
    class_weights: str = _TABLE1["class_weights"]
    seed: int = 1
    mirror: bool = False
    log_every: int = _TABLE1["log_every"]
    snapshot_every: int = _TABLE1["snapshot_every"]
    val_every: int = _TABLE1["val_every"]
    init_weights: str = ""        # VGG16 caffemodel for the encoder (segnet_bvlc.training.init_weights)
    init_force: bool = False      # accept an init file that is not the released VGG16 (size/sha256)
    batchnorm: bool = True
    dropout: bool = False

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RunError(f"{path}: not a readable run configuration ({e})") from None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> str:
        """config.json's text."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    def resolved(self) -> "TrainConfig":
        """The same settings with absolute paths, as stored in config.json."""
        return dataclasses.replace(self, train_source=absolute(self.train_source),
                                   val_source=absolute(self.val_source), init_weights=absolute(self.init_weights))

    def check(self, sources: bool = True) -> None:
        """RunError naming the first setting that cannot work; nothing is written before this passes.
        `sources=False` skips the LMDB checks (the pipeline makes them after checking the rest)."""
        if self.arch not in ARCHS:
            raise RunError(f"unknown --arch '{self.arch}' (choose from {', '.join(ARCHS)})")
        self._check_numbers()
        if self.class_weights not in NAMED_WEIGHTS and not Path(self.class_weights).is_file():
            raise RunError(f"--class-weights '{self.class_weights}': not one of {', '.join(NAMED_WEIGHTS)} "
                           "nor an existing file")
        if self.init_weights and not Path(self.init_weights).is_file():
            raise RunError(f"{self.init_weights}: --init-weights file not found")
        if sources:
            self._check_sources()

    def _check_numbers(self) -> None:
        for name in _WHOLE_NUMBERS:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise RunError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value}")
        if self.classes < 2:
            raise RunError(f"--classes must be >= 2, got {self.classes}")
        for name in ("base_lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "base_lr" and value == 0):
                raise RunError(f"--{name.replace('base_', '').replace('_', '-')} must be a finite number "
                               f"{'> 0' if name == 'base_lr' else '>= 0'}, got {value}")

    def _check_sources(self) -> None:
        if not self.train_source:
            raise RunError("--train-source is required (an LMDB pair made by tools.camvid_to_lmdb)")
        for source in filter(None, (self.train_source, self.val_source)):
            meta = Path(source) / "meta.json"
            if not (Path(source) / "images").is_dir() or not meta.is_file():
                raise RunError(f"{source}: not an LMDB pair (no images/ or meta.json inside; make one with "
                               "tools.camvid_to_lmdb)")
            size = json.loads(meta.read_text())
            if (size.get("height"), size.get("width")) != (self.height, self.width):
                raise RunError(f"{source}: holds {size.get('height')}x{size.get('width')} images, the run trains "
                               f"at {self.height}x{self.width} (--height/--width)")


def config_diff(stored: TrainConfig, wanted: TrainConfig) -> list[str]:
    """`name: stored -> wanted` for every setting that differs."""
    a, b = dataclasses.asdict(stored), dataclasses.asdict(wanted)
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


def config_from_settings(arch: str, preset: str = "paper", **given) -> TrainConfig:
    """The run's settings: the architecture's protocol under `preset` (prototxt/protocol.py), then every
    setting in `given` that is not None. Not checked: an unknown arch is left to `check()` to name."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    chosen = protocol_settings(arch, preset) if arch in ARCHS else {}
    chosen.update({k: v for k, v in given.items() if k in fields and v is not None}, arch=arch)
    return TrainConfig(**{k: v for k, v in chosen.items() if k in fields})


def config_from_args(args) -> TrainConfig:
    """tools.train's command line (an argparse Namespace) as settings; what it leaves out comes from the
    architecture's protocol (paper preset)."""
    return config_from_settings(**vars(args))


def absolute(path: str) -> str:
    """`path` resolved, or "" for no path (config.json stores absolute paths, so a run folder stands alone)."""
    return str(Path(path).resolve()) if path else ""
