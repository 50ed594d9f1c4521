"""Train a generated network with Caffe's SGD solver, driven from Python, into a self-contained run folder.

The run folder is its own contract. config.json holds every setting that defines the run, written once when the
run starts; provenance.json (git commit, Caffe build, package versions, machine), net/ (the train and deploy
prototxts and the solver exactly as used), snapshots/ (caffemodel + solverstate + state every --snapshot-every
iterations and at every validation), best.caffemodel (the iteration with the best validation global accuracy:
the paper's model selection, §3.3), last.caffemodel/.solverstate, scalars.jsonl (one JSON record per logged
iteration and per validation), train.log and curve.png.

Running the same command again on a run folder resumes it from its newest intact snapshot and finishes it, on the
same batch sequence (the data layer is a pure function of seed and iteration), so an interrupted run (Ctrl-C,
SIGTERM, a kill, a power cut) ends with the same weights as an uninterrupted one. A command with other settings
is refused with the difference; --restart starts the run over. Snapshots are written by Caffe into
snapshots/.writing/ and moved into place only when whole, so a kill never leaves a torn snapshot; a snapshot that
does not read back is skipped (and named) on resume.

Each validation first computes BatchNorm statistics from a full pass over the training set with the current
weights (tools.bn_stats), as the paper does before every evaluation; best.caffemodel holds those statistics. The
pass runs through the training net itself (same batch, so the same statistics as a separate pass net, without a
second copy of the training activations), and the scoring net is a deploy net at batch 1, built for the
validation and released after it.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prototxt.protocol import PROTOCOLS
from prototxt.registry import ARCHS
from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.device import gpu_device, set_caffe_mode
from segnet_bvlc.core.errors import fail, fail_diverged
from segnet_bvlc.core.faults import fault_point
from segnet_bvlc.core.files import append_jsonl, atomic_path, read_jsonl, write_text_atomic
from segnet_bvlc.core.log import close_run_log, console_logging, logger, open_run_log
from segnet_bvlc.core.paths import ROOT
from segnet_bvlc.core.provenance import provenance
from segnet_bvlc.training.curve import plot_curve
from segnet_bvlc.training.snapshots import (
    SnapshotError,
    check_snapshot,
    commit_snapshot,
    snapshot_candidates,
    snapshot_stem,
)
from segnet_bvlc.training.validation import Validator

TOOL = "train"
log = logger(TOOL).info
CLASS_WEIGHTS = ("published", "recomputed", "none")


class RunError(ValueError):
    """A run folder or setting that cannot be used; the message says why and what to do."""


_TABLE1 = PROTOCOLS["table1"]


@dataclass
class TrainConfig:
    arch: str = "segnet-basic"
    train_source: str = ""        # LMDB pair of the training split (tools.camvid_to_lmdb)
    val_source: str = ""          # LMDB pair of the validation split; "" = no validation
    # Defaults: the Table 1 protocol (prototxt/protocol.py); tools.train's command line and the pipeline fill
    # them from the architecture's protocol and preset instead.
    height: int = _TABLE1["height"]
    width: int = _TABLE1["width"]
    classes: int = 11
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
    init_weights: str = ""        # VGG16 caffemodel for the encoder (tools.init_weights)
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

    def resolved(self) -> "TrainConfig":
        """The same settings with absolute paths, as stored in config.json."""
        return dataclasses.replace(self, train_source=_abs(self.train_source), val_source=_abs(self.val_source),
                                   init_weights=_abs(self.init_weights))

    def check(self, sources: bool = True) -> None:
        """RunError naming the first setting that cannot work; nothing is written before this passes.
        `sources=False` skips the LMDB checks (the pipeline makes them after checking the rest)."""
        from prototxt import ARCHS

        if self.arch not in ARCHS:
            raise RunError(f"unknown --arch '{self.arch}' (choose from {', '.join(ARCHS)})")
        for name in ("height", "width", "classes", "batch", "iter_size", "max_iter", "log_every",
                     "snapshot_every", "val_every"):
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
        if self.class_weights not in CLASS_WEIGHTS and not Path(self.class_weights).is_file():
            raise RunError(f"--class-weights '{self.class_weights}': not one of {', '.join(CLASS_WEIGHTS)} "
                           "nor an existing file")
        if self.init_weights and not Path(self.init_weights).is_file():
            raise RunError(f"{self.init_weights}: --init-weights file not found")
        if not sources:
            return
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


def _abs(path: str) -> str:
    return str(Path(path).resolve()) if path else ""


def _set_data_param(net_param, **updates) -> None:
    """Update the JSON param_str of the CamVidData layer (start_iter on resume, RAM cache)."""
    for layer in net_param.layer:
        if layer.type == "Python" and layer.python_param.module == "layers.camvid_data":
            params = json.loads(layer.python_param.param_str or "{}")
            params.update(updates)
            layer.python_param.param_str = json.dumps(params, sort_keys=True)


def write_nets(cfg: TrainConfig, run: Path, start_iter: int = 0) -> dict[str, Path]:
    """Generate train/deploy prototxts and the solver for this run (absolute paths, so the folder stands alone).

    Caffe writes snapshots under snapshots/.writing/; `tools.snapshots.commit_snapshot` moves them into place when
    whole."""
    from prototxt import Options, build_net, build_solver

    net_dir = run / "net"
    common = dict(classes=cfg.classes, height=cfg.height, width=cfg.width, batchnorm=cfg.batchnorm,
                  dropout=cfg.dropout)
    train_opts = Options(split="train", batch=cfg.batch, source=_abs(cfg.train_source), seed=cfg.seed,
                         mirror=cfg.mirror, class_weights=cfg.class_weights, **common)
    train = build_net(cfg.arch, train_opts)
    for layer in train.layer:  # class-weight files are repo-relative in the committed prototxts
        if layer.type == "InfogainLoss" and layer.infogain_loss_param.source:
            src = Path(layer.infogain_loss_param.source)
            if not src.is_absolute():
                layer.infogain_loss_param.source = str((ROOT / src).resolve())
    # The data layer counts forward passes: iter_size of them per solver iteration.
    _set_data_param(train, start_iter=start_iter * cfg.iter_size, cache=True)
    deploy = build_net(cfg.arch, Options(split="deploy", batch=1, **common))
    paths = {"train": net_dir / "train.prototxt", "deploy": net_dir / "deploy.prototxt",
             "solver": net_dir / "solver.prototxt"}
    write_text_atomic(paths["train"], str(train))
    write_text_atomic(paths["deploy"], str(deploy))
    solver = build_solver(cfg.arch, train_opts, train_net=str(paths["train"].resolve()),
                          snapshot_prefix=str((run / "snapshots" / ".writing" / "iter").resolve()),
                          max_iter=cfg.max_iter)
    solver.base_lr = cfg.base_lr
    solver.momentum = cfg.momentum
    solver.weight_decay = cfg.weight_decay
    solver.lr_policy = "fixed"
    solver.random_seed = cfg.seed
    solver.iter_size = cfg.iter_size
    solver.snapshot = 0  # snapshots are taken by this tool (it also keeps best/last)
    solver.display = 0
    solver.ClearField("test_net")
    solver.ClearField("test_iter")
    solver.ClearField("test_interval")
    solver.solver_mode = solver.GPU if gpu_device() else solver.CPU
    write_text_atomic(paths["solver"], str(solver))
    return paths


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB), as the kernel counts it (tools.memory.peak_rss)."""
    from segnet_bvlc.training.memory import peak_rss

    return peak_rss() / 2 ** 20


