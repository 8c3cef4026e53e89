"""Turns a libpbs2p status code into pbs2p_edge.errors.NativeError carrying the library's message."""

from __future__ import annotations

from ..errors import NativeError
from ._ffi import ffi, lib


def check(status: int, what: str) -> None:
    """Raise NativeError(status, "<what>: <C detail>") unless status is PBS2P_OK."""
    if status == lib.PBS2P_OK:
        return
    detail = ffi.string(lib.pbs2p_last_error()).decode("utf-8", "replace")
    if not detail:
        detail = ffi.string(lib.pbs2p_status_str(status)).decode()
    raise NativeError(int(status), f"{what}: {detail}")
