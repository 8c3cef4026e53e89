"""Broken ONNX files (tests/bad_inputs.corrupt_onnx: 48 kinds of damage to a custom-flavor export) through every
entry point that takes an .onnx: `pbs2p-edge inspect` (which checks the file with onnx_read.check_onnx), eval, run
and export (which take GGUF files or checkpoints only), pbs2p-run, the Python API (check_onnx, read_onnx_metadata)
and onnxruntime with libpbs2p's op. Each refuses with one line and exit status 2 (Python: FormatError), nothing is
written, and no run returns a non-finite result with success."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from bad_inputs import corrupt_onnx
from exporters.onnx_run import feeds
from native.test_pbs2p_run import BINARY as PBS2P_RUN
from saved_models import english_text
from transformers import AutoConfig

from pbs2p_edge import cli
from pbs2p_edge.errors import FormatError
from pbs2p_edge.runtime.library import find_library
from pbs2p_exporters.onnx_export import export_onnx
from pbs2p_exporters.onnx_read import check_onnx, read_onnx_metadata

# Damage that neither onnx nor onnxruntime nor libpbs2p's op can see: the pbs2p.* metadata, the ai.pbs2p opset
# version (custom ops have none in ORT's registry), and non-finite weights of standard ops (norms, embedding).
# onnxruntime runs these (the norms' NaN reaching the logits); check_onnx is what refuses them.
RUN_IN_ORT = {"meta-no-format-version", "meta-format-version-x", "meta-format-version-99", "meta-flavor-unknown",
              "meta-config-not-json", "meta-names-not-a-list", "meta-bits-nan", "meta-not-utf8", "op-domain-version-2",
              "init-norm-nan", "init-final-norm-nan", "init-embedding-inf"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, llama_untied_ckpt):
    """The valid custom and portable exports, their broken copies (name -> path) in `bad`, the model's config and a
    text; the untied llama's first node has a mask, salient columns, split groups and mu, so every family applies."""
    root = tmp_path_factory.mktemp("bad_onnx")
    custom = export_onnx(llama_untied_ckpt, root / "custom.onnx")
    (root / "text.txt").write_text(english_text())
    (root / "bad").mkdir()
    portable = export_onnx(llama_untied_ckpt, root / "portable.onnx", flavor="portable")
    return SimpleNamespace(custom=custom, portable=portable,
                           bad=corrupt_onnx(custom, root / "bad"), root=root / "bad", text=root / "text.txt",
                           config=AutoConfig.from_pretrained(llama_untied_ckpt))


def _tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_inspect_describes_a_valid_export(corpus, capfd):
    for path, flavor in ((corpus.custom, "custom"), (corpus.portable, "portable")):
        assert cli.main(["inspect", str(path), "--json"]) == 0
        out, err = capfd.readouterr()
        d = json.loads(out)
        assert err == ""
        assert (d["format"], d["onnx_flavor"], d["architecture"], d["n_linears"]) == ("onnx", flavor, "llama", 14)
        assert d["bits_per_weight"] == float(read_onnx_metadata(path)["pbs2p.bits_per_weight"]) > 1
        assert d["file_bits"] == 8 * path.stat().st_size and check_onnx(path)[0] == read_onnx_metadata(path)


@pytest.mark.parametrize("command", ["inspect", "eval", "run", "export"])
def test_every_broken_onnx_is_one_error_line_and_exit_2(corpus, capfd, tmp_path, command):
    """capfd: nothing else reaches file descriptor 2 (onnxruntime's own logger included)."""
    before = _tree(corpus.root)
    wrong = []
    for name, path in corpus.bad.items():
        argv = {"inspect": ["inspect", path], "eval": ["eval", path, "--data", corpus.text, "--seqlen", "16"],
                "run": ["run", path, "-p", "Emma", "-n", "2"], "export": ["export", path, tmp_path / "m.gguf"]}[command]
        rc = cli.main([str(a) for a in argv])
        out, err = capfd.readouterr()
        if (rc, out) != (2, "") or err.count("\n") != 1 or not err.startswith("pbs2p-edge: error: "):
            wrong.append((name, rc, out[:80], err[-300:]))
        elif command == "inspect" and str(path) not in err:
            wrong.append((name, "the error line does not name the file", err))
    assert wrong == []
    assert _tree(corpus.root) == before and not any(tmp_path.iterdir())  # nothing written, nothing left


def test_the_api_raises_format_error(corpus):
    """check_onnx refuses every broken file; read_onnx_metadata (no tensor read) the unreadable ones and the damaged
    metadata, and returns the metadata of the rest."""
    bad = corpus.bad
    metadata_ok = set()
    for name, path in bad.items():
        with pytest.raises(FormatError, match=str(path).replace("^", r"\^")):
            check_onnx(path)
        try:
            read_onnx_metadata(path)
            metadata_ok.add(name)
        except FormatError:
            pass
    unreadable = {"empty", "cut-3", "cut-header", "cut-half", "cut-last", "garbage", "gguf-bytes"}
    assert metadata_ok == set(bad) - unreadable - {n for n in bad if n.startswith("meta-")}


def test_onnxruntime_with_libpbs2p_refuses_what_it_can_see(corpus):
    """Session or run: onnxruntime's exception for every broken file but RUN_IN_ORT, never a crash; the files it
    runs are those of damage it cannot see, whose NaN norms give NaN logits (hence check_onnx)."""
    f = feeds(corpus.config, np.array([[5, 17, 99, 3]], np.int64))
    ran, non_finite = set(), set()
    for name, path in corpus.bad.items():
        so = ort.SessionOptions()
        so.register_custom_ops_library(str(find_library()))
        so.log_severity_level = 4
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], enable_fallback=0)
            outputs = sess.run(None, f)
        except Exception:  # noqa: BLE001 - onnxruntime's Fail / InvalidGraph / InvalidProtobuf / RuntimeException
            continue
        ran.add(name)
        if not all(np.isfinite(o).all() for o in outputs):
            non_finite.add(name)
    assert ran == RUN_IN_ORT and non_finite == {"init-norm-nan", "init-final-norm-nan"}


@pytest.mark.skipif(PBS2P_RUN is None, reason="no pbs2p-run binary (tests/native/test_pbs2p_run.py says where)")
def test_pbs2p_run_refuses_every_broken_onnx(corpus):
    for name, path in {"custom": corpus.custom, "portable": corpus.portable, **corpus.bad}.items():
        p = subprocess.run([PBS2P_RUN, "-m", str(path), "-p", "Emma", "-n", "2"], capture_output=True, text=True,
                           timeout=30)
        assert (p.returncode, p.stdout, p.stderr.count("\n")) == (2, "", 1) and p.stderr.startswith("pbs2p-run: "), name
