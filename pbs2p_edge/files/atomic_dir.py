"""Write a directory atomically: fill a temp directory next to the target, then swap it in by rename.

Temps are named by pbs2p_edge.files.stale_temps; the ones a killed run left behind are removed by the next write of
the same target. A kill between the two renames of a replacement leaves the target missing and the previous
checkpoint in a ".old-" directory: the next write of the target first puts it back (restore_orphan), so a target
is always the old checkpoint or the new one. Files and directories are fsynced before and after the renames, so a
power cut cannot publish a directory whose files are still empty."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from . import durable
from ..errors import OutputError
from .file_modes import publish_mode
from .stale_temps import dead_temps, remove_stale_temps, temp_prefix
from .write_failure import write_failure


def restore_orphan(out: Path) -> Path | None:
    """When `out` is missing and a dead run's ".old-" directory holds the previous checkpoint (a kill between the
    renames), move it back to `out` and remove the emptied directory; returns the restored path, or None. Called
    by the next write of `out` and by model.sources when `out` is read as a model source."""
    if os.path.lexists(out):
        return None
    orphans = [p for p in dead_temps(out, "old") if (p / "x").is_dir()]
    if not orphans:
        return None
    newest = max(orphans, key=lambda p: p.stat().st_mtime)
    os.replace(newest / "x", out)
    durable.fsync_path(out.parent)
    with contextlib.suppress(OSError):
        newest.rmdir()  # empty now (a reader restores too: nothing else would remove it)
    return out


@contextlib.contextmanager
def atomic_dir(out_dir, may_replace):
    """Yield a temp directory; on success it replaces `out_dir`, on any exception it is removed.

    `may_replace(path) -> bool` says whether an existing `out_dir` may be replaced (refused: OutputError).
    """
    out = Path(out_dir)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{out}: parent directory {parent} does not exist")
    started = time.time()
    restore_orphan(out)
    if out.exists() and not (out.is_dir() and (may_replace(out) or not any(out.iterdir()))):
        raise OutputError(f"{out}: exists and is not a checkpoint of ours; refusing to replace it")
    remove_stale_temps(out, ("tmp",), before=started)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out), dir=parent))
    except OSError as e:
        raise OutputError(f"{out}: cannot write in {parent} ({e.strerror})") from None
    try:
        yield tmp
        publish_mode(tmp, directory=True)  # mkdtemp made it 0700
        durable.fsync_tree(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(out, "old"), dir=parent))
            os.replace(out, old / "x")  # move aside first: rename cannot overwrite a non-empty directory
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / "x", out)  # put the old checkpoint back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        durable.fsync_path(parent)
        remove_stale_temps(out, ("old",), before=started)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = write_failure(out, e)
        if failure is not None:
            raise failure from None
        raise
