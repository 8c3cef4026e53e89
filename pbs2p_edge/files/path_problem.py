"""Why a path the user named is neither a regular file nor a directory, in one place and in pbs2p-run's words: a
missing path, a broken link, a link loop, a device or FIFO (`/dev/zero`), a permission."""

from __future__ import annotations

import errno
import os
import stat


def path_problem(path) -> str | None:
    """None for a regular file or a directory (after links); else what is wrong, e.g. "no such file or directory",
    "a broken link", "too many levels of symbolic links", "not a regular file (a character device)"."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ENOENT and os.path.lexists(path):
            return "a broken link (its target does not exist)"
        reason = e.strerror or str(e)
        return reason[:1].lower() + reason[1:]
    except ValueError:  # a NUL byte in the path
        return "not a valid path (it holds a NUL byte)"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode) else
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "another kind of file")
    return f"not a regular file ({kind})"
