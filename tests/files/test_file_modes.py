"""Published outputs get the mode a plain open()/mkdir() would give them, not the temp file's 0600/0700."""

import os
import stat

from pbs2p_edge.files.atomic_dir import atomic_dir
from pbs2p_edge.files.file_modes import publish_mode
from pbs2p_edge.files.atomic_file import atomic_file, atomic_files


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_publish_mode_follows_the_umask(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    os.chmod(f, 0o600)
    old = os.umask(0o027)
    try:
        publish_mode(f)
        publish_mode(tmp_path, directory=True)
    finally:
        os.umask(old)
    assert (_mode(f), _mode(tmp_path)) == (0o640, 0o750)


def test_atomic_outputs_are_not_left_private(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "a.gguf") as tmp:
            tmp.write_bytes(b"gguf")
        with atomic_files([tmp_path / "b.onnx.data", tmp_path / "b.onnx"]) as d:
            (d / "b.onnx.data").write_bytes(b"d")
            (d / "b.onnx").write_bytes(b"m")
        with atomic_dir(tmp_path / "ckpt", may_replace=lambda p: False) as d:
            (d / "pbs2p.json").write_text("{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.gguf") == 0o644
    assert _mode(tmp_path / "b.onnx") == _mode(tmp_path / "b.onnx.data") == 0o644
    assert _mode(tmp_path / "ckpt") == 0o755
