"""Which code measured a benchmark row: the checkout's short commit, '+' when tracked files other than bench/results
(the benchmarks' own output, rewritten as rows come in) have uncommitted changes."""

from __future__ import annotations

import subprocess
from pathlib import Path


def commit() -> str:
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":!/bench/results")
    return git("rev-parse", "--short", "HEAD") + ("+" if dirty else "")
