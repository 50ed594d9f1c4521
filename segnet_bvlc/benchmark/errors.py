"""The benchmarks' error: a one-line reason a benchmark cannot run (a bad option, a missing input)."""

from __future__ import annotations

from segnet_bvlc.core.errors import SegnetError


class BenchmarkError(SegnetError):
    """A one-line reason the benchmark cannot run (bad option, missing input)."""
