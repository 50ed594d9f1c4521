"""The models the demo offers: finished run folders (inference.caffemodel + net/deploy.prototxt) found under the
search folders, and the run or weights the user names, each checked before it is offered."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from segnet_bvlc.core.errors import SegnetError
from segnet_bvlc.nets.load import load_net_param

SEARCH = ("runs", "results")
PRUNE = {"lmdb", "snapshots", "predictions", ".writing", "__pycache__", ".git", "node_modules"}


class ModelError(SegnetError):
    """A model the demo cannot offer; the message names the folder or file and the reason."""


@dataclass
class Model:
    id: str  # what the page sends back: the run folder relative to the working directory, or "weights:<file>"
    label: str
    deploy: Path
    weights: Path
    kind: str  # "run" or "weights"
    dropout: bool  # the deploy net has Dropout layers: Monte Carlo samples are possible
    height: int
    width: int
    arch: str | None = None

    def public(self) -> dict:
        return {"id": self.id, "label": self.label, "kind": self.kind, "dropout": self.dropout,
                "height": self.height, "width": self.width, "arch": self.arch, "deploy": str(self.deploy),
                "weights": str(self.weights)}


def relative_name(path: Path) -> str:
    """The path relative to the working directory where it lies under it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def deploy_info(deploy: Path) -> tuple[int, int, bool]:
    """(H, W, has Dropout layers) of a deploy prototxt; ValueError with a one-line reason."""
    param = load_net_param(deploy)
    dims = None
    for layer in param.layer:
        if layer.type == "Input" and layer.input_param.shape:
            dims = list(layer.input_param.shape[0].dim)
            break
    if dims is None and param.input_shape:
        dims = list(param.input_shape[0].dim)
    if dims is None and len(param.input_dim) >= 4:
        dims = list(param.input_dim[:4])
    if dims is None or len(dims) != 4 or dims[1] != 3:
        raise ModelError(f"{deploy}: not a deploy net (no N x 3 x H x W Input)")
    dropout = any(layer.type == "Dropout" for layer in param.layer)
    return int(dims[2]), int(dims[3]), dropout


def is_finished_run(folder: Path) -> bool:
    return (folder / "inference.caffemodel").is_file() and (folder / "net" / "deploy.prototxt").is_file()


def run_model(folder: Path) -> Model:
    deploy = folder / "net" / "deploy.prototxt"
    h, w, dropout = deploy_info(deploy)
    arch = None
    config = folder / "config.json"
    if config.is_file():
        try:
            arch = json.loads(config.read_text()).get("arch")
        except (OSError, ValueError):
            pass
    rel = relative_name(folder)
    label = f"{rel} ({', '.join(x for x in (arch, f'{h}x{w}', 'dropout' if dropout else None) if x)})"
    return Model(rel, label, deploy.resolve(), (folder / "inference.caffemodel").resolve(), "run", dropout, h, w,
                 arch)


def weights_model(weights: Path, deploy: Path) -> Model:
    h, w, dropout = deploy_info(deploy)
    rel = relative_name(weights)
    label = f"{rel} ({deploy.name}, {h}x{w}{', dropout' if dropout else ''})"
    return Model(f"weights:{rel}", label, deploy.resolve(), weights.resolve(), "weights", dropout, h, w)


def find_runs(roots, warn=lambda m: None) -> list[Model]:
    """Every finished run folder under `roots`, recursively (in sorted order), as Models; folders whose deploy
    net cannot be read are skipped with a warning."""
    found = []
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root):
            folder = Path(dirpath)
            if is_finished_run(folder):
                dirnames[:] = []  # a run's own folders hold no other run
                try:
                    found.append(run_model(folder))
                except ValueError as e:
                    warn(f"skipping {folder}: {e}")
                continue
            dirnames[:] = sorted(d for d in dirnames if d not in PRUNE)
    return found


def resolve_deploy(weights: Path, deploy: Path | None) -> Path:
    """The deploy prototxt for --weights: --deploy, else the run folder the weights sit in, else the prototxt
    `python -m tools.convert_weights` writes beside its output (same name, .prototxt)."""
    if deploy is not None:
        if not deploy.is_file():
            raise ModelError(f"{deploy}: deploy prototxt not found (DEPLOY=)")
        return deploy
    if (weights.parent / "net" / "deploy.prototxt").is_file():
        return weights.parent / "net" / "deploy.prototxt"
    if weights.with_suffix(".prototxt").is_file():
        return weights.with_suffix(".prototxt")
    raise ModelError(f"{weights}: cannot tell which deploy net these weights belong to (not in a run folder, no "
                     f"{weights.with_suffix('.prototxt').name} beside them): pass DEPLOY=FILE (--deploy)")


def named_models(run: Path | None, weights: Path | None, deploy: Path | None) -> list[Model]:
    """The models the user names (--run, --weights/--deploy), in that order; ModelError with the reason."""
    named: list[Model] = []
    if run is not None:
        if not run.is_dir():
            raise ModelError(f"{run}: run folder not found (RUN=)")
        if not is_finished_run(run):
            raise ModelError(f"{run}: not a finished run folder (it needs inference.caffemodel and "
                             "net/deploy.prototxt; `make camvid-train` finishes it)")
        named.append(run_model(run))
    if weights is not None:
        if not weights.is_file():
            raise ModelError(f"{weights}: weights not found (WEIGHTS=)")
        named.append(weights_model(weights, resolve_deploy(weights, deploy)))
    return named


def offered_models(named: list[Model], search: Iterable[Path], warn: Callable[[str], None]) -> list[Model]:
    """The named models first, then every other finished run under `search`; ModelError when there is none."""
    models = list(named)
    seen = {m.id for m in models} | {relative_name(m.weights.parent) for m in named if m.kind == "run"}
    for m in find_runs(search, warn):
        if m.id not in seen:
            models.append(m)
            seen.add(m.id)
    if not models:
        raise ModelError(f"no model: no finished run folder under {', '.join(map(str, search))} "
                         "(inference.caffemodel + net/deploy.prototxt); pass RUN=DIR or WEIGHTS=FILE DEPLOY=FILE")
    return models
