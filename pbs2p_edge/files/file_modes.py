"""Permissions of published outputs: temp files are private (0600/0700) until renamed into place, then
get the mode a plain open() would have given them (0666/0777 less the process umask)."""

from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path, directory: bool = False) -> None:
    """chmod `path` to the default mode of a new file (or directory) under the current umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())
