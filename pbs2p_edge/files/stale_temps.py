"""Names of the temp files and directories of atomic outputs, and removal of the ones a killed run left behind.

An atomic write puts its data in a hidden temp entry next to the target and renames it into place; an
exception removes the temp, but a SIGKILL (or a power cut) cannot, so the entry stays. Every temp is named

    .{target name}.{kind}-{pid}-{random}     kind: "tmp" (being written) or "old" (a replaced directory)

which says which target it belongs to and which process wrote it. The next atomic write of the same target
removes the entries of that target whose writer process no longer exists on this machine and whose mtime is
older than that write's start; a live writer's temps (a concurrent run) are never touched.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path


def temp_prefix(out: Path, kind: str = "tmp") -> str:
    """The prefix for tempfile.mkstemp / mkdtemp of a temp of `out` written by this process."""
    return f".{out.name}.{kind}-{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (this process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def dead_temps(out: Path, kind: str) -> list[Path]:
    """The temps of `out` of this kind whose writer process no longer exists (unreadable directory: none)."""
    parent = out.parent if str(out.parent) else Path(".")
    head = f".{out.name}.{kind}-"
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    found = []
    for p in entries:
        if p.name.startswith(head):
            pid = p.name[len(head):].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                found.append(p)
    return found


def remove_stale_temps(out: Path, kinds: tuple[str, ...] = ("tmp",), before: float | None = None) -> list[Path]:
    """Remove the temps of `out` (of the given kinds) left by dead processes and older than `before` (epoch
    seconds; default now); returns what was removed. Errors are ignored: cleanup never fails a write."""
    limit = time.time() if before is None else before
    removed = []
    for kind in kinds:
        for p in dead_temps(out, kind):
            try:
                if p.lstat().st_mtime >= limit:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            except OSError:
                continue
            removed.append(p)
    return removed
