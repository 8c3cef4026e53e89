"""Write one file atomically: a temp file in the target's directory, os.replace on success, removed on failure."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from pbs2p_edge.errors import OutputError


@contextlib.contextmanager
def atomic_file(out_path):
    """Yield a temp path next to `out_path`; it becomes `out_path` only if the block finishes."""
    out = Path(out_path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{out}: directory {parent} does not exist")
    if out.is_dir():
        raise OutputError(f"{out}: is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(f"{out}: cannot write in {parent} ({e.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
