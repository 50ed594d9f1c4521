"""The training loop's log: mean loss, time per iteration, ETA, epoch and peak memory every --log-every
iterations, one scalars.jsonl record and one train.log line each."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from segnet_bvlc.core.files import append_jsonl
from segnet_bvlc.core.log import logger
from segnet_bvlc.training.config import TrainConfig
from segnet_bvlc.training.memory import peak_rss

log = logger("train").info


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB), as the kernel counts it (memory.peak_rss)."""
    return peak_rss() / 2 ** 20


class Progress:
    """The losses since the last record and the clocks the ETA is measured with."""

    def __init__(self, cfg: TrainConfig, run: Path, start_iter: int):
        self.cfg, self.run = cfg, run
        self.losses: list[float] = []
        self.t_start = self.t_last = time.perf_counter()
        self.it_start = start_iter
        self.images = dataset_size(cfg.train_source)

    def step(self, it: int, loss: float, due: bool) -> None:
        """Count iteration `it`'s loss; when `due`, write the record of the iterations since the last one."""
        self.losses.append(loss)
        if not due:
            return
        cfg = self.cfg
        now = time.perf_counter()
        per_iter = (now - self.t_last) / len(self.losses)
        eta = (cfg.max_iter - it) * (now - self.t_start) / max(it - self.it_start, 1)
        record = {"iteration": it, "loss": float(np.mean(self.losses)), "lr": cfg.base_lr,
                  "time_per_iter_s": per_iter, "eta_s": eta, "max_rss_mb": peak_rss_mb(),
                  "epoch": it * cfg.batch * cfg.iter_size / self.images}
        append_jsonl(self.run / "scalars.jsonl", record)
        log(f"[train] iter {it:>6}/{cfg.max_iter}  loss {record['loss']:.4f}  lr {cfg.base_lr:g}  "
            f"{per_iter:.2f} s/iter  ETA {hms(eta)}  epoch {record['epoch']:.1f}  "
            f"mem {record['max_rss_mb']:.0f} MB")
        self.losses, self.t_last = [], now


def dataset_size(source: str) -> int:
    """Images in an LMDB pair (its meta.json's count; 1 when unknown, so an epoch is still a number)."""
    meta = Path(source) / "meta.json"
    count = int(json.loads(meta.read_text()).get("count", 0)) if meta.is_file() else 0
    return count or 1


def hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
