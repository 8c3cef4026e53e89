"""The core install runs our GGUF files without PyTorch or ONNX; a command that needs an extra says which.

The commands run in a fresh interpreter where every extra's modules are absent (tests/without_extras.py), as on a
device where only `pip install pbs2p-edge` (numpy, cffi, gguf) was done.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pbs2p_edge import commands
from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.errors import MissingExtra
from pbs2p_edge.extras import EXTRAS, missing, require

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune. " * 40


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> list[str]:
    return [r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requirements]


def test_pyproject_declares_the_extras_that_extras_py_checks():
    project = _pyproject()
    assert _names(project["dependencies"]) == ["numpy", "cffi", "gguf"]
    optional = project["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        assert tuple(_names(optional[extra])) == modules  # the pip names are the module names
    assert set(_names(optional["all"])) == {m for modules in EXTRAS.values() for m in modules}


def test_require_names_the_extra_and_the_missing_modules(monkeypatch):
    assert missing("onnx") == []  # this suite's environment has everything
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert missing("onnx") == ["onnxruntime"]
    with pytest.raises(MissingExtra, match=r"inspect of x needs the \[onnx\] extra.*missing: onnxruntime.*"
                                           r"pip install 'pbs2p-edge\[onnx\]'"):
        require("onnx", "inspect of x")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_llama_dir) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("core")
    (d / "text.txt").write_text(TEXT)
    cfg = CompressConfig(method="rtn", n=8, m=8, block_size=64)
    commands.compress(str(tiny_llama_dir), str(d / "ckpt"), cfg, calib=str(d / "text.txt"), nsamples=2, seqlen=16,
                      progress=False)
    commands.export(str(d / "ckpt"), str(d / "m.gguf"), cfg, calib="", nsamples=2, seqlen=16, progress=False)
    commands.export(str(d / "ckpt"), str(d / "m.onnx"), cfg, calib="", nsamples=2, seqlen=16, progress=False)
    return {"dir": d, "model": tiny_llama_dir, "ckpt": d / "ckpt", "gguf": d / "m.gguf", "onnx": d / "m.onnx",
            "text": d / "text.txt"}


def _core(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / "without_extras.py"), *map(str, argv)], capture_output=True,
                          text=True, timeout=300)


def test_a_gguf_runs_inspects_and_evaluates_with_the_core_only(files):
    gguf = files["gguf"]
    info = _core("info", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["torch"] is not None  # read from metadata, never imported
    described = _core("inspect", gguf, "--json")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout) == commands.inspect(str(gguf))
    ran = _core("run", gguf, "-p", "It is a truth", "-n", "8", "-t", "1", "--json", "--no-eos")
    assert ran.returncode == 0, ran.stderr
    want = commands.run(str(gguf), "It is a truth", n_predict=8, threads=1, stop_at_eos=False)
    assert json.loads(ran.stdout)["tokens"] == want["tokens"]  # greedy: the same tokens as with every package
    ev = _core("eval", gguf, "--data", files["text"], "--seqlen", "32", "--max-windows", "2", "--threads", "1",
               "--json")
    assert ev.returncode == 0, ev.stderr
    got = json.loads(ev.stdout)
    assert got["runtime"] == "libpbs2p"
    assert got["ppl"] == commands.evaluate(str(gguf), str(files["text"]), 32, 2, threads=1)["ppl"]


@pytest.mark.parametrize("argv, extra", [
    (["compress", "{model}", "{dir}/c2", "--calib", "{text}"], "compress"),
    (["export", "{ckpt}", "{dir}/x.gguf"], "compress"),
    (["export", "{model}", "{dir}/x.gguf"], "compress"),
    (["eval", "{model}", "--data", "{text}"], "compress"),
    (["eval", "{ckpt}", "--data", "{text}"], "compress"),
    (["inspect", "{ckpt}"], "compress"),
    (["inspect", "{onnx}"], "onnx"),
])
def test_a_command_that_needs_an_extra_says_which_in_one_line(files, argv, extra):
    before = sorted(p.name for p in files["dir"].iterdir())
    proc = _core(*(a.format(**files) for a in argv))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("pbs2p-edge: error: ")
    assert f"needs the [{extra}] extra" in proc.stderr and f"pip install 'pbs2p-edge[{extra}]'" in proc.stderr
    assert sorted(p.name for p in files["dir"].iterdir()) == before  # nothing written


def test_the_runtime_package_imports_without_any_extra():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from without_extras import hide_extras; hide_extras(); "
            "import pbs2p_edge.runtime, pbs2p_exporters, pbs2p_edge.cli; from pbs2p_edge.runtime import Model; "
            "from pbs2p_edge.extras import EXTRAS; "
            "print(sorted(m for m in sys.modules if sys.modules[m] is not None and m.split('.')[0] in "
            "{x for ms in EXTRAS.values() for x in ms}))")
    proc = subprocess.run([sys.executable, "-c", code, str(HERE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
