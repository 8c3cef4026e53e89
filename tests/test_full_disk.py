"""`compress` and `export` writing onto a full disk: one error line naming the output, exit 2, the old output left
whole at the target and no temp beside it (the progress directory of a compress stays: --resume goes on from it).

Two ways to fill the disk: RLIMIT_FSIZE in a child process (any user: a write past the limit fails with EFBIG, as
Python ignores SIGXFSZ), and a real tmpfs with a few KB free (root only, skipped otherwise: real ENOSPC). The limit
and the free space let the progress files through and stop the outputs. numpy (gguf-py) reports a short write
without the system's reason; the error line then says what it can."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from saved_models import english_text

from pbs2p_edge import cli

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 60_000  # bytes: above every progress file of the tiny Llama, below each output (ck 166 KB, gguf 106, onnx 200)
FREE = 90_000  # bytes left on the tmpfs: room for the progress files, not for an output
OPTS = ("--method", "rtn", "--nm", "4:8", "--nsamples", "2", "--seqlen", "16", "--block-size", "64", "--threads", "1",
        "--quiet")
PROGRESS_LIMIT = 8_000  # bytes: the run's options fit (1.3 KB), a block's activations (18 KB) do not
# The child: each command of argv[1] (a JSON list of [limit, argv]) in-process under RLIMIT_FSIZE = its limit (a soft
# limit, which any process may set up to the hard one), the imports done before any.
CHILD = """
import contextlib, io, json, resource, sys
from pbs2p_edge import cli
for limit, argv in json.loads(sys.argv[1]):
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    print(json.dumps([rc, out.getvalue(), err.getvalue()]))
"""


@pytest.fixture(scope="module")
def old(tmp_path_factory, tiny_llama_dir):
    """A text, and the old outputs the failed writes must leave whole: a checkpoint, its GGUF and ONNX files."""
    root = tmp_path_factory.mktemp("old")
    text = root / "english.txt"
    text.write_text(english_text())
    for argv in (["compress", tiny_llama_dir, root / "ck", "--calib", text, *OPTS],
                 ["export", root / "ck", root / "m.gguf"], ["export", root / "ck", root / "m.onnx"]):
        assert cli.main([str(a) for a in argv]) == 0
    return root


def _commands(old: Path, tiny_llama_dir, out: Path) -> dict[str, list[str]]:
    """target name -> the command that writes it into `out`."""
    return {"ck": ["compress", str(tiny_llama_dir), str(out / "ck"), "--calib", str(old / "english.txt"), "--seed", "1",
                   *OPTS],
            "m.gguf": ["export", str(old / "ck"), str(out / "m.gguf")],
            "m.onnx": ["export", str(old / "ck"), str(out / "m.onnx")]}


def _fill(old: Path, out: Path) -> None:
    for name in ("ck", "m.gguf", "m.onnx"):
        (shutil.copytree if name == "ck" else shutil.copy)(old / name, out / name)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check(results: dict, out: Path, before: dict[str, bytes], reason: str) -> None:
    for name, (rc, stdout, stderr) in results.items():
        why = "the disk is full or a file size limit was reached" if name == "m.gguf" else reason
        assert (rc, stdout) == (2, ""), (name, rc, stdout, stderr)
        assert stderr.count("\n") == 1 and stderr.startswith(f"pbs2p-edge: error: {out / name}: cannot write ("), stderr
        assert why in stderr and stderr.rstrip().endswith("nothing was replaced"), stderr
    after = _files(out)
    progress = {k for k in after if k.startswith(".ck.progress/")}
    assert progress and {k: v for k, v in after.items() if k not in progress} == before  # old outputs whole, no temp
    assert sorted(p.name for p in out.iterdir()) == [".ck.progress", "ck", "m.gguf", "m.onnx"]


def test_a_file_size_limit_fails_each_write_cleanly(old, tiny_llama_dir, tmp_path):
    """The three outputs, and a compress whose progress files do not fit: its line names the progress file and
    says what --resume keeps; the progress directory holds whole files only."""
    out, early = tmp_path / "out", tmp_path / "early"
    out.mkdir()
    early.mkdir()
    _fill(old, out)
    before = _files(out)
    commands = _commands(old, tiny_llama_dir, out)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "exporters"), os.environ.get("PYTHONPATH")]))}
    runs = [[LIMIT, argv] for argv in commands.values()]
    runs.append([PROGRESS_LIMIT, _commands(old, tiny_llama_dir, early)["ck"]])
    p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(runs)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    results = list(map(json.loads, p.stdout.splitlines()))
    _check(dict(zip(commands, results)), out, before, "File too large")
    rc, stdout, stderr = results[-1]
    assert (rc, stdout, stderr.count("\n")) == (2, "", 1), stderr
    assert stderr.startswith(f"pbs2p-edge: error: {early / '.ck.progress'}/") and stderr.rstrip().endswith(
        ": cannot write (File too large); the finished blocks are kept for --resume"), stderr
    assert [p.name for p in early.iterdir()] == [".ck.progress"]
    assert {p.name for p in (early / ".ck.progress").iterdir()} == {"run.json", "start.pt"}  # no partial file


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs at tmp_path/disk, unmounted afterwards; skipped where mount is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                                            capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE test covers any user)")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_tmpfs_fails_each_write_cleanly(old, tiny_llama_dir, tmpfs, capsys):
    _fill(old, tmpfs)
    st = os.statvfs(tmpfs)
    (tmpfs / "filler").write_bytes(bytes(st.f_bavail * st.f_frsize - FREE))
    before = _files(tmpfs)
    results = {}
    for name, argv in _commands(old, tiny_llama_dir, tmpfs).items():
        capsys.readouterr()
        rc = cli.main(argv)
        results[name] = (rc, *capsys.readouterr())
    (tmpfs / "filler").unlink()
    del before["filler"]
    _check(results, tmpfs, before, "No space left on device")
