"""The run folder's rules: when a folder continues an earlier start, is refused, or starts over.

config.json holds every setting that defines the run, written once when the run starts; a command with other
settings is refused with the difference, and `restart` starts the run over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from segnet_bvlc.core.files import write_text_atomic
from segnet_bvlc.training.config import RunError, TrainConfig, config_diff

RUN_OUTPUTS = ("config.json", "provenance.json", "state.json", "scalars.jsonl", "train.log", "curve.png",
               "best.caffemodel", "last.caffemodel", "last.solverstate", "snapshots", "net", "inference.caffemodel",
               "deploy_folded.caffemodel", "deploy_folded.prototxt", "eval", "timings.json", "stages.jsonl")
_DIFF_SHOWN = 4  # settings named in the refusal; the rest are counted


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
            shown = "; ".join(diff[:_DIFF_SHOWN])
            if len(diff) > _DIFF_SHOWN:
                shown += f"; and {len(diff) - _DIFF_SHOWN} more"
            raise RunError(f"{run}: already a run with other settings ({shown}); run the same command to resume "
                           "it, add --restart to start it over, or choose another run folder")
        return stored, True
    if restart:
        clear_run(run)
    return cfg, False


def extend_run(cfg: TrainConfig, run: Path, max_iter: int | None) -> None:
    """A resumed run's new length (`--resume --max-iter N`), stored in its config.json."""
    if max_iter is None or max_iter == cfg.max_iter:
        return
    if max_iter < 1:
        raise RunError(f"--max-iter must be >= 1, got {max_iter}")
    cfg.max_iter = max_iter
    write_text_atomic(run / "config.json", cfg.to_json())


def finished_state(run: Path, cfg: TrainConfig) -> dict | None:
    """The final state of a run that already reached cfg.max_iter (and has its model), else None."""
    state_path = run / "state.json"
    if not state_path.is_file():
        return None
    state = json.loads(state_path.read_text())
    if state.get("complete") and state.get("iteration") == cfg.max_iter and (run / "best.caffemodel").is_file():
        state.pop("stopped_by", None)
        return state
    return None
