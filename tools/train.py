"""Train a generated network with Caffe's SGD solver, driven from Python, into a self-contained run folder.

The run folder holds everything needed to reproduce the run: config.json (every setting), provenance.json (git
commit, Caffe build, package versions, machine), net/ (the train and deploy prototxts and the solver exactly as
used), snapshots/ (caffemodel + solverstate every --snapshot-every iterations), best.caffemodel (the iteration with
the best validation global accuracy: the paper's model selection, §3.3), last.caffemodel/.solverstate,
scalars.jsonl (one JSON record per logged iteration and per validation), train.log and curve.png.

Each validation first computes BatchNorm statistics from a full pass over the training set with the current
weights (tools.bn_stats), as the paper does before every evaluation; best.caffemodel holds those statistics.
SIGINT/SIGTERM write a snapshot and exit cleanly; `--resume` continues a run folder from its last snapshot on the
same batch sequence (the data layer is a pure function of seed and iteration).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.runio import append_jsonl, atomic_path, fail, gpu_device, provenance, set_caffe_mode, write_text_atomic

TOOL = "train"


@dataclass
class TrainConfig:
    arch: str = "segnet-basic"
    train_source: str = ""        # LMDB pair of the training split (tools.camvid_to_lmdb)
    val_source: str = ""          # LMDB pair of the validation split; "" = no validation
    height: int = 360
    width: int = 480
    classes: int = 11
    batch: int = 12
    max_iter: int = 10000
    base_lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    class_weights: str = "published"
    seed: int = 1
    mirror: bool = False
    log_every: int = 20
    snapshot_every: int = 1000
    val_every: int = 1000
    init_weights: str = ""        # VGG16 caffemodel for the encoder (tools.init_weights)
    init_force: bool = False      # accept an init file that is not the released VGG16 (size/sha256)
    batchnorm: bool = True
    dropout: bool = False

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class StopRequested(Exception):
    pass


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
    """Generate train/deploy prototxts and the solver for this run (absolute paths, so the folder stands alone)."""
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
                layer.infogain_loss_param.source = str((Path(__file__).resolve().parent.parent / src).resolve())
    _set_data_param(train, start_iter=start_iter, cache=True)
    deploy = build_net(cfg.arch, Options(split="deploy", batch=1, **common))
    paths = {"train": net_dir / "train.prototxt", "deploy": net_dir / "deploy.prototxt",
             "solver": net_dir / "solver.prototxt"}
    write_text_atomic(paths["train"], str(train))
    write_text_atomic(paths["deploy"], str(deploy))
    solver = build_solver(cfg.arch, train_opts, train_net=str(paths["train"].resolve()),
                          snapshot_prefix=str((run / "snapshots" / "iter").resolve()), max_iter=cfg.max_iter)
    solver.base_lr = cfg.base_lr
    solver.momentum = cfg.momentum
    solver.weight_decay = cfg.weight_decay
    solver.lr_policy = "fixed"
    solver.random_seed = cfg.seed
    solver.snapshot = 0  # snapshots are taken by this tool (it also keeps best/last)
    solver.display = 0
    solver.ClearField("test_net")
    solver.ClearField("test_iter")
    solver.ClearField("test_interval")
    solver.solver_mode = solver.GPU if gpu_device() else solver.CPU
    write_text_atomic(paths["solver"], str(solver))
    return paths


class Validator:
    """Validation as the paper does it (§3.3, §4): BatchNorm statistics from a full pass over the training set
    with the current weights, then G, C and mIoU on the validation split.

    BVLC's moving averages (moving_average_fraction 0.999) are no substitute early in training: after a few
    hundred iterations they are close to a uniform average over every past iteration's weights, and scored the
    validation split far below the full-pass statistics in a quick-preset run (15 % against 51 % global accuracy at
    iteration 400). The validation nets hold copies of the weights, so the training net is never touched.
    """

    def __init__(self, deploy: Path, train_source: str, val_source: str, classes: int, batch: int):
        import caffe

        from tools.bn_stats import in_batch_mode
        from tools.lmdb_io import PairReader
        from tools.runio import load_net_param

        self.net = caffe.Net(str(deploy), caffe.TEST)
        pass_param = deploy.with_name("bn_pass.prototxt")
        write_text_atomic(pass_param, str(in_batch_mode(load_net_param(deploy))))
        self.pass_net = caffe.Net(str(pass_param), caffe.TEST)
        self.train_source, self.batch = train_source, batch
        self.reader = PairReader(val_source, cache=True)
        self.classes = classes

    @staticmethod
    def _copy_weights(source, target) -> None:
        for name, blobs in target.params.items():
            for dst, src in zip(blobs, source.params[name]):
                dst.data[...] = src.data

    def __call__(self, train_net) -> dict:
        from tools import bn_stats, metrics

        for net in (self.pass_net, self.net):
            self._copy_weights(train_net, net)
        batches, _ = bn_stats.lmdb_batches(Path(self.train_source), self.batch)
        moments = bn_stats.accumulate(self.pass_net, batches)
        bn_stats.write_statistics(self.net, moments)
        acc = metrics.MetricAccumulator(num_classes=self.classes, boundary=False)
        for i in range(len(self.reader)):
            image, label = self.reader[i]
            self.net.blobs["data"].data[0] = image
            prob = self.net.forward()["prob"][0]
            acc.update(label[0], prob.argmax(axis=0))
        cm = acc.cm
        return {"val_global_accuracy": metrics.global_accuracy(cm),
                "val_class_average_accuracy": metrics.class_average_accuracy(cm),
                "val_mean_iou": metrics.mean_iou(cm)}


def _memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _snapshot(solver, run: Path) -> Path:
    """Snapshot through Caffe (caffemodel + solverstate) and point last.* at it."""
    solver.snapshot()
    stem = run / "snapshots" / f"iter_iter_{solver.iter}"
    for suffix in (".caffemodel", ".solverstate"):
        with atomic_path(run / f"last{suffix}") as tmp:
            shutil.copyfile(stem.with_suffix(suffix), tmp)
    return stem


def _latest_snapshot(run: Path) -> Path | None:
    states = sorted((run / "snapshots").glob("iter_iter_*.solverstate"),
                    key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return states[-1] if states else None


def train(cfg: TrainConfig, run: Path, resume: bool = False, log=print, max_iter: int | None = None) -> dict:
    """Train into `run`; returns the final state (iterations, best validation accuracy and its iteration).

    With `resume`, the run folder's config.json wins over `cfg`; `max_iter` may extend (or shorten) it.
    """
    import caffe

    run = run.resolve()
    (run / "snapshots").mkdir(parents=True, exist_ok=True)
    state_path = run / "state.json"
    state = {"iteration": 0, "best_val_global_accuracy": None, "best_iteration": None}
    snapshot = None
    if resume:
        if not (run / "config.json").is_file():
            raise FileNotFoundError(f"{run}: no config.json, not a run folder to resume")
        cfg = TrainConfig.load(run / "config.json")
        if max_iter is not None and max_iter != cfg.max_iter:
            cfg.max_iter = max_iter
            write_text_atomic(run / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
        snapshot = _latest_snapshot(run)
        if state_path.is_file():
            state.update(json.loads(state_path.read_text()))
        if snapshot is not None:
            state["iteration"] = int(snapshot.stem.rsplit("_", 1)[1])
    else:
        write_text_atomic(run / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
        write_text_atomic(run / "provenance.json", json.dumps(provenance(), indent=2))
        (run / "scalars.jsonl").unlink(missing_ok=True)

    console = log
    log_file = open(run / "train.log", "a")

    def log(message: str) -> None:  # the console and train.log
        console(message)
        log_file.write(message + "\n")
        log_file.flush()

    start_iter = state["iteration"]
    paths = write_nets(cfg, run, start_iter=start_iter)
    set_caffe_mode()
    caffe.set_random_seed(cfg.seed)
    np.random.seed(cfg.seed)
    solver = caffe.SGDSolver(str(paths["solver"]))
    if snapshot is not None:
        solver.restore(str(snapshot))
        log(f"[train] resumed {run.name} at iteration {solver.iter} from {snapshot.name}")
    else:
        from prototxt import bilinear_surgery

        # Learnt bilinear deconvolutions start as channel-wise interpolation (fcn's surgery.interp).
        changed = bilinear_surgery(solver.net, paths["train"])
        if changed:
            log(f"[train] bilinear initialisation of {', '.join(changed)}")
        if cfg.init_weights:
            from tools.init_weights import init_from_vgg16

            report = init_from_vgg16(solver.net, Path(cfg.init_weights), cfg.arch, force=cfg.init_force)
            log(f"[train] encoder initialised from {cfg.init_weights}: {report}")
    validator = (Validator(paths["deploy"], cfg.train_source, cfg.val_source, cfg.classes, cfg.batch)
                 if cfg.val_source else None)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    losses: list[float] = []
    t_last = time.perf_counter()
    t_start = t_last
    it_start = solver.iter
    try:
        while solver.iter < cfg.max_iter:
            solver.step(1)
            loss = float(solver.net.blobs["loss"].data)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at iteration {solver.iter}; lower --lr")
            losses.append(loss)
            it = solver.iter
            if it % cfg.log_every == 0 or it == cfg.max_iter:
                now = time.perf_counter()
                per_iter = (now - t_last) / len(losses)
                eta = (cfg.max_iter - it) * (now - t_start) / max(it - it_start, 1)
                record = {"iteration": it, "loss": float(np.mean(losses)), "lr": cfg.base_lr,
                          "time_per_iter_s": per_iter, "eta_s": eta, "max_rss_mb": _memory_mb(),
                          "epoch": it * cfg.batch / _dataset_size(cfg.train_source)}
                append_jsonl(run / "scalars.jsonl", record)
                log(f"[train] iter {it:>6}/{cfg.max_iter}  loss {record['loss']:.4f}  lr {cfg.base_lr:g}  "
                    f"{per_iter:.2f} s/iter  ETA {_hms(eta)}  epoch {record['epoch']:.1f}  "
                    f"mem {record['max_rss_mb']:.0f} MB")
                losses, t_last = [], now
            if it % cfg.snapshot_every == 0 or it == cfg.max_iter:
                _snapshot(solver, run)
            if validator is not None and (it % cfg.val_every == 0 or it == cfg.max_iter):
                v = validator(solver.net)
                v["iteration"] = it
                best = state["best_val_global_accuracy"]
                if best is None or v["val_global_accuracy"] > best:
                    state.update(best_val_global_accuracy=v["val_global_accuracy"], best_iteration=it)
                    with atomic_path(run / "best.caffemodel") as tmp:  # weights + their full-pass statistics
                        validator.net.save(str(tmp))
                append_jsonl(run / "scalars.jsonl", v)
                log(f"[train] validation at {it}: G {100 * v['val_global_accuracy']:.1f}  "
                    f"C {100 * v['val_class_average_accuracy']:.1f}  mIoU {100 * v['val_mean_iou']:.1f}  "
                    f"(best G at {state['best_iteration']})")
            state["iteration"] = it
            write_text_atomic(state_path, json.dumps(state, indent=2))
            if stop["signal"]:
                _snapshot(solver, run)
                log(f"[train] {stop['signal']}: snapshot at iteration {it} written; resume with --resume")
                state["stopped_by"] = stop["signal"]
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        log_file.close()
    if validator is None and not stop["signal"]:
        with atomic_path(run / "best.caffemodel") as tmp:  # no validation: the last iteration is the model
            solver.net.save(str(tmp))
        state["best_iteration"] = solver.iter
    write_text_atomic(state_path, json.dumps(state, indent=2))
    plot_curve(run)
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


def plot_curve(run: Path) -> Path | None:
    """curve.png: training loss and validation accuracy against iterations."""
    path = run / "scalars.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train_r = [r for r in records if "loss" in r]
    val_r = [r for r in records if "val_global_accuracy" in r]
    if not train_r:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r["iteration"] for r in train_r], [r["loss"] for r in train_r], color="tab:blue", label="train loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss", color="tab:blue")
    if val_r:
        ax2 = ax.twinx()
        for key, colour in (("val_global_accuracy", "tab:green"), ("val_class_average_accuracy", "tab:orange"),
                            ("val_mean_iou", "tab:red")):
            ax2.plot([r["iteration"] for r in val_r], [100 * r[key] for r in val_r], "o-", color=colour,
                     label=key.replace("val_", "val ").replace("_", " "))
        ax2.set_ylabel("validation (%)")
        ax2.set_ylim(0, 100)
        ax2.legend(loc="lower right", fontsize=8)
    ax.set_title(run.name)
    fig.tight_layout()
    out = run / "curve.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, type=Path, help="run folder (created; with --resume, continued)")
    p.add_argument("--resume", action="store_true", help="continue --run from its last snapshot (its config wins)")
    p.add_argument("--arch", default=d.arch, help=f"architecture (default {d.arch}; see python -m prototxt --help)")
    p.add_argument("--train-source", help="training LMDB pair (tools.camvid_to_lmdb --split train)")
    p.add_argument("--val-source", default="", help="validation LMDB pair; omit to skip validation")
    for name in ("height", "width", "classes", "batch", "max_iter", "seed", "log_every", "snapshot_every", "val_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    p.add_argument("--lr", dest="base_lr", type=float, default=d.base_lr, help="fixed learning rate (default 0.1)")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--class-weights", default=d.class_weights, help="published | recomputed | none | FILE.binaryproto")
    p.add_argument("--mirror", action="store_true", help="random left-right flips of image and label together")
    p.add_argument("--init-weights", default="", help="VGG_ILSVRC_16_layers.caffemodel for the encoder")
    p.add_argument("--init-force", action="store_true", help="accept an --init-weights file that is not the "
                   "released VGG16 (its size and sha256 are checked otherwise)")
    p.add_argument("--dropout", action="store_true", help="dropout 0.5 where Bayesian SegNet puts it")
    p.add_argument("--no-batchnorm", dest="batchnorm", action="store_false")
    p.add_argument("--json", action="store_true", help="print the final state as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume:
        cfg = TrainConfig()
    else:
        if not args.train_source:
            fail(TOOL, "--train-source is required (an LMDB pair made by tools.camvid_to_lmdb)")
        for source in filter(None, (args.train_source, args.val_source)):
            if not (Path(source) / "images").is_dir():
                fail(TOOL, f"{source}: not an LMDB pair (no images/ inside; make one with tools.camvid_to_lmdb)")
        if (args.run / "config.json").exists():
            fail(TOOL, f"{args.run}: already a run folder; use --resume or another --run")
        from prototxt import ARCHS

        if args.arch not in ARCHS:
            fail(TOOL, f"unknown --arch '{args.arch}' (choose from {', '.join(ARCHS)})")
        for name in ("batch", "max_iter", "log_every", "snapshot_every", "val_every", "height", "width"):
            if getattr(args, name) < 1:
                fail(TOOL, f"--{name.replace('_', '-')} must be >= 1")
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    try:
        state = train(cfg, args.run, resume=args.resume, log=lambda m: print(m, file=sys.stderr, flush=True),
                      max_iter=args.max_iter if args.resume and args.max_iter != TrainConfig.max_iter else None)
    except (FileNotFoundError, ValueError, FloatingPointError) as e:
        fail(TOOL, str(e))
    if args.json:
        print(json.dumps(state, indent=2))
    return 130 if state.get("stopped_by") else 0


if __name__ == "__main__":
    sys.exit(main())
