"""atomic_dir: a target lost to a kill between the two renames comes back on the next write; fsync is called."""

import os
from pathlib import Path

import pytest

from pbs2p_edge.files import durable
from pbs2p_edge.files import atomic_dir as ad
from pbs2p_edge.errors import OutputError


def _dead_pid() -> int:
    """A pid no process has (the highest pids are free on any test machine)."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def _orphan(tmp_path, name="ck", pid=None, content="old"):
    """The state a SIGKILL between atomic_dir's renames leaves: the target moved into a dead run's .old- dir."""
    old = tmp_path / f".{name}.old-{pid or _dead_pid()}-abc123"
    (old / "x").mkdir(parents=True)
    (old / "x" / "f.txt").write_text(content)
    return old


def test_restore_orphan_puts_the_old_target_back_and_the_next_write_replaces_it(tmp_path):
    out = tmp_path / "ck"
    _orphan(tmp_path)
    assert ad.restore_orphan(out) == out and (out / "f.txt").read_text() == "old"
    assert ad.restore_orphan(out) is None  # the target exists: nothing to do
    _orphan(tmp_path, content="older")  # another orphan while the target exists is left for removal
    with ad.atomic_dir(out, lambda p: True) as tmp:
        (tmp / "f.txt").write_text("new")
    assert (out / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_a_failed_write_after_a_kill_leaves_the_old_target(tmp_path):
    out = tmp_path / "ck"
    _orphan(tmp_path)
    with pytest.raises(RuntimeError):
        with ad.atomic_dir(out, lambda p: True) as tmp:
            (tmp / "f.txt").write_text("half")
            raise RuntimeError("killed mid-write")
    assert (out / "f.txt").read_text() == "old"


def test_a_live_writers_old_dir_is_not_taken(tmp_path):
    out = tmp_path / "ck"
    _orphan(tmp_path, pid=os.getpid())  # this process: a concurrent writer between its renames
    assert ad.restore_orphan(out) is None and not out.exists()


def test_files_and_directories_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(durable, "fsync_path", lambda p: synced.append(Path(p).name))
    out = tmp_path / "ck"
    with ad.atomic_dir(out, lambda p: True) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_bytes(b"1")
        (tmp / "b.bin").write_bytes(b"2")
        name = tmp.name
    assert {"a.bin", "b.bin", "sub", name} <= set(synced) and synced[-1] == tmp_path.name  # the parent, last
    with pytest.raises(OutputError):  # a directory that is not ours is still refused
        (tmp_path / "theirs").mkdir()
        (tmp_path / "theirs" / "keep.txt").write_text("x")
        with ad.atomic_dir(tmp_path / "theirs", lambda p: False):
            pass
