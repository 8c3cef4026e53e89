"""fsync of what an atomic write publishes: the data before the rename that makes it visible, the directory after,
so a power cut cannot leave a published name whose bytes never reached the disk."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path) -> None:
    """fsync a file or a directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root) -> None:
    """fsync every file under root, then every directory (children before parents)."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for f in files:
            fsync_path(Path(dirpath) / f)
        fsync_path(dirpath)
