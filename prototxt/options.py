"""The one options object every generator takes, and its validation.

Defaults that depend on the architecture (batch size, solver protocol, class weighting, biases) are `None`
here and resolved by `resolve(arch, opts)` from the registry, so `Options()` means "what the paper did for
this architecture".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from segnet_bvlc.dataset.camvid import HEIGHT, NUM_CLASSES, WIDTH

from .protocol import PROTOCOLS  # the protocol table names them

SPLITS = ("train", "test", "deploy")
DATA_MODES = ("lmdb", "input")
BIASES = ("paper", "public")
NAMED_WEIGHTS = ("published", "recomputed", "none")
FC_DIMS = (1024, 4096)

# Repo-relative, so the prototxts work from the repository root (every tool and `make` runs there).
CLASS_WEIGHTS_FILES = {
    "published": "data/class_weights/camvid_published.binaryproto",
    "recomputed": "data/class_weights/camvid_recomputed.binaryproto",
}
CAMVID_CLASSES = NUM_CLASSES  # the named weightings' matrices are CamVid's (data/camvid.json)


class OptionsError(ValueError):
    """A bad generator option; the message is one line that names the option and the problem."""


@dataclass
class Options:
    """Everything a generator needs. `None` means "the architecture's default" (see `resolve`)."""

    classes: int = CAMVID_CLASSES
    height: int = HEIGHT  # CamVid's native size (data/camvid.json)
    width: int = WIDTH
    batch: int | None = None  # train: 12 (Table 1 protocol) or 5 (benchmark protocol); test and deploy: 1
    split: str = "train"  # train | test | deploy
    # published | recomputed | none | path to a K x K InfogainLoss .binaryproto (H = diag(weights)).
    class_weights: str | None = None  # default: published for the SegNet/Table 1 family, none for the rest
    source: str | None = None  # LMDB folder; default data/lmdb/camvid-{train|val}-{H}x{W}
    seed: int = 1
    shuffle: bool | None = None  # default: true for train, false for test
    mirror: bool = False  # the paper used no augmentation
    batchnorm: bool = True  # the paper's benchmark put BatchNorm after every convolution
    dropout: bool = False  # 0.5 where Bayesian SegNet puts it (docs/paper.md §7.3)
    # With dropout: test/deploy nets sample a new mask on every forward (Monte Carlo dropout, caffe-segnet's
    # sample_weights_test) with the layers.mc_dropout Python layer, instead of BVLC's Dropout (a copy in TEST).
    mc_dropout: bool = False
    biases: str | None = None  # paper | public; default paper for the SegNet-Basic family, public otherwise
    data: str = "lmdb"  # lmdb: the CamVidData Python layer; input: Input layers for data and label
    fc_dim: int | None = None  # DeconvNet fc6/fc7 width: 1024 (SegNet benchmark, default) or 4096 (original)
    protocol: str | None = None  # table1 | benchmark; default from the architecture
    ignore_label: int | None = None  # default: `classes` (CamVid's void label 11 comes right after the classes)

    def replace(self, **changes) -> "Options":
        return dataclasses.replace(self, **changes)


def validate(opts: Options) -> None:
    """Architecture-independent checks; raises OptionsError with a one-line reason."""
    if not isinstance(opts.classes, int) or opts.classes < 2:
        raise OptionsError(f"--classes must be an integer >= 2, got {opts.classes!r}")
    for name in ("height", "width"):
        value = getattr(opts, name)
        if not isinstance(value, int) or value < 16:
            raise OptionsError(f"--{name} must be an integer >= 16, got {value!r}")
    if opts.batch is not None and (not isinstance(opts.batch, int) or opts.batch < 1):
        raise OptionsError(f"--batch must be an integer >= 1, got {opts.batch!r}")
    if opts.split not in SPLITS:
        raise OptionsError(f"--split must be one of {', '.join(SPLITS)}, got {opts.split!r}")
    if opts.data not in DATA_MODES:
        raise OptionsError(f"--data must be one of {', '.join(DATA_MODES)}, got {opts.data!r}")
    if opts.biases is not None and opts.biases not in BIASES:
        raise OptionsError(f"--biases must be one of {', '.join(BIASES)}, got {opts.biases!r}")
    if opts.protocol is not None and opts.protocol not in PROTOCOLS:
        raise OptionsError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {opts.protocol!r}")
    if opts.fc_dim is not None and opts.fc_dim not in FC_DIMS:
        raise OptionsError(f"--fc-dim must be 1024 or 4096, got {opts.fc_dim!r}")
    if opts.ignore_label is not None and opts.ignore_label < opts.classes:
        raise OptionsError(f"--ignore-label {opts.ignore_label} is a class index (classes 0..{opts.classes - 1})")
    if opts.mc_dropout and not opts.dropout:
        raise OptionsError("--mc-dropout samples the dropout layers: it needs --dropout")
    if opts.mc_dropout and opts.split == "train":
        raise OptionsError("--mc-dropout is for test and deploy nets (training always samples)")
    if opts.seed < 0:
        raise OptionsError(f"--seed must be >= 0, got {opts.seed}")
    weights = opts.class_weights
    if weights is not None and weights not in NAMED_WEIGHTS:
        check_weights_file(Path(weights), opts.classes)
    if weights in CLASS_WEIGHTS_FILES and opts.classes != CAMVID_CLASSES:
        raise OptionsError(
            f"--class-weights {weights} holds CamVid's {CAMVID_CLASSES} classes, but --classes is {opts.classes} "
            "(use none or a K x K .binaryproto file)"
        )


def check_weights_file(path: Path, classes: int) -> None:
    """A user's InfogainLoss matrix must be a readable BlobProto with classes x classes entries."""
    from caffe.proto import caffe_pb2  # local: keeps `import prototxt.options` cheap

    if not path.is_file():
        raise OptionsError(f"--class-weights {path}: no such file (or use published, recomputed or none)")
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError; any failure means "not a BlobProto"
        raise OptionsError(f"--class-weights {path}: not a Caffe BlobProto ({exc})") from None
    if len(blob.data) != classes * classes:
        raise OptionsError(
            f"--class-weights {path}: holds {len(blob.data)} values, an InfogainLoss matrix for "
            f"{classes} classes needs {classes * classes}"
        )


def weights_source(opts: Options) -> str | None:
    """The InfogainLoss `source` for the resolved `class_weights`, or None for the unweighted loss."""
    if opts.class_weights in (None, "none"):
        return None
    return CLASS_WEIGHTS_FILES.get(opts.class_weights, opts.class_weights)


def default_source(split: str, height: int, width: int) -> str:
    """The LMDB folder `tools.camvid_to_lmdb` writes by default: the test net reads the validation split
    (the paper selects its model on CamVid val, §3.3; the test split is scored by tools.evaluate)."""
    lmdb_split = "train" if split == "train" else "val"
    return f"data/lmdb/camvid-{lmdb_split}-{height}x{width}"
