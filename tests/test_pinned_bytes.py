"""Behaviour is pinned byte for byte: two tiny exports made from scratch hash to the committed values.

A refactor of the compression, the checkpoint writer or the GGUF exporter must leave the bytes they write unchanged;
a change that means to change them updates tests/data/pinned_bytes.json in the same commit, saying why. The run is
tests/pinned_bytes.py in a fresh interpreter with torch's arithmetic pinned (its docstring); torch's kernels then
give the same bits on any x86-64 CPU, which is where the committed hashes were made (torch 2.13.0).
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PINNED = HERE / "data" / "pinned_bytes.json"
PINNING = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
REMAKE = ("ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "
          "python tests/pinned_bytes.py $(mktemp -d) > tests/data/pinned_bytes.json")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the committed hashes are x86-64's (torch's default kernels differ on other ISAs)")
def test_tiny_exports_give_the_committed_bytes(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "pinned_bytes.py"), str(tmp_path)], capture_output=True,
                          text=True, env={**os.environ, **PINNING}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got, want = json.loads(proc.stdout), json.loads(PINNED.read_text())
    changed = sorted(k for k in want.keys() | got.keys() if got.get(k) != want.get(k))
    assert not changed, f"these outputs changed: {changed}; if that is meant, remake the pin: {REMAKE}"
