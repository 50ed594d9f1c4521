"""The one error the web demo answers a request with."""

from __future__ import annotations

from segnet_bvlc.core.errors import SegnetError


class DemoError(SegnetError):
    """A request the demo refuses; `status` is the HTTP status, the message one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