RUN_OUTPUTS = ("config.json", "provenance.json", "state.json", "scalars.jsonl", "train.log", "curve.png",
               "best.caffemodel", "last.caffemodel", "last.solverstate", "snapshots", "net", "inference.caffemodel",
               "deploy_folded.caffemodel", "deploy_folded.prototxt", "eval", "timings.json", "stages.jsonl")


def clear_run(run: Path) -> None:
    """Remove what a run wrote into `run` (for --restart); other files (the pipeline's lmdb/) stay."""
    for name in RUN_OUTPUTS:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def prepare_run(cfg: TrainConfig, run: Path, resume: bool = False, restart: bool = False, sources: bool = True
                ) -> tuple[TrainConfig, bool]:
    """The run folder's contract: (settings to use, whether the folder continues an earlier start).

    A folder with config.json continues when the settings agree, is refused with the difference when they do not
    (restart=True starts it over), and `resume` takes the stored settings as they are. Invalid settings and
    `resume` on a folder that is no run are refused before anything is written."""
    config_path = run / "config.json"
    if resume:
        if not config_path.is_file():
            raise RunError(f"{run}: no config.json, not a run folder to resume (run without --resume to start it)")
        stored = TrainConfig.load(config_path)
        stored.check()
        return stored, True
    cfg = cfg.resolved()
    cfg.check(sources=sources)
    if config_path.is_file() and not restart:
        stored = TrainConfig.load(config_path)
        diff = config_diff(stored, cfg)
        if diff:
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise RunError(f"{run}: already a run with other settings ({shown}); run the same command to resume "
                           "it, add --restart to start it over, or choose another run folder")
        return stored, True
    if restart:
        clear_run(run)
    return cfg, False


