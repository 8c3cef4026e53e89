"""Turns a libpbs2p status code into pbs2p_edge.errors.NativeError carrying the library's message; c_path checks a
path before it crosses into C."""

from __future__ import annotations

import os

from ..errors import ConfigError, NativeError
from ._ffi import ffi, lib


def check(status: int, what: str) -> None:
    """Raise NativeError(status, "<what>: <C detail>") unless status is PBS2P_OK."""
    if status == lib.PBS2P_OK:
        return
    detail = ffi.string(lib.pbs2p_last_error()).decode("utf-8", "replace")
    if not detail:
        detail = ffi.string(lib.pbs2p_status_str(status)).decode()
    raise NativeError(int(status), f"{what}: {detail}")


def c_path(path) -> bytes:
    """`path` as the bytes a C function takes; ConfigError for a NUL byte, which C would cut the path at (so
    "a.gguf\\0junk" would open a.gguf)."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise ConfigError(f"path {os.fsdecode(raw)!r} holds a NUL byte")
    return raw
