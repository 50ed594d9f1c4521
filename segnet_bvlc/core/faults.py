"""Deterministic kill points for the fault-injection suite (tests/test_faults.py)."""

from __future__ import annotations

import os
import signal


def fault_point(name: str, count: int) -> None:
    """Test-only hook: with SEGNET_FAULT=NAME:COUNT in the environment, the process kills itself with SIGKILL (or
    SEGNET_FAULT_SIGNAL, e.g. SIGTERM) when it reaches this point with this count. Deterministic kill points,
    without timing races; a no-op otherwise."""
    if os.environ.get("SEGNET_FAULT") == f"{name}:{count}":
        os.kill(os.getpid(), getattr(signal, os.environ.get("SEGNET_FAULT_SIGNAL", "SIGKILL")))
