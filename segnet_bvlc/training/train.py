"""A training run: Caffe's SGD solver, driven from Python, into a self-contained run folder.

What the folder holds and how a run resumes is the command's help (tools/train.py). Here: the run is started
from the seeded fillers (with the bilinear surgery and the VGG16 encoder where asked) or resumed from its newest
intact snapshot, stepped one iteration at a time (a Ctrl-C or SIGTERM is deferred to the next step, which then
snapshots), validated with the solver released, and finished with best.caffemodel and curve.png.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import time
from pathlib import Path

import caffe
import numpy as np

from prototxt import bilinear_surgery
from segnet_bvlc.core.device import set_caffe_mode
from segnet_bvlc.core.faults import fault_point
from segnet_bvlc.core.files import append_jsonl, atomic_path, read_jsonl, write_text_atomic
from segnet_bvlc.core.interrupt import StopRequest, deferred
from segnet_bvlc.core.log import close_run_log, logger, open_run_log
from segnet_bvlc.core.provenance import provenance
from segnet_bvlc.training.config import TrainConfig
from segnet_bvlc.training.curve import plot_curve
from segnet_bvlc.training.init_weights import init_from_vgg16
from segnet_bvlc.training.memory import current_rss, preflight
from segnet_bvlc.training.nets import write_nets
from segnet_bvlc.training.progress import Progress, peak_rss_mb
from segnet_bvlc.training.run_folder import extend_run, finished_state, prepare_run
from segnet_bvlc.training.snapshots import (
    SnapshotError,
    check_snapshot,
    commit_snapshot,
    snapshot_candidates,
    snapshot_stem,
)
from segnet_bvlc.training.validation import Validator

log = logger("train").info


def train(cfg: TrainConfig, run: Path, resume: bool = False, max_iter: int | None = None,
          restart: bool = False, memory_check: bool = True) -> dict:
    """Train into `run` until cfg.max_iter and return the final state (iterations, best validation accuracy and
    its iteration; `stopped_by` when a signal stopped this invocation). Started again with the same settings, it
    continues from the newest intact snapshot. `resume` takes the run folder's stored settings; `max_iter` may
    then extend (or shorten) the run."""
    run = run.resolve()
    cfg, continuing = prepare_run(cfg, run, resume=resume, restart=restart)
    if resume:
        extend_run(cfg, run, max_iter)
    finished = finished_state(run, cfg) if continuing else None
    if finished is not None:
        return finished
    if memory_check and not continuing:
        preflight(cfg)
    writing = run / "snapshots" / ".writing"  # a killed snapshot's leftovers
    shutil.rmtree(writing, ignore_errors=True)
    writing.mkdir(parents=True, exist_ok=True)
    return Training(cfg, run, continuing).run_to_end()


class Training:
    """One invocation's training: the solver, the run's state (state.json) and its validator."""

    def __init__(self, cfg: TrainConfig, run: Path, continuing: bool):
        self.cfg, self.run, self.continuing = cfg, run, continuing
        self.state = {"iteration": 0, "best_val_global_accuracy": None, "best_iteration": None, "validated": 0}
        self.rss_base_mb = current_rss() / 1024 ** 2  # before any net: what the peaks below add to
        self.messages: list[str] = []  # logged once train.log is open
        self.solver = None
        set_caffe_mode()
        np.random.seed(cfg.seed)
        if not (continuing and self.resume()):  # a new run, or no snapshot read back
            self.start()
        self.validator = (Validator(self.paths["deploy"], cfg.train_source, cfg.val_source, cfg.classes,
                                    cfg.batch) if cfg.val_source else None)

    def open_solver(self, start_iter: int) -> None:
        # The solver's random_seed reseeds Caffe at every construction: a fresh start after skipped snapshots
        # draws the same fillers as the first start did.
        self.paths = write_nets(self.cfg, self.run, start_iter=start_iter)
        self.solver = caffe.SGDSolver(str(self.paths["solver"]))

    def resume(self) -> bool:
        """Restore the solver from the newest snapshot that reads back; False when none does."""
        for iteration, candidate in snapshot_candidates(self.run):
            self.open_solver(iteration)
            try:
                it, snap_state = check_snapshot(candidate, self.solver.net)
            except SnapshotError as e:
                self.messages.append(f"[train] skipped snapshot {e}")
                self.solver = None
                continue
            self.solver.restore(str(candidate))
            self.state.update(snap_state)
            self.messages.append(f"[train] resumed {self.run.name} at iteration {it} from {candidate.name}")
            # Forget what was logged after the snapshot: it is recomputed, identically.
            kept = [r for r in read_jsonl(self.run / "scalars.jsonl") if r["iteration"] < self.solver.iter
                    or ("loss" in r and r["iteration"] == self.solver.iter)]
            write_text_atomic(self.run / "scalars.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
            return True
        return False

    def start(self) -> None:
        """Start from the seeded fillers, then the initialisations the architecture and settings ask for."""
        cfg, run = self.cfg, self.run
        self.open_solver(0)
        # Learnt bilinear deconvolutions start as channel-wise interpolation (fcn's surgery.interp).
        changed = bilinear_surgery(self.solver.net, self.paths["train"])
        if changed:
            self.messages.append(f"[train] bilinear initialisation of {', '.join(changed)}")
        if cfg.init_weights:
            report = init_from_vgg16(self.solver.net, Path(cfg.init_weights), cfg.arch, force=cfg.init_force)
            self.messages.append(f"[train] encoder initialised from {cfg.init_weights}: {report}")
        # The run exists from here on: everything that could refuse the settings has run.
        write_text_atomic(run / "config.json", cfg.to_json())
        write_text_atomic(run / "provenance.json", json.dumps(provenance(), indent=2))
        (run / "scalars.jsonl").unlink(missing_ok=True)

    def run_to_end(self) -> dict:
        """Step to cfg.max_iter, or to the first safe point after a SIGINT/SIGTERM; the final state."""
        run_log = open_run_log(self.run / "train.log")
        for message in self.messages:
            log(message)
        try:
            with deferred() as stop:
                self.loop(stop)
        finally:
            close_run_log(run_log)
        return self.finish(stop)

    def due(self, it: int, every: int) -> bool:
        return it % every == 0 or it == self.cfg.max_iter

    def loop(self, stop: StopRequest) -> None:
        cfg, solver_iter = self.cfg, self.solver.iter
        progress = Progress(cfg, self.run, solver_iter)
        snapped = solver_iter if self.continuing and solver_iter else -1
        # A snapshot taken just before a validation that never finished: validate now.
        if self.validator is not None and solver_iter and self.due(solver_iter, cfg.val_every) \
                and self.state.get("validated", 0) < solver_iter:
            self.validate(solver_iter)
        while self.solver.iter < cfg.max_iter and not stop.requested:
            it, loss = self.step()
            progress.step(it, loss, self.due(it, cfg.log_every))
            val_due = self.validator is not None and self.due(it, cfg.val_every)
            if self.due(it, cfg.snapshot_every) or val_due or stop.requested:
                commit_snapshot(self.solver, self.run, self.state)
                snapped = it
            if val_due:
                self.validate(it)
            self.write_state()
        if stop.requested and snapped != self.solver.iter:
            commit_snapshot(self.solver, self.run, self.state)

    def step(self) -> tuple[int, float]:
        """One solver iteration: (iteration, loss); FloatingPointError when the loss diverged."""
        self.solver.step(1)
        it = self.solver.iter
        fault_point("step", it)
        loss = float(self.solver.net.blobs["loss"].data)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at iteration {it}; lower --lr")
        self.state["iteration"] = it
        return it, loss

    def validate(self, it: int) -> None:
        """Validate the snapshot of iteration `it` with the solver released, then restore the solver from it."""
        before, started = peak_rss_mb(), time.perf_counter()
        stem = snapshot_stem(self.run, it)
        self.solver = None
        gc.collect()
        v = self.validator(stem.with_suffix(".caffemodel"), it, lambda scores: self.best_target(scores, it))
        self.open_solver(it)
        self.solver.restore(str(stem.with_suffix(".solverstate")))
        v.update(iteration=it, rss_base_mb=self.rss_base_mb, peak_rss_before_mb=before,
                 peak_rss_after_mb=peak_rss_mb(), seconds=time.perf_counter() - started, load=os.getloadavg()[0])
        self.state["validated"] = it
        append_jsonl(self.run / "scalars.jsonl", v)
        log(f"[train] validation at {it}: G {100 * v['val_global_accuracy']:.1f}  "
            f"C {100 * v['val_class_average_accuracy']:.1f}  mIoU {100 * v['val_mean_iou']:.1f}  "
            f"(best G at {self.state['best_iteration']}; {v['seconds']:.0f} s, peak {v['peak_rss_after_mb']:.0f} MB)")

    def best_target(self, scores: dict, it: int) -> Path | None:
        """The paper's model selection (§3.3): best.caffemodel when `scores` has the best validation global
        accuracy so far (the state records it), else None."""
        best = self.state["best_val_global_accuracy"]
        if best is None or scores["val_global_accuracy"] > best:
            self.state.update(best_val_global_accuracy=scores["val_global_accuracy"], best_iteration=it)
            return self.run / "best.caffemodel"
        return None

    def write_state(self) -> None:
        write_text_atomic(self.run / "state.json", json.dumps(self.state, indent=2))

    def finish(self, stop: StopRequest) -> dict:
        """The final state: stopped by a signal (resumable), or complete with best.caffemodel and curve.png."""
        if stop.requested and self.solver.iter < self.cfg.max_iter:
            log(f"[train] {stop.name}: snapshot at iteration {self.solver.iter} written; run the same command "
                "again to continue")
            self.state["stopped_by"] = stop.name
            self.write_state()
            return self.state
        if self.validator is None:
            with atomic_path(self.run / "best.caffemodel") as tmp:  # no validation: the last iteration is the model
                self.solver.net.save(str(tmp))
            self.state["best_iteration"] = self.solver.iter
        self.state["complete"] = True
        self.write_state()
        plot_curve(self.run)
        self.solver = self.validator = None
        gc.collect()
        return self.state
