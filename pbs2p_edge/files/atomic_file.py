"""Write files atomically: temp files in the target's directory, fsynced, os.replace on success, removed on failure.

Temps are named by pbs2p_edge.files.stale_temps (hidden, naming the target and the writing pid); the ones a killed
run left behind are removed by the next write of the same target."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from . import durable
from ..errors import OutputError
from .file_modes import publish_mode
from .stale_temps import remove_stale_temps, temp_prefix
from .write_failure import write_failure


@contextlib.contextmanager
def atomic_file(out_path):
    """Yield a temp path next to `out_path`; it becomes `out_path` only if the block finishes."""
    out = Path(out_path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{out}: directory {parent} does not exist")
    if out.is_dir():
        raise OutputError(f"{out}: is a directory")
    remove_stale_temps(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(out), dir=parent)
    except OSError as e:
        raise OutputError(f"{out}: cannot write in {parent} ({e.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        publish_mode(tmp)  # mkstemp made it 0600
        durable.fsync_path(tmp)
        os.replace(tmp, out)
        durable.fsync_path(parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        failure = write_failure(out, e)
        if failure is not None:
            raise failure from None
        raise


@contextlib.contextmanager
def atomic_files(out_paths):
    """Yield a temp directory next to the outputs; on success each file named like an output is moved
    onto it (os.replace, in the given order: write data files before the file that refers to them).
    On failure the temp directory is removed and existing outputs are untouched."""
    outs = [Path(p) for p in out_paths]
    parent = outs[0].parent if str(outs[0].parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{outs[0]}: directory {parent} does not exist")
    for out in outs:
        if out.parent != outs[0].parent:
            raise OutputError(f"{out}: all outputs must be in one directory")
        if out.is_dir():
            raise OutputError(f"{out}: is a directory")
    remove_stale_temps(outs[0])
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(outs[0]), dir=parent))
    except OSError as e:
        raise OutputError(f"{outs[0]}: cannot write in {parent} ({e.strerror})") from None
    try:
        yield tmp
        for out in outs:
            publish_mode(tmp / out.name)
            durable.fsync_path(tmp / out.name)
        for out in outs:
            os.replace(tmp / out.name, out)
        durable.fsync_path(parent)
    except BaseException as e:
        failure = write_failure(outs[-1], e)
        if failure is not None:
            raise failure from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
