"""The one-line failure every command gives, and the exit statuses.

The exit statuses of every `python -m tools.X`: 0 done; 2 an input, setting or folder that cannot be used (the
message names it; nothing was left half-written); 128 + N stopped by signal N (130: Ctrl-C), the same command
again finishes the work; 1 is left to Python itself (an unexpected error, which is a bug to report)."""

from __future__ import annotations

import logging
import os
import sys

USAGE = 2  # bad input, setting or folder
INTERRUPTED = 130  # Ctrl-C; 128 + N for signal N


class SegnetError(ValueError):
    """Base of every error the library raises for bad input: its message names the file or setting and the
    problem, and a command turns it into `TOOL: error: MESSAGE` with status 2."""


def fail(tool: str, message: str, code: int = USAGE):
    """The one-line reason every tool gives, `TOOL: error: MESSAGE` on stderr, then a non-zero exit."""
    print(f"{tool}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def fail_diverged(tool: str, error: FloatingPointError):
    """fail() for a training whose loss went NaN or infinite, without the interpreter's teardown.

    BVLC's Accuracy layer (in every generated TRAIN net) sorts the class scores with std::partial_sort, which is
    undefined on NaN and corrupts the heap: freeing Caffe's objects afterwards aborts the process ("double free or
    corruption", exit 134) after the one-line reason. Everything the run keeps is already on disk (its snapshots
    and state are written atomically, and nothing is written after a diverged step), so the process leaves at
    once with fail()'s line and status."""
    print(f"{tool}: error: {error}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(USAGE)