def train(cfg: TrainConfig, run: Path, resume: bool = False, max_iter: int | None = None,
          restart: bool = False, memory_check: bool = True) -> dict:
    """Train into `run` until cfg.max_iter and return the final state (iterations, best validation accuracy and
    its iteration; `stopped_by` when a signal stopped this invocation). Started again with the same settings, it
    continues from the newest intact snapshot. `resume` takes the run folder's stored settings; `max_iter` may
    then extend (or shorten) the run."""
    import caffe

    run = run.resolve()
    cfg, continuing = prepare_run(cfg, run, resume=resume, restart=restart)
    if resume and max_iter is not None and max_iter != cfg.max_iter:
        if max_iter < 1:
            raise RunError(f"--max-iter must be >= 1, got {max_iter}")
        cfg.max_iter = max_iter
        write_text_atomic(run / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
    state_path = run / "state.json"
    if continuing and state_path.is_file():
        finished = json.loads(state_path.read_text())
        if finished.get("complete") and finished.get("iteration") == cfg.max_iter and (run / "best.caffemodel").is_file():
            finished.pop("stopped_by", None)
            return finished
    if memory_check and not continuing:
        from segnet_bvlc.training.memory import preflight

        preflight(cfg)
    shutil.rmtree(run / "snapshots" / ".writing", ignore_errors=True)
    (run / "snapshots" / ".writing").mkdir(parents=True, exist_ok=True)

    state = {"iteration": 0, "best_val_global_accuracy": None, "best_iteration": None, "validated": 0}
    from segnet_bvlc.training.memory import current_rss

    rss_base_mb = current_rss() / 1024 ** 2  # before any net: what the peaks below add to
    set_caffe_mode()
    np.random.seed(cfg.seed)

    def open_solver(start_iter: int):
        # The solver's random_seed reseeds Caffe at every construction: a fresh start after skipped snapshots
        # draws the same fillers as the first start did.
        paths = write_nets(cfg, run, start_iter=start_iter)
        return caffe.SGDSolver(str(paths["solver"])), paths

    solver, messages = None, []
    for iteration, candidate in (snapshot_candidates(run) if continuing else []):
        solver, paths = open_solver(iteration)
        try:
            it, snap_state = check_snapshot(candidate, solver.net)
        except SnapshotError as e:
            messages.append(f"[train] skipped snapshot {e}")
            solver = None
            continue
        solver.restore(str(candidate))
        state.update(snap_state)
        messages.append(f"[train] resumed {run.name} at iteration {it} from {candidate.name}")
        break
    if solver is None:  # a new run, or no snapshot read back: start from the seeded fillers
        solver, paths = open_solver(0)
        from prototxt import bilinear_surgery

        # Learnt bilinear deconvolutions start as channel-wise interpolation (fcn's surgery.interp).
        changed = bilinear_surgery(solver.net, paths["train"])
        if changed:
            messages.append(f"[train] bilinear initialisation of {', '.join(changed)}")
        if cfg.init_weights:
            from segnet_bvlc.training.init_weights import init_from_vgg16

            report = init_from_vgg16(solver.net, Path(cfg.init_weights), cfg.arch, force=cfg.init_force)
            messages.append(f"[train] encoder initialised from {cfg.init_weights}: {report}")
        # The run exists from here on: everything that could refuse the settings has run.
        write_text_atomic(run / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
        write_text_atomic(run / "provenance.json", json.dumps(provenance(), indent=2))
        (run / "scalars.jsonl").unlink(missing_ok=True)
    else:  # forget what was logged after the snapshot: it is recomputed, identically
        kept = [r for r in read_jsonl(run / "scalars.jsonl")
                if r["iteration"] < solver.iter or ("loss" in r and r["iteration"] == solver.iter)]
        write_text_atomic(run / "scalars.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    validator = (Validator(paths["deploy"], cfg.train_source, cfg.val_source, cfg.classes, cfg.batch)
                 if cfg.val_source else None)
    run_log = open_run_log(run / "train.log")  # closed in the finally below
    for message in messages:
        log(message)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    def due(it: int, every: int) -> bool:
        return it % every == 0 or it == cfg.max_iter

    def validate(it: int) -> None:
        """Validate the snapshot of iteration `it` with the solver released, then restore the solver from it."""
        nonlocal solver

        def save_if_better(v):
            best = state["best_val_global_accuracy"]
            if best is None or v["val_global_accuracy"] > best:
                state.update(best_val_global_accuracy=v["val_global_accuracy"], best_iteration=it)
                return run / "best.caffemodel"
            return None

        before, started = peak_rss_mb(), time.perf_counter()
        stem = snapshot_stem(run, it)
        solver = None
        gc.collect()
        v = validator(stem.with_suffix(".caffemodel"), it, save_if_better)
        solver, _ = open_solver(it)
        solver.restore(str(stem.with_suffix(".solverstate")))
        v.update(iteration=it, rss_base_mb=rss_base_mb, peak_rss_before_mb=before, peak_rss_after_mb=peak_rss_mb(),
                 seconds=time.perf_counter() - started, load=os.getloadavg()[0])
        state["validated"] = it
        append_jsonl(run / "scalars.jsonl", v)
        log(f"[train] validation at {it}: G {100 * v['val_global_accuracy']:.1f}  "
            f"C {100 * v['val_class_average_accuracy']:.1f}  mIoU {100 * v['val_mean_iou']:.1f}  "
            f"(best G at {state['best_iteration']}; {v['seconds']:.0f} s, peak {v['peak_rss_after_mb']:.0f} MB)")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    losses: list[float] = []
    t_last = time.perf_counter()
    t_start = t_last
    it_start = solver.iter
    snapped = solver.iter if continuing and solver.iter else -1
    try:
        # A snapshot taken just before a validation that never finished: validate now.
        if validator is not None and solver.iter and due(solver.iter, cfg.val_every) \
                and state.get("validated", 0) < solver.iter:
            validate(solver.iter)
        while solver.iter < cfg.max_iter and not stop["signal"]:
            solver.step(1)
            it = solver.iter
            fault_point("step", it)
            loss = float(solver.net.blobs["loss"].data)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at iteration {it}; lower --lr")
            losses.append(loss)
            state["iteration"] = it
            if due(it, cfg.log_every):
                now = time.perf_counter()
                per_iter = (now - t_last) / len(losses)
                eta = (cfg.max_iter - it) * (now - t_start) / max(it - it_start, 1)
                record = {"iteration": it, "loss": float(np.mean(losses)), "lr": cfg.base_lr,
                          "time_per_iter_s": per_iter, "eta_s": eta, "max_rss_mb": peak_rss_mb(),
                          "epoch": it * cfg.batch * cfg.iter_size / _dataset_size(cfg.train_source)}
                append_jsonl(run / "scalars.jsonl", record)
                log(f"[train] iter {it:>6}/{cfg.max_iter}  loss {record['loss']:.4f}  lr {cfg.base_lr:g}  "
                    f"{per_iter:.2f} s/iter  ETA {_hms(eta)}  epoch {record['epoch']:.1f}  "
                    f"mem {record['max_rss_mb']:.0f} MB")
                losses, t_last = [], now
            val_due = validator is not None and due(it, cfg.val_every)
            if due(it, cfg.snapshot_every) or val_due or stop["signal"]:
                commit_snapshot(solver, run, state)
                snapped = it
            if val_due:
                validate(it)
            write_text_atomic(state_path, json.dumps(state, indent=2))
        if stop["signal"] and snapped != solver.iter:
            commit_snapshot(solver, run, state)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        close_run_log(run_log)
    if stop["signal"] and solver.iter < cfg.max_iter:
        log(f"[train] {stop['signal']}: snapshot at iteration {solver.iter} written; run the same command "
                "again to continue")
        state["stopped_by"] = stop["signal"]
        write_text_atomic(state_path, json.dumps(state, indent=2))
        return state
    if validator is None:
        with atomic_path(run / "best.caffemodel") as tmp:  # no validation: the last iteration is the model
            solver.net.save(str(tmp))
        state["best_iteration"] = solver.iter
    state["complete"] = True
    write_text_atomic(state_path, json.dumps(state, indent=2))
    plot_curve(run)
    solver = validator = None
    gc.collect()
    return state


_SIZES: dict[str, int] = {}


def _dataset_size(source: str) -> int:
    if source not in _SIZES:
        meta = Path(source) / "meta.json"
        _SIZES[source] = int(json.loads(meta.read_text()).get("count", 0)) if meta.is_file() else 0
        _SIZES[source] = _SIZES[source] or 1
    return _SIZES[source]


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = command_parser(TOOL, __doc__)
    p.add_argument("--run", required=True, type=Path,
                   help="run folder: created, or continued when it holds a run with the same settings")
    p.add_argument("--resume", action="store_true", help="continue --run with its stored settings (no other "
                   "option needed; --max-iter may extend it)")
    p.add_argument("--restart", action="store_true", help="start --run over when it holds a run with other "
                   "settings (deletes that run's snapshots, weights and logs)")
    p.add_argument("--arch", default=d.arch, help=f"architecture (default {d.arch}; see python -m prototxt --help)")
    p.add_argument("--train-source", default="", help="training LMDB pair (tools.camvid_to_lmdb --split train)")
    p.add_argument("--val-source", default="", help="validation LMDB pair; omit to skip validation")
    for name in ("classes", "iter_size", "seed"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    protocol = "(default: the architecture's protocol, prototxt/protocol.py: `python -m prototxt --protocols`)"
    for name in ("height", "width", "batch", "max_iter", "log_every", "snapshot_every", "val_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=protocol)
    p.add_argument("--lr", dest="base_lr", type=float, help="fixed learning rate " + protocol)
    p.add_argument("--momentum", type=float, help=protocol)
    p.add_argument("--weight-decay", type=float, help=protocol)
    p.add_argument("--class-weights", help="published | recomputed | none | FILE.binaryproto " + protocol)
    p.add_argument("--mirror", action="store_true", help="random left-right flips of image and label together")
    p.add_argument("--init-weights", default="", help="VGG_ILSVRC_16_layers.caffemodel for the encoder")
    p.add_argument("--init-force", action="store_true", help="accept an --init-weights file that is not the "
                   "released VGG16 (its size and sha256 are checked otherwise)")
    p.add_argument("--dropout", action="store_true", help="dropout 0.5 where Bayesian SegNet puts it")
    p.add_argument("--no-batchnorm", dest="batchnorm", action="store_false")
    p.add_argument("--no-memory-check", dest="memory_check", action="store_false",
                   help="start even when the estimated memory exceeds what the machine has free")
    p.add_argument("--json", action="store_true", help="print the final state as JSON on stdout")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The command line's settings; what it leaves out comes from the architecture's protocol (paper preset)."""
    from prototxt.protocol import settings as protocol_settings

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = protocol_settings(args.arch) if args.arch in ARCHS else {}  # an unknown arch: check() says so
    settings.update({k: v for k, v in vars(args).items() if k in fields and v is not None})
    return TrainConfig(**{k: v for k, v in settings.items() if k in fields})


def main(argv: list[str] | None = None) -> int:
    from segnet_bvlc.nets.load import WeightsError

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    extend = args.max_iter if args.resume else None
    try:
        console_logging()
        state = train(cfg, args.run, resume=args.resume, max_iter=extend, restart=args.restart, memory_check=args.memory_check)
    except FloatingPointError as e:
        fail_diverged(TOOL, e)
    except (FileNotFoundError, ValueError, WeightsError, MemoryError) as e:
        fail(TOOL, str(e))
    except OSError as e:
        fail(TOOL, f"{e.filename or args.run}: {e.strerror}")
    if args.json:
        print(json.dumps(state, indent=2))
    return 130 if state.get("stopped_by") else 0


if __name__ == "__main__":
    sys.exit(main())
