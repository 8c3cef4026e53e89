"""The folder a bench writes its large temporary files into: --work when given (kept), else a new folder under /tmp
that is deleted at the end unless --keep."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def work_folder(work: Path | None, keep: bool, prefix: str) -> Iterator[Path]:
    own = work is None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")) if own else work
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        if own and not keep:
            shutil.rmtree(path, ignore_errors=True)
