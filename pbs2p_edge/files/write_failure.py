"""What a failed write of an output becomes: one OutputError naming the output and the system's reason (a full disk,
a file-size limit, an I/O error), raised by the atomic writers after they removed their temps."""

from __future__ import annotations

import sys

from ..errors import OutputError


def write_failure(out, e: BaseException, kept: str = "nothing was replaced") -> OutputError | None:
    """The OutputError for `e` raised while writing `out`, or None when `e` is not a failed write; `kept` says what
    the failure left in place.

    numpy's tofile (gguf-py) raises OSError without an errno ("20480 requested and 0 written"); safetensors wraps
    the system's error in a SafetensorError "... I/O error: No space left on device (os error 28)"."""
    if isinstance(e, OSError):
        reason = e.strerror or f"{e}: the disk is full or a file size limit was reached"
    elif _is_safetensors_error(e) and "I/O error: " in str(e):
        reason = str(e).split("I/O error: ", 1)[1]
    else:
        return None
    return OutputError(f"{out}: cannot write ({reason}); {kept}")


def _is_safetensors_error(e: BaseException) -> bool:
    """Whether `e` is safetensors' error, without importing safetensors (an extra): when no writer has imported it,
    nothing can have raised it."""
    module = sys.modules.get("safetensors")
    return module is not None and isinstance(e, module.SafetensorError)
