"""Logging: quiet in the library and tests, on stderr for a command line, appended to a run folder's log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def logger(tool: str) -> logging.Logger:
    """The tool's logger. Messages go nowhere until a command line calls console_logging() (so library calls and
    tests stay quiet), and into a run folder's log file inside run_log()."""
    return logging.getLogger(f"segnet.{tool}")


def console_logging() -> None:
    """Every `segnet.*` logger's INFO messages on stderr, as written (a command line's first call)."""
    root = logging.getLogger("segnet")
    root.setLevel(logging.INFO)
    if not any(getattr(h, "segnet_console", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.segnet_console = True
        root.addHandler(handler)


def open_run_log(path: Path) -> logging.Handler:
    """Append every `segnet.*` message to `path` (a run folder's train.log) until close_run_log(handler)."""
    root = logging.getLogger("segnet")
    root.setLevel(logging.INFO)
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    return handler


def close_run_log(handler: logging.Handler) -> None:
    logging.getLogger("segnet").removeHandler(handler)
    handler.close()
