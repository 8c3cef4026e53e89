"""A whole UTF-8 text file (a prompt, a calibration or evaluation corpus), read within a size limit.

A path can name something that never ends (/dev/zero, /dev/urandom) or a FIFO no process writes to; a plain
read_bytes() would grow without bound or block forever. The file is opened without blocking (a FIFO with no writer
then reads as empty), read in chunks, and refused past MAX_BYTES, as pbs2p-run refuses it (native/cli/text_file.h).
"""

from __future__ import annotations

import os

from ..errors import DataError

MAX_BYTES = 1 << 28  # 256 MiB, pbs2p-run's TEXT_FILE_MAX_BYTES: larger inputs are refused, not truncated
_CHUNK = 1 << 20


def read_text_file(path, what: str = "text file") -> str:
    """The UTF-8 text of `path`; DataError (one line) when it cannot be opened or read, is larger than MAX_BYTES,
    is not UTF-8, or is empty (whitespace only)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise DataError(f"cannot open {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    chunks, size = [], 0
    try:
        os.set_blocking(fd, True)  # a FIFO with a writer is then read as it arrives; without one it reads as empty
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BYTES:
                raise DataError(f"{what} {path} is larger than {MAX_BYTES >> 20} MiB")
            chunks.append(chunk)
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path} is not UTF-8 (byte {exc.start}: 0x{raw[exc.start]:02x})") from None
    if not text.strip():
        raise DataError(f"{what} {path} is empty")
    return text
