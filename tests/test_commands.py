"""Tests of pbs2p_edge.commands: checks before work, atomic outputs when interrupted, and `info`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pbs2p_edge import cli, commands
from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.errors import ConfigError, DataError, FormatError, ModelError, NativeError, OutputError
from saved_models import english_text, save_hf_dir, tiny_llama_width40

RTN = CompressConfig(method="rtn", n=8, m=8, block_size=64)  # the fastest method: no Hessian
CALIB = {"nsamples": 2, "seqlen": 16, "progress": False}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny layers run faster on one torch thread than on a 2-thread pool fighting other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "english.txt"
    path.write_text(english_text())
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_llama_dir, text) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "llama-rtn"
    commands.compress(str(tiny_llama_dir), str(out), RTN, calib=str(text), **CALIB)
    return out


def _forbid(monkeypatch, target: str, what: str) -> None:
    """Make `target` (module.attr) fail the test if it is reached."""
    def reached(*args, **kwargs):
        raise AssertionError(f"{what} was reached; the bad input should have been caught before")

    monkeypatch.setattr(target, reached)


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# ----------------------------------------------------------------------------------- checks come first


@pytest.mark.parametrize("calib,error", [("austen:middlemarch", DataError), ("EMPTY", DataError)])
def test_compress_checks_the_text_before_loading_the_model(monkeypatch, tmp_path, tiny_llama_dir, calib, error):
    if calib == "EMPTY":
        calib = str(tmp_path / "empty.txt")
        Path(calib).write_text("\n \n")
    _forbid(monkeypatch, "pbs2p_edge.model.load.load_model", "load_model")
    _forbid(monkeypatch, "pbs2p_edge.model.load.open_model_streamed", "open_model_streamed")
    with pytest.raises(error):
        commands.compress(str(tiny_llama_dir), str(tmp_path / "out"), RTN, calib=calib, **CALIB)
    assert not (tmp_path / "out").exists()


def test_compress_refuses_a_foreign_directory_before_loading(monkeypatch, tmp_path, tiny_llama_dir, text):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    _forbid(monkeypatch, "pbs2p_edge.model.load.load_model", "load_model")
    _forbid(monkeypatch, "pbs2p_edge.model.load.open_model_streamed", "open_model_streamed")
    with pytest.raises(OutputError, match="refusing to replace"):
        commands.compress(str(tiny_llama_dir), str(target), RTN, calib=str(text), **CALIB)
    assert _listing(target) == ["notes.txt"]


def test_compress_checks_layer_widths_before_calibrating(monkeypatch, tmp_path, tiny_tokenizer, text):
    model_dir = save_hf_dir(tiny_llama_width40(), tiny_tokenizer, tmp_path / "llama40")
    _forbid(monkeypatch, "pbs2p_edge.model.sequential.compress_model", "compress_model")
    cfg = CompressConfig(method="pbs2p", n=8, m=16, block_size=64)
    with pytest.raises(ConfigError, match=r"M=16 does not divide the input width 40 of model\.layers\.0\."):
        commands.compress(str(model_dir), str(tmp_path / "out"), cfg, calib=str(text), **CALIB)


def test_export_checks_the_tokenizer_before_compressing(monkeypatch, tmp_path, tiny_llama_dir, text):
    """A tokenizer the GGUF exporter would refuse (here an unknown split regex) fails an export before compression,
    writing nothing, where it used to fail after it; the same model still compresses for ONNX, which has none."""
    import shutil

    model_dir = tmp_path / "odd_split"
    shutil.copytree(tiny_llama_dir, model_dir)
    tj = json.loads((model_dir / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\p{L}+|\p{N}+|\s+|."}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    (model_dir / "tokenizer.json").write_text(json.dumps(tj))
    _forbid(monkeypatch, "pbs2p_edge.model.sequential.compress_model", "compress_model")
    with pytest.raises(FormatError, match="split regex"):
        commands.export(str(model_dir), str(tmp_path / "m.gguf"), RTN, calib=str(text), **CALIB)
    assert _listing(tmp_path) == ["odd_split"]
    with pytest.raises(AssertionError, match="compress_model"):  # past the tokenizer check: ONNX carries none
        commands.export(str(model_dir), str(tmp_path / "m.onnx"), RTN, calib=str(text), **CALIB)


def test_compress_and_evaluate_reject_counts_the_parser_would_reject(tmp_path, tiny_llama_dir, text):
    with pytest.raises(ConfigError, match="nsamples"):
        commands.compress(str(tiny_llama_dir), str(tmp_path / "out"), RTN, calib=str(text), nsamples=0, seqlen=16)
    with pytest.raises(ConfigError, match="seqlen must be >= 2"):
        commands.evaluate(str(tiny_llama_dir), str(text), 1, None)


def test_export_checks_the_output_before_compressing(monkeypatch, tmp_path, tiny_llama_dir, text):
    _forbid(monkeypatch, "pbs2p_edge.commands.compress", "compress")
    (tmp_path / "taken.gguf").mkdir()
    for out, message in ((tmp_path / "m.bin", "unknown output extension"), (tmp_path / "taken.gguf", "is a directory"),
                         (tmp_path / "no" / "m.gguf", "does not exist")):
        with pytest.raises(OutputError, match=message):
            commands.export(str(tiny_llama_dir), str(out), RTN, calib=str(text), **CALIB)
    assert _listing(tmp_path) == ["taken.gguf"]


@pytest.mark.parametrize("device,message", [("tpu9", "unknown device"), ("meta", "not supported"),
                                            ("cuda:99", "cuda")])
def test_check_device(device, message):
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(ConfigError, match=message):
        commands.check_device(device)
    commands.check_device("cpu")


# ---------------------------------------------------------------------------------- atomic outputs


def test_export_interrupted_mid_write_keeps_the_old_file(monkeypatch, tmp_path, ckpt):
    import gguf

    out = tmp_path / "model.gguf"
    out.write_bytes(b"the previous export\n")
    during = {}
    real_write_kv = gguf.GGUFWriter.write_kv_data_to_file

    def write_kv_then_interrupt(self):
        real_write_kv(self)  # header and metadata are on disk, the tensors are not
        for f in self.fout:
            f.flush()
        during.update({p.name: p.stat().st_size for p in tmp_path.iterdir() if p != out})
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf.GGUFWriter, "write_kv_data_to_file", write_kv_then_interrupt)
    assert cli.main(["export", str(ckpt), str(out)]) == 130
    assert len(during) == 1 and next(iter(during.values())) > 0  # a partial temp file existed mid-write
    assert out.read_bytes() == b"the previous export\n"
    assert _listing(tmp_path) == ["model.gguf"]  # and is gone

    monkeypatch.undo()
    commands.export(str(ckpt), str(out), RTN, calib="", **CALIB)  # an uninterrupted run replaces it
    assert out.read_bytes()[:4] == b"GGUF" and _listing(tmp_path) == ["model.gguf"]


def test_export_from_a_model_interrupted_leaves_no_temporary_checkpoint(monkeypatch, tmp_path, tiny_llama_dir, text):
    import pbs2p_exporters.gguf_export as gguf_export

    during = []

    def interrupted(checkpoint_dir, out_path, embed_type="f16"):
        during.extend(_listing(tmp_path))
        assert (Path(checkpoint_dir) / "pbs2p.json").is_file()  # the temporary checkpoint was complete
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_export, "export_gguf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        commands.export(str(tiny_llama_dir), str(tmp_path / "m.gguf"), RTN, calib=str(text), **CALIB)
    assert len(during) == 1 and during[0].startswith(".pbs2p-ckpt-")
    assert _listing(tmp_path) == []


def test_compress_interrupted_mid_save_keeps_the_old_checkpoint(monkeypatch, tmp_path, tiny_llama_dir, text):
    from pbs2p_edge.pack import checkpoint_dir

    out = tmp_path / "ckpt"
    commands.compress(str(tiny_llama_dir), str(out), RTN, calib=str(text), **CALIB)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_write = checkpoint_dir.write_safetensors
    calls = []

    def write_one_then_fail(f, tensors, metadata=None):
        calls.append(Path(f.name).parent.name)
        if len(calls) == 2:  # packed.safetensors written, dense.safetensors not
            raise OSError(28, "No space left on device")
        real_write(f, tensors, metadata)

    monkeypatch.setattr(checkpoint_dir, "write_safetensors", write_one_then_fail)
    other = CompressConfig(method="magnitude", n=4, m=8, block_size=64)
    assert cli.main(["compress", str(tiny_llama_dir), str(out), "--method", "magnitude", "--nm", "4:8",
                     "--calib", str(text), "--nsamples", "2", "--seqlen", "16", "--block-size", "64", "--quiet"]) == 2
    assert calls[0].startswith(".ckpt.tmp-")  # written into a temp directory next to the target
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _listing(tmp_path) == [".ckpt.progress", "ckpt"]  # the finished blocks, kept for --resume

    monkeypatch.undo()
    commands.compress(str(tiny_llama_dir), str(out), other, calib=str(text), **CALIB)  # replaced when it succeeds
    assert json.loads((out / "pbs2p.json").read_text())["compress_config"]["method"] == "magnitude"
    assert _listing(tmp_path) == ["ckpt"]


def test_export_summary_of_a_checkpoint(tmp_path, ckpt):
    out = tmp_path / "m.gguf"
    summary = commands.export(str(ckpt), str(out), RTN, calib="", **CALIB)
    assert summary["out"] == str(out.resolve()) and summary["bytes"] == out.stat().st_size
    assert summary["bits_per_weight"] == commands.inspect(str(out))["bits_per_weight"]
    assert summary["bits_per_weight"] == commands.inspect(str(ckpt))["bits_per_weight"]


# ------------------------------------------------------------------------------------ run / eval of a GGUF


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, ckpt) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "llama-rtn.gguf"
    commands.export(str(ckpt), str(out), RTN, calib="", **CALIB)
    return out


def test_run_streams_whole_characters_that_join_to_the_text(gguf_file):
    chunks = []
    res = commands.run(str(gguf_file), "Emma Woodhouse", n_predict=12, threads=1, stop_at_eos=False,
                       on_text=chunks.append)
    assert "".join(chunks) == res["text"] and res["n_generated"] == len(res["tokens"]) == 12
    assert all(chunks) and res["stop_reason"] == "length"


@pytest.mark.parametrize("kw, error, match", [
    ({"prompt": None}, ConfigError, "either inline"), ({"prompt": "x", "prompt_file": "y"}, ConfigError, "not both"),
    ({"prompt": ""}, ConfigError, "the prompt is empty"),
])
def test_run_checks_the_prompt_before_loading_the_model(monkeypatch, gguf_file, kw, error, match):
    _forbid(monkeypatch, "pbs2p_edge.runtime.model.Model.__init__", "model loading")
    with pytest.raises(error, match=match):
        commands.run(str(gguf_file), **kw)


def test_run_refuses_a_directory_and_a_non_utf8_prompt_file(tmp_path, gguf_file):
    with pytest.raises(ModelError, match="is not a file"):
        commands.run(str(tmp_path), "Emma")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8"):
        commands.run(str(gguf_file), prompt_file=str(bad))


def test_evaluate_gguf_checks_device_before_loading(monkeypatch, gguf_file, text):
    _forbid(monkeypatch, "pbs2p_edge.runtime.model.Model.__init__", "model loading")
    with pytest.raises(ConfigError, match="on the CPU"):
        commands.evaluate(str(gguf_file), str(text), 16, 2, device="cuda")


def test_evaluate_gguf_runs_with_libpbs2p(gguf_file, ckpt, text):
    got = commands.evaluate(str(gguf_file), str(text), 16, 3, threads=1)
    want = commands.evaluate(str(ckpt), str(text), 16, 3)
    assert (got["runtime"], want["runtime"]) == ("libpbs2p", "pytorch")
    assert (got["windows"], got["tokens"]) == (want["windows"], want["tokens"]) == (3, 45)
    assert got["ppl"] == pytest.approx(want["ppl"], rel=1e-4)


# --------------------------------------------------------------------------------------------- info


def test_info_with_the_native_library():
    from pbs2p_edge import __version__, runtime

    d = commands.info()
    assert d["version"] == __version__ and d["torch"] == torch.__version__
    assert d["native_library"] == str(runtime.library_path().resolve())
    assert d["native_version"] and d["selected_kernel"] in d["available_kernels"]
    assert "error" not in d
    text = commands.format_info(d)
    assert f"kernel_variants: {', '.join(d['kernel_variants'])}" in text.splitlines()


def test_info_reports_an_unloadable_library_instead_of_raising(monkeypatch):
    from pbs2p_edge import runtime

    def not_built():
        raise NativeError(-1, "libpbs2p is not built")

    monkeypatch.setattr(runtime, "library_path", not_built)
    d = commands.info()
    assert d["native_library"] is None and d["kernel_variants"] == [] and d["selected_kernel"] is None
    assert d["error"] == "libpbs2p is not built (status -1)"
    assert "native_library: -" in commands.format_info(d).splitlines()


def test_info_reports_an_unusable_forced_kernel(monkeypatch):
    from pbs2p_edge import runtime

    def forced():
        raise NativeError(5, "kernel selection: unknown kernel variant 'x'")

    monkeypatch.setattr(runtime, "selected_kernel", forced)
    d = commands.info()
    assert d["native_library"] is not None and d["kernel_variants"] == runtime.kernel_variants()
    assert d["selected_kernel"] is None and "unknown kernel variant" in d["error"]


def test_resume_takes_the_kept_blocks_and_refuses_another_run(monkeypatch, tmp_path, tiny_llama_dir, text):
    """A run that failed after its blocks (here: at the checkpoint write) keeps them; --resume with the same
    options takes both and writes what an uninterrupted run writes; other options are refused, naming them."""
    import pbs2p_edge.checkpoint as checkpoint

    out, ref = tmp_path / "ck", tmp_path / "ref"
    magnitude = CompressConfig(method="magnitude", n=4, m=8, block_size=64)
    commands.compress(str(tiny_llama_dir), str(ref), magnitude, calib=str(text), **CALIB)

    def full_disk(*args, **kwargs):
        raise OutputError("No space left on device")

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save_checkpoint", full_disk)
        with pytest.raises(OutputError):
            commands.compress(str(tiny_llama_dir), str(out), magnitude, calib=str(text), **CALIB)
    assert sorted(p.name for p in (tmp_path / ".ck.progress").iterdir()) == \
        ["act-1.pt", "block-0.pt", "block-1.pt", "run.json", "start.pt"]
    with pytest.raises(ConfigError, match=r"holds another run \(it differs in: config, seqlen\)"):
        commands.compress(str(tiny_llama_dir), str(out), RTN, calib=str(text), resume=True,
                          **{**CALIB, "seqlen": 17})
    summary = commands.compress(str(tiny_llama_dir), str(out), magnitude, calib=str(text), resume=True, **CALIB)
    assert summary["resumed_blocks"] == 2
    for name in ("packed.safetensors", "dense.safetensors", "config.json"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()
    assert _listing(tmp_path) == ["ck", "ref"]


def test_a_budget_that_cannot_fit_in_memory_is_refused_before_loading(monkeypatch, tmp_path, tiny_llama_dir, text):
    """A model that does not stream is planned in memory, three times its float32 weights: the tiny Llama's 115,008
    stored parameters need 1,380,096 bytes, so one byte less of available memory refuses the run, naming the streamed
    way. Streamed, the same budget plans one block at a time and runs."""
    from pbs2p_edge.model.stream import stored_parameters

    assert stored_parameters(tiny_llama_dir) == 2 * 320 * 64 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3 + 2 * 64) + 64
    monkeypatch.setattr(commands, "_available_memory", lambda: 3 * 4 * 115_008 - 1)
    with monkeypatch.context() as m:
        _forbid(m, "pbs2p_edge.model.load.load_model", "load_model")
        m.setattr("pbs2p_edge.model.load.open_model_streamed", lambda *a, **k: None)  # as a pickled model would
        with pytest.raises(ConfigError, match=r"about 0 GB for this model, and 0 GB are available; compress it with "
                                              r"--method pbs2p"):
            commands.compress(str(tiny_llama_dir), str(tmp_path / "out"), RTN, calib=str(text), bpw=8.0, **CALIB)
    assert not (tmp_path / "out").exists()
    _forbid(monkeypatch, "pbs2p_edge.model.load.load_model", "load_model")
    summary = commands.compress(str(tiny_llama_dir), str(tmp_path / "out"), RTN, calib=str(text), bpw=8.0, **CALIB)
    assert summary["streamed"] is True
