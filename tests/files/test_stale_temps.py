"""Tests of pbs2p_edge.files.stale_temps: temp names say target and writer; only a dead writer's old temps are removed."""

import os
import subprocess
import sys
import time

from pbs2p_edge.files.stale_temps import remove_stale_temps, temp_prefix


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: no process has this pid now (reuse within the test is vanishingly unlikely)


def test_temp_prefix_names_target_kind_and_pid(tmp_path):
    out = tmp_path / "m.gguf"
    assert temp_prefix(out) == f".m.gguf.tmp-{os.getpid()}-"
    assert temp_prefix(out, "old") == f".m.gguf.old-{os.getpid()}-"


def test_removes_only_dead_writers_old_temps_of_this_target(tmp_path):
    out = tmp_path / "m.gguf"
    dead = dead_pid()
    stale_file = tmp_path / f".m.gguf.tmp-{dead}-abc"
    stale_file.write_bytes(b"partial")
    stale_dir = tmp_path / f".m.gguf.tmp-{dead}-dir"
    (stale_dir / "sub").mkdir(parents=True)
    old_dir = tmp_path / f".m.gguf.old-{dead}-x"
    old_dir.mkdir()
    live = tmp_path / f".m.gguf.tmp-{os.getpid()}-live"  # a running writer (this process)
    live.write_bytes(b"")
    other = tmp_path / f".n.gguf.tmp-{dead}-abc"  # another target's
    other.write_bytes(b"")
    odd = tmp_path / ".m.gguf.tmp-notapid"
    odd.write_bytes(b"")
    before = time.time() + 1

    assert sorted(remove_stale_temps(out, before=before)) == sorted([stale_file, stale_dir])
    assert old_dir.exists()  # kind "old" only when asked
    assert remove_stale_temps(out, ("old",), before=before) == [old_dir]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, odd.name])


def test_keeps_temps_newer_than_the_run(tmp_path):
    out = tmp_path / "ck"
    t = tmp_path / f".ck.tmp-{dead_pid()}-new"
    t.mkdir()
    assert remove_stale_temps(out, before=time.time() - 60) == []
    assert t.exists()
