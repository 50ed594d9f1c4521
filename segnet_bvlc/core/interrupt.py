"""Ctrl-C and SIGTERM, handled one way everywhere.

Two kinds of work, one mechanism:
- work that writes atomically (conversion, scoring, the pipeline's stages) is stopped at once: inside
  `raising()` the first SIGINT/SIGTERM raises `Interrupted`, a BaseException, so every `finally` and context
  manager cleans up on the way out and no `except Exception` swallows it; further signals are ignored until the
  block ends, so a second Ctrl-C cannot cut the clean-up short;
- work that must reach a safe point first (a training step, then its snapshot) runs inside `deferred()`, which
  only records the signal; the loop asks `stop.requested` between steps and stops there.

Either way the command exits with `Interrupted.status` (128 + N, 130 for Ctrl-C) and the same command again
finishes the work."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.status = 128 + signum


class StopRequest:
    """The first signal `deferred()` received (None until one arrives)."""

    def __init__(self):
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name


@contextlib.contextmanager
def _handlers(handler) -> Iterator[None]:
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _raise(signum, _frame):
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def raising() -> Iterator[None]:
    """The block ends with Interrupted at the first SIGINT/SIGTERM."""
    with _handlers(_raise):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[StopRequest]:
    """The block goes on after a SIGINT/SIGTERM; the StopRequest it yields says one came."""
    stop = StopRequest()

    def record(signum, _frame):
        if stop.signum is None:
            stop.signum = signum

    with _handlers(record):
        yield stop
