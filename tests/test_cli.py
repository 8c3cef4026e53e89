"""End-to-end tests of the `pbs2p-edge` command line on tiny random Llama / OPT directories and a local text file.

Most runs call pbs2p_edge.cli.main in-process (fast); a few run the installed console script in a
subprocess to check the real exit status and that stderr holds exactly one line.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import gguf
import pytest
import torch

from pbs2p_edge import __version__, cli
from bad_inputs import corrupt_checkpoints, corrupt_ggufs
from saved_models import english_text, save_hf_dir, tiny_gpt2, tiny_llama_width40, tiny_opt

ERROR_PREFIX = "pbs2p-edge: error: "
# Small calibration: 4 windows of 32 tokens; scale groups of 64 columns (hidden 64: one group per row).
CALIB = ("--nsamples", "4", "--seqlen", "32", "--block-size", "64", "--quiet")
CHECKPOINT_FILES = {"config.json", "pbs2p.json", "packed.safetensors", "dense.safetensors", "tokenizer.json"}
LLAMA_LINEARS = 14  # 2 blocks x (q, k, v, o, gate, up, down)
OPT_LINEARS = 12  # 2 blocks x (q, k, v, out, fc1, fc2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """torch's 2-thread pool on the shared 2-core test machine spins against other processes: compressing
    these tiny layers measured 22 s with 2 threads vs 0.8 s with 1 (pbs2p, tiny OPT, load average 6)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one in-process `pbs2p-edge argv...`."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def quiet_main(*argv) -> str:
    """stdout of an in-process run that must succeed (for module fixtures, which cannot use capsys)."""
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = cli.main([str(a) for a in argv])
    assert rc == 0, f"pbs2p-edge {' '.join(map(str, argv))} exited {rc}"
    return buf.getvalue()


def token_count(model_dir: Path, text_file: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(str(model_dir))(text_file.read_text())["input_ids"])


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_tokenizer, tiny_llama_dir):
    root = tmp_path_factory.mktemp("cli")
    text = root / "english.txt"
    text.write_text(english_text())
    return SimpleNamespace(root=root, text=text, llama=tiny_llama_dir,
                           opt=save_hf_dir(tiny_opt(), tiny_tokenizer, root / "opt"))


@pytest.fixture(scope="module")
def llama_ckpt(work):
    """(checkpoint dir, compress summary): PBS2P 4:8 with CFS on the tiny Llama."""
    out = work.root / "llama-pbs2p-4of8"
    summary = json.loads(quiet_main("compress", work.llama, out, "--method", "pbs2p", "--nm", "4:8",
                                    "--calib", work.text, "--seed", "0", *CALIB))
    return out, summary


@pytest.fixture(scope="module")
def llama_gguf(work, llama_ckpt):
    out = work.root / "llama-pbs2p.gguf"
    summary = json.loads(quiet_main("export", llama_ckpt[0], out))
    return out, summary


# --------------------------------------------------------------------------------------------- compress


def test_compress_dtype_keeps_the_activations_at_bfloat16(work):
    out = work.root / "ck-bf16"
    quiet_main("compress", work.llama, out, "--calib", work.text, "--method", "rtn", "--dtype", "bfloat16", *SMALL)
    assert json.loads((out / "pbs2p.json").read_text())["extra"]["activation_dtype"] == "bfloat16"


def test_compress_writes_a_complete_checkpoint(work, llama_ckpt):
    out, summary = llama_ckpt
    assert CHECKPOINT_FILES <= {p.name for p in out.iterdir()}
    assert summary["checkpoint"] == str(out.resolve())
    assert (summary["method"], summary["nm"], summary["layers"]) == ("pbs2p", "4:8", LLAMA_LINEARS)
    assert summary["mean_n"] == 4.0
    meta = json.loads((out / "pbs2p.json").read_text())
    cc = meta["compress_config"]
    assert (cc["method"], cc["n"], cc["m"], cc["block_size"], cc["seed"], cc["cfs"]) == ("pbs2p", 4, 8, 64, 0, True)
    assert meta["extra"]["nsamples"] == 4 and meta["extra"]["seqlen"] == 32
    assert meta["extra"]["activation_dtype"] == "float32"
    assert not [p.name for p in work.root.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_blocks_compresses_the_first_k_and_export_refuses_the_checkpoint(capsys, tmp_path, work, llama_ckpt):
    """--blocks 1 of 2: block 0's linears are compressed exactly as in a full run (same seed, same windows), block 1
    keeps its full-precision weights; the checkpoint says so, evaluates, and is refused by both exporters."""
    out = tmp_path / "first"
    rc, stdout, err = run_cli(capsys, "compress", work.llama, out, "--method", "pbs2p", "--nm", "4:8",
                              "--calib", work.text, "--seed", "0", "--blocks", "1", *CALIB)
    assert (rc, err) == (0, "")
    summary = json.loads(stdout)
    assert summary["blocks"] == {"compressed": 1, "total": 2} and summary["layers"] == LLAMA_LINEARS // 2
    assert llama_ckpt[1]["blocks"] == {"compressed": 2, "total": 2}
    meta, full = (json.loads((d / "pbs2p.json").read_text()) for d in (out, llama_ckpt[0]))
    assert meta["blocks"] == {"compressed": 1, "total": 2}
    assert meta["layers"] == {k: v for k, v in full["layers"].items() if k.startswith("model.layers.0.")}
    rc, stdout, _ = run_cli(capsys, "inspect", out)
    assert rc == 0 and "blocks: 1 of 2 compressed" in stdout
    rc, stdout, err = run_cli(capsys, "eval", out, "--data", work.text, "--seqlen", "32", "--max-windows", "2", "--json")
    assert (rc, err) == (0, "") and math.isfinite(json.loads(stdout)["ppl"])
    for target in ("m.gguf", "m.onnx"):
        rc, stdout, err = run_cli(capsys, "export", out, tmp_path / target)
        assert (rc, stdout) == (2, "")
        assert err == (f"pbs2p-edge: error: {out} compressed only the first 1 of 2 decoder blocks (compress --blocks 1); "
                       "export needs all of them: compress again without --blocks\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first"]
    rc, _, err = run_cli(capsys, "compress", work.llama, tmp_path / "x", "--calib", work.text, "--blocks", "3", *CALIB)
    assert rc == 2 and "--blocks 3: this model has 2 decoder blocks" in err
    rc, stdout, err = run_cli(capsys, "compress", work.llama, tmp_path / "auto", "--method", "rtn", "--calib", work.text,
                              "--blocks", "1", "--threads", "auto", *CALIB)  # threads follow the free cores
    assert (rc, err) == (0, "") and json.loads(stdout)["blocks"] == {"compressed": 1, "total": 2}


@pytest.mark.parametrize("method,arch", [
    ("rtn", "opt"), ("magnitude", "llama"), ("billm", "opt"), ("arb", "llama"),
    ("arb-rc", "opt"), ("stbllm", "llama"), ("pbs2p", "opt"),
])
def test_every_method_compresses_and_evaluates(capsys, tmp_path, work, method, arch):
    from pbs2p_edge.algo.methods import METHODS

    out = tmp_path / f"{arch}-{method}"
    rc, stdout, err = run_cli(capsys, "compress", getattr(work, arch), out, "--method", method, "--nm", "4:8",
                              "--calib", work.text, "--no-cfs", "--nsamples", "2", "--seqlen", "16",
                              "--block-size", "64", "--quiet")
    assert (rc, err) == (0, "")
    assert json.loads(stdout)["method"] == method
    assert CHECKPOINT_FILES <= {p.name for p in out.iterdir()}

    rc, stdout, _ = run_cli(capsys, "inspect", out, "--json")
    d = json.loads(stdout)
    assert rc == 0 and d["format"] == "checkpoint" and d["method"] == method
    assert len(d["layers"]) == (LLAMA_LINEARS if arch == "llama" else OPT_LINEARS)
    kept = 4 if METHODS[method].prunes else 8  # methods that do not prune keep all M
    assert {(layer["n"], layer["m"]) for layer in d["layers"]} == {(kept, 8)}
    assert 0 < d["bits_per_weight"] < 16

    rc, stdout, _ = run_cli(capsys, "eval", out, "--data", work.text, "--seqlen", "16", "--max-windows", "3", "--json")
    res = json.loads(stdout)
    assert rc == 0 and res["windows"] == 3 and res["tokens"] == 3 * 15
    assert math.isfinite(res["ppl"]) and res["ppl"] > 1


# ------------------------------------------------------------------------------------------------- eval


def test_eval_json_of_model_and_checkpoint(capsys, work, llama_ckpt):
    n_tokens = token_count(work.llama, work.text)
    results = {}
    for name, source in (("fp", work.llama), ("ckpt", llama_ckpt[0])):
        rc, out, err = run_cli(capsys, "eval", source, "--data", work.text, "--seqlen", "32", "--json")
        assert (rc, err) == (0, "")
        res = json.loads(out)
        assert {"ppl", "windows", "tokens"} <= set(res)
        assert res["windows"] == n_tokens // 32 and res["tokens"] == res["windows"] * 31
        assert math.isfinite(res["ppl"]) and res["ppl"] > 1
        results[name] = res["ppl"]
    assert results["ckpt"] != results["fp"]

    rc, out, _ = run_cli(capsys, "eval", work.llama, "--data", work.text, "--seqlen", "32", "--max-windows", "2")
    assert rc == 0 and out.startswith("ppl ") and "over 2 windows (62 tokens predicted)" in out


def test_eval_of_checkpoint_equals_in_memory_fake_quant_model(capsys, work, llama_ckpt):
    """The packed checkpoint round-trips exactly: its PPL is the PPL of the model compress_model left in memory."""
    from pbs2p_edge.algo.config import CompressConfig
    from pbs2p_edge.calib.text import load_text
    from pbs2p_edge.calib.tokens import encode
    from pbs2p_edge.calib.windows import calibration_windows
    from pbs2p_edge.model.perplexity import perplexity
    from pbs2p_edge.model.load import load_model
    from pbs2p_edge.model.sequential import compress_model

    model, tok = load_model(str(work.llama))
    ids = encode(tok, load_text(str(work.text)))
    fp = perplexity(model, ids, 32, max_windows=4).ppl
    cfg = CompressConfig(method="pbs2p", n=4, m=8, block_size=64, seed=0)
    compress_model(model, calibration_windows(ids, 4, 32, seed=0), cfg, progress=False)
    in_memory = perplexity(model, ids, 32, max_windows=4).ppl
    assert in_memory != pytest.approx(fp, rel=1e-3)

    rc, out, _ = run_cli(capsys, "eval", llama_ckpt[0], "--data", work.text, "--seqlen", "32", "--max-windows", "4",
                         "--json")
    assert rc == 0
    assert json.loads(out)["ppl"] == pytest.approx(in_memory, rel=1e-6)


def test_eval_of_gguf_with_libpbs2p_equals_eval_of_its_checkpoint(capsys, work, llama_ckpt, llama_gguf):
    """The same PPL from the C library on the GGUF as from PyTorch on the checkpoint it was exported from."""
    res = {}
    for name, source in (("ckpt", llama_ckpt[0]), ("gguf", llama_gguf[0])):
        rc, out, err = run_cli(capsys, "eval", source, "--data", work.text, "--seqlen", "32", "--max-windows", "6",
                               "--threads", "1", "--json")
        assert (rc, err) == (0, "")
        res[name] = json.loads(out)
    assert (res["ckpt"]["runtime"], res["gguf"]["runtime"]) == ("pytorch", "libpbs2p")
    assert set(res["gguf"]) == set(res["ckpt"]) == {"ppl", "windows", "tokens", "seqlen", "data", "model", "seconds",
                                                    "runtime"}
    assert (res["gguf"]["windows"], res["gguf"]["tokens"], res["gguf"]["seqlen"]) == (6, 6 * 31, 32)
    assert res["gguf"]["ppl"] == pytest.approx(res["ckpt"]["ppl"], rel=1e-4)

    rc, out, _ = run_cli(capsys, "eval", llama_gguf[0], "--data", work.text, "--seqlen", "32", "--max-windows", "2",
                         "--threads", "1")
    assert rc == 0 and out.startswith("ppl ") and "over 2 windows (62 tokens predicted)" in out


@pytest.mark.parametrize("arch, config", [("qwen2", {}), ("mistral", {"sliding_window": 8})])
def test_llama_layout_architectures_go_through_the_whole_chain(capsys, tmp_path, work, tiny_tokenizer, arch, config):
    """Qwen2 (q/k/v biases) and Mistral (a sliding window shorter than the windows evaluated) compress, export to
    GGUF and ONNX, and the C runtime's perplexity and greedy tokens on the GGUF are PyTorch's on the checkpoint."""
    from checkpoint.tiny_compressed import tiny_model

    from pbs2p_edge.checkpoint import to_fake_quant_model
    from pbs2p_edge.runtime.model import Model

    # transformers gives a Qwen2 directory's tokenizer Qwen2's <|endoftext|>: room for it, as real Qwen2 models have
    src = save_hf_dir(tiny_model(arch, tie=False, vocab_size=336, **config), tiny_tokenizer, tmp_path / arch)
    ck, gguf_path = tmp_path / "ck", tmp_path / "m.gguf"
    rc, _, err = run_cli(capsys, "compress", src, ck, "--method", "pbs2p", "--nm", "4:8", "--calib", work.text, *CALIB)
    assert (rc, err) == (0, "")
    for out in (gguf_path, tmp_path / "m.onnx"):
        rc, _, err = run_cli(capsys, "export", ck, out)
        assert (rc, err) == (0, "")
    ppl = {}
    for source in (ck, gguf_path):
        rc, stdout, err = run_cli(capsys, "eval", source, "--data", work.text, "--seqlen", "32", "--max-windows", "4",
                                  "--json")
        assert (rc, err) == (0, "")
        ppl[source] = json.loads(stdout)["ppl"]
    # the runtime multiplies the packed layers on int8 activations, PyTorch's eval on float ones: 1.1e-4 measured
    assert ppl[gguf_path] == pytest.approx(ppl[ck], rel=1e-3)
    # greedy decoding: each token the runtime picks is PyTorch's arg-max after the same prefix, or a near tie (the
    # int8 activations move a logit by up to ~1e-3 of the logits' range on this tiny random model)
    model, _ = to_fake_quant_model(ck)
    prompt = list(range(3, 15))
    with Model(gguf_path) as m:
        got = m.generate_greedy(prompt, 12)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + got])).logits[0, len(prompt) - 1:-1]
    gaps = (logits.max(dim=1).values - logits[torch.arange(len(got)), got]) / (logits.max() - logits.min())
    assert float(gaps.max()) <= 2e-3


@pytest.mark.parametrize("what, edit, out, message", [
    ("gpt2", None, "m.gguf", "unsupported architecture 'gpt2'; supported: gemma3_text, llama, mistral, opt, qwen2"),
    ("llama", {"hidden_act": "gelu"}, "m.gguf", "GGUF export of llama supports hidden_act 'silu', not 'gelu'"),
    ("llama", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}}, "m.onnx",
     "ONNX export supports RoPE scaling llama3 (or none), not 'yarn'"),
    ("opt", {"activation_function": "gelu"}, "m.onnx", "ONNX export of opt supports activation_function 'relu'"),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1,
               "layer_types": ["full_attention", "sliding_attention"]}, "m.gguf", "mixed attention layer types"),
])
def test_export_refuses_what_it_cannot_carry_before_reading_weights(capsys, tmp_path, work, tiny_tokenizer, what, edit,
                                                                    out, message):
    """The architecture checks read config.json only: here the weights are garbage, and the error is still the
    architecture's, on one line, with nothing written."""
    from checkpoint.tiny_compressed import tiny_model

    model = {"gpt2": tiny_gpt2, "opt": tiny_opt}.get(what, lambda: tiny_model(what))()
    src = save_hf_dir(model, tiny_tokenizer, tmp_path / "src")
    if edit:
        cfg = json.loads((src / "config.json").read_text())
        (src / "config.json").write_text(json.dumps({**cfg, **edit}))
    (src / "model.safetensors").write_bytes(b"not weights")
    rc, stdout, err = run_cli(capsys, "export", src, tmp_path / out, "--calib", work.text, *CALIB)
    assert (rc, stdout) == (2, "")
    assert err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_an_unsupported_local_model_is_refused_before_torch_is_imported(tmp_path, tiny_tokenizer):
    """The one-line refusal comes from config.json alone, before torch and transformers are imported (importing
    them takes about 3 s, over the 2 s a refusal may take; the whole process takes 0.2 s on a loaded 2-core machine,
    a figure for the notes, not a timed test); a hub id or a GGUF is checked by load_model, still before any weight.
    The installed `pbs2p-edge export` exits 2 with the same line, writing nothing."""
    src = save_hf_dir(tiny_gpt2(), tiny_tokenizer, tmp_path / "gpt2")
    message = "pbs2p-edge: error: unsupported architecture 'gpt2'; supported: gemma3_text, llama, mistral, opt, qwen2\n"
    code = ("import sys; from pbs2p_edge.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    for argv in (["export", src, tmp_path / "m.gguf"], ["compress", src, tmp_path / "ck"], ["eval", src]):
        r = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, timeout=120)
        assert r.stdout.split("\n")[0] == "2 []", (argv, r.stdout, r.stderr)
        assert r.stderr == message
    r = run_script("export", src, tmp_path / "m.gguf")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2"]


# ------------------------------------------------------------------------------------------------- run

RUN_KEYS = {"text", "tokens", "prompt_ids", "prompt_tokens", "n_generated", "stop_reason", "prompt_tokens_per_second",
            "decode_tokens_per_second", "prompt_seconds", "decode_seconds", "model", "kernel", "threads", "ctx", "kv"}


def test_run_json_gives_the_greedy_tokens(capsys, llama_gguf):
    from pbs2p_edge.runtime.model import Model

    prompt = "Emma Woodhouse, handsome, clever,"
    rc, out, err = run_cli(capsys, "run", llama_gguf[0], "-p", prompt, "-n", "7", "-t", "1", "--no-eos", "--json")
    assert (rc, err) == (0, "")
    res = json.loads(out)
    assert set(res) == RUN_KEYS
    with Model(llama_gguf[0]) as m:
        ids = m.tokenize(prompt)
        assert res["tokens"] == m.generate_greedy(ids, 7)
        assert res["text"] == m.detokenize(res["tokens"])
    assert (res["prompt_ids"], res["prompt_tokens"], res["n_generated"], res["stop_reason"]) == (ids, len(ids), 7,
                                                                                                 "length")
    assert (res["model"], res["threads"], res["ctx"], res["kv"]) == (str(llama_gguf[0]), 1, 256, "f16")
    assert res["prompt_seconds"] > 0 and res["prompt_tokens_per_second"] > 0
    rc, out, err = run_cli(capsys, "run", llama_gguf[0], "-p", prompt, "-n", "7", "-t", "1", "--no-eos", "--json",
                           "--kv", "f32")
    assert (rc, err) == (0, "") and json.loads(out)["kv"] == "f32"
    with Model(llama_gguf[0], kv="f32") as m:
        assert json.loads(out)["tokens"] == m.generate_greedy(ids, 7)


def test_run_streams_the_text_then_one_speed_line(capsys, tmp_path, llama_gguf):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("It is a truth universally acknowledged")
    rc, out, _ = run_cli(capsys, "run", llama_gguf[0], "-f", prompt_file, "-n", "5", "--no-eos", "-t", "1", "--json")
    want = json.loads(out)
    rc, out, err = run_cli(capsys, "run", llama_gguf[0], "-f", prompt_file, "-n", "5", "--no-eos", "-t", "1")
    assert rc == 0 and out == want["text"] + "\n"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"prompt: {want['prompt_tokens']} tokens, ")
    assert " | decode: 5 tokens, " in lines[0] and lines[0].endswith(" | stop: length")


def test_run_sampling_is_seeded(capsys, llama_gguf):
    def tokens(seed):
        rc, out, _ = run_cli(capsys, "run", llama_gguf[0], "-p", "Emma", "-n", "10", "--no-eos", "-t", "1", "--temp",
                             "1.5", "--top-k", "50", "--top-p", "0.9", "--seed", seed, "--json")
        assert rc == 0
        return json.loads(out)["tokens"]

    assert tokens(3) == tokens(3) != tokens(4)


# --------------------------------------------------------------------------------------- export/inspect


def test_export_checkpoint_writes_a_readable_gguf(llama_ckpt, llama_gguf):
    import gguf

    out, summary = llama_gguf
    reader = gguf.GGUFReader(str(out))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["pbs2p.method"].contents() == "pbs2p"
    assert (reader.fields["pbs2p.n"].contents(), reader.fields["pbs2p.m"].contents()) == (4, 8)
    sources = reader.fields["pbs2p.linear.source_names"].contents()
    assert sources == list(json.loads((llama_ckpt[0] / "pbs2p.json").read_text())["layers"])
    assert summary["out"] == str(out.resolve()) and summary["bytes"] == out.stat().st_size
    assert "compress" not in summary  # a checkpoint is exported as is


def test_inspect_json_reports_cfs_allocation(capsys, llama_ckpt, llama_gguf):
    rc, out, err = run_cli(capsys, "inspect", llama_gguf[0], "--json")
    assert (rc, err) == (0, "")
    d = json.loads(out)
    layers = d["layers"]
    assert d["format"] == "gguf" and len(layers) == LLAMA_LINEARS
    assert all(layer["m"] == 8 and 3 <= layer["n"] <= 5 for layer in layers)  # N_l in [n - 1, n + 1]
    weights = [layer["rows"] * layer["cols"] for layer in layers]
    assert Fraction(sum(layer["n"] * w for layer, w in zip(layers, weights)), sum(weights)) == 4  # exact mean n
    for block in ("model.layers.0.", "model.layers.1."):  # CFS gives every linear of a block the same N
        assert len({layer["n"] for layer in layers if layer["source_name"].startswith(block)}) == 1
    assert d["bits_per_weight"] == pytest.approx(sum(layer["honest_bits"] for layer in layers) / sum(weights))
    assert d["bits_per_weight"] == pytest.approx(llama_gguf[1]["bits_per_weight"], rel=1e-12)

    rc, out, _ = run_cli(capsys, "inspect", llama_ckpt[0], "--json")
    ck = json.loads(out)
    assert [(r["name"], r["n"], r["honest_bits"]) for r in ck["layers"]] == \
        [(r["source_name"], r["n"], r["honest_bits"]) for r in layers]

    rc, out, _ = run_cli(capsys, "inspect", llama_gguf[0])
    assert rc == 0 and "bits_per_weight:" in out and "blk.0.attn_q" in out


def test_compact_preset_stores_one_scale_pair_per_row(capsys, tmp_path, work):
    """--preset compact: one region, alpha and mu per row (group = whole row), nothing else stored:
    honest bits = mask code + N signs per 8 columns + 2 float16 per row."""
    out = tmp_path / "compact"
    rc, _, err = run_cli(capsys, "compress", work.llama, out, "--nm", "4:8", "--preset", "compact",
                         "--calib", work.text, "--nsamples", "4", "--seqlen", "32", "--quiet")
    assert (rc, err) == (0, "")
    cfg = json.loads((out / "pbs2p.json").read_text())["compress_config"]
    assert (cfg["block_size"], cfg["salient"], cfg["split_groups"], cfg["intra_block_update"]) == (0, False, 1, True)
    rc, js, _ = run_cli(capsys, "inspect", out, "--json")
    for layer in json.loads(js)["layers"]:
        n, rows, cols = layer["n"], layer["rows"], layer["cols"]
        mask_bits = math.ceil(math.log2(math.comb(8, n))) if n < 8 else 0
        per_row = math.ceil(cols // 8 * mask_bits / 8) * 8 + math.ceil(cols // 8 * n / 8) * 8 + 2 * 16
        assert (layer["group_size"], layer["split"], layer["n_salient"]) == (cols, 1, 0)
        assert layer["honest_bits"] == rows * per_row


def test_threads_option_applies_and_restores_torch_threads(capsys, work, monkeypatch):
    from pbs2p_edge import commands

    seen = []
    monkeypatch.setattr(commands, "evaluate", lambda *a, **k: seen.append(torch.get_num_threads()) or
                        {"ppl": 2.0, "windows": 1, "tokens": 3})
    before = torch.get_num_threads()
    rc, out, err = run_cli(capsys, "eval", work.llama, "--threads", "3", "--json")
    assert (rc, err, seen) == (0, "", [3])
    assert torch.get_num_threads() == before


def test_block_size_must_be_a_multiple_of_m(capsys, work, tmp_path):
    rc, _, err = run_cli(capsys, "compress", work.llama, tmp_path / "x", "--block-size", "12",
                         "--calib", work.text, "--quiet")
    assert rc == 2 and err.startswith(ERROR_PREFIX) and "block_size" in err and err.count("\n") == 1


def test_export_from_model_dir_is_byte_identical_for_the_same_seed(capsys, tmp_path, work):
    def export(name: str, seed: int) -> bytes:
        out = tmp_path / name
        rc, stdout, err = run_cli(capsys, "export", work.opt, out, "--method", "pbs2p", "--nm", "6:8",
                                  "--calib", work.text, "--seed", seed, *CALIB)
        assert (rc, err) == (0, "")
        summary = json.loads(stdout)
        assert summary["compress"]["nm"] == "6:8" and summary["compress"]["layers"] == OPT_LINEARS
        return out.read_bytes()

    a, b, c = export("a.gguf", 3), export("b.gguf", 3), export("c.gguf", 4)
    assert a[:4] == b"GGUF" and a == b
    assert c != a  # another seed draws other calibration windows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "b.gguf", "c.gguf"]  # temp checkpoints gone


def test_bit_budget_is_the_default_and_runs_in_c(capsys, tmp_path, work):
    """No structure option: the bit budget picks a tier per linear and for the embedding; the file meets it and
    libpbs2p's perplexity of the GGUF equals PyTorch's of the checkpoint (same tiers, same windows)."""
    import gguf

    from pbs2p_edge.model.budget import model_parameters
    from pbs2p_edge.model.load import load_model

    out = tmp_path / "ck"
    rc, stdout, err = run_cli(capsys, "compress", work.llama, out, "--bpw", "24", "--calib", work.text,
                              "--nsamples", "4", "--seqlen", "32", "--tiers", "q8_0,q4_0,q3_g64,q2_g64", "--quiet",
                              "--recover", "4")
    assert (rc, err) == (0, "")
    summary = json.loads(stdout)
    assert summary["layers"] == LLAMA_LINEARS and sum(summary["tiers"].values()) == LLAMA_LINEARS
    assert 0 <= summary["recovered_blocks"] <= 2  # recovery ran on both blocks; a block keeps only a fit that helps
    assert set(summary["tiers"]) <= {"q8_0", "q4_0", "q3_g64", "q2_g64"}
    gguf_path = tmp_path / "m.gguf"
    rc, _, err = run_cli(capsys, "export", out, gguf_path)
    assert (rc, err) == (0, "")
    params = model_parameters(load_model(str(work.llama))[0])
    assert 8 * gguf_path.stat().st_size <= 24 * params * 1.01  # the budget, within 1 %
    fields = {k: f.contents() for k, f in gguf.GGUFReader(str(gguf_path)).fields.items()}
    assert sorted(fields["pbs2p.linear.tier"]) == sorted(t for t, n in summary["tiers"].items() for _ in range(n))
    rc, stdout, _ = run_cli(capsys, "inspect", gguf_path, "--json")
    assert json.loads(stdout)["tiers"] == summary["tiers"]
    from pbs2p_exporters.onnx_read import read_onnx_metadata

    rc, _, err = run_cli(capsys, "export", out, tmp_path / "m.onnx", "--onnx-flavor", "portable")
    assert (rc, err) == (0, "")  # ONNX takes the tiers too (its logits are checked in tests/exporters)
    onnx_tiers = json.loads(read_onnx_metadata(tmp_path / "m.onnx")["pbs2p.linear.tier"])
    assert sorted(onnx_tiers) == sorted(fields["pbs2p.linear.tier"])
    ppl = {}
    for source in (out, gguf_path):
        rc, stdout, err = run_cli(capsys, "eval", source, "--data", work.text, "--seqlen", "32", "--json")
        assert (rc, err) == (0, "")
        ppl[source] = json.loads(stdout)["ppl"]
    assert ppl[gguf_path] == pytest.approx(ppl[out], rel=1e-3)


# ------------------------------------------------------------------------------------------------- info


def test_info_json_describes_versions_and_native_library(capsys):
    from pbs2p_edge import runtime

    rc, out, err = run_cli(capsys, "info", "--json")
    assert (rc, err) == (0, "")
    d = json.loads(out)
    assert d["version"] == __version__ and d["torch"] == torch.__version__
    assert d["native_library"] == str(runtime.library_path().resolve()) and Path(d["native_library"]).is_absolute()
    assert d["kernel_variants"] == runtime.kernel_variants() and "ref" in d["kernel_variants"]
    assert d["available_kernels"] == runtime.available_kernels()
    assert set(d["available_kernels"]) <= set(d["kernel_variants"])
    assert d["selected_kernel"] == runtime.selected_kernel() and d["selected_kernel"] in d["available_kernels"]
    assert "error" not in d

    rc, out, _ = run_cli(capsys, "info")
    assert rc == 0 and f"selected_kernel: {d['selected_kernel']}" in out.splitlines()


# -------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad(work, llama_ckpt, llama_gguf, tiny_tokenizer):
    """Unusable inputs, built once: texts, models, corrupt checkpoints and files."""
    root = work.root / "bad"
    root.mkdir()
    (root / "empty.txt").write_text(" \n\n ")
    (root / "latin1.txt").write_bytes("Caf\xe9 au lait, s'il vous pla\xeet. ".encode("latin-1") * 40)
    (root / "short.txt").write_text("Emma Woodhouse.")
    (root / "notes.txt").write_text("a regular file, not a directory\n")
    no_packed = shutil.copytree(llama_ckpt[0], root / "ckpt-no-packed")
    (no_packed / "packed.safetensors").unlink()
    truncated = shutil.copytree(llama_ckpt[0], root / "ckpt-truncated")
    data = (truncated / "packed.safetensors").read_bytes()
    (truncated / "packed.safetensors").write_bytes(data[: len(data) // 2])
    for name, edit in [("ckpt-bad-config", lambda m: m["compress_config"].update(n="four")),
                       ("ckpt-bad-layer", lambda m: [d.update(n="four") for d in m["layers"].values()])]:
        ck = shutil.copytree(llama_ckpt[0], root / name)
        meta = json.loads((ck / "pbs2p.json").read_text())
        edit(meta)
        (ck / "pbs2p.json").write_text(json.dumps(meta))
    (shutil.copytree(llama_ckpt[0], root / "ckpt-bad-tokenizer") / "tokenizer.json").write_text("{broken")
    gguf_bytes = llama_gguf[0].read_bytes()
    (root / "truncated.gguf").write_bytes(gguf_bytes[: len(gguf_bytes) // 3])
    full = root / "hidden-not-empty"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    (root / "dir.gguf").mkdir()
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    return SimpleNamespace(root=root, text=work.text, llama=work.llama, ckpt=llama_ckpt[0], gguf=llama_gguf[0],
                           gpt2=save_hf_dir(tiny_gpt2(), tiny_tokenizer, root / "gpt2"),
                           width40=save_hf_dir(tiny_llama_width40(), tiny_tokenizer, root / "llama40"))


SMALL = ("--nsamples", "2", "--seqlen", "16", "--block-size", "64", "--quiet")

# (id, argv from (b: the `bad` namespace, out: a fresh output directory), fragment of the error line)
BAD_INPUTS = [
    ("unknown-method", lambda b, o: ["compress", b.llama, o / "ck", "--method", "gptq", "--calib", b.text, *SMALL],
     "unknown method 'gptq'"),
    ("nm-0:8", lambda b, o: ["compress", b.llama, o / "ck", "--nm", "0:8", "--calib", b.text, *SMALL],
     "N must be in 1..M=8"),
    ("nm-9:8", lambda b, o: ["compress", b.llama, o / "ck", "--nm", "9:8", "--calib", b.text, *SMALL],
     "N must be in 1..M=8"),
    ("nm-4:6", lambda b, o: ["export", b.llama, o / "m.gguf", "--nm", "4:6", "--calib", b.text, *SMALL],
     "M must be one of 2, 4, 8, 16"),
    ("nm-48", lambda b, o: ["compress", b.llama, o / "ck", "--nm", "48", "--calib", b.text, *SMALL],
     "N:M must look like 4:8"),
    ("m-not-dividing-width", lambda b, o: ["compress", b.width40, o / "ck", "--nm", "4:16", "--calib", b.text,
                                           *SMALL], "M=16 does not divide the input width 40"),
    ("missing-model", lambda b, o: ["compress", b.root / "no-such-model", o / "ck", "--calib", b.text, *SMALL],
     "no such file or directory"),
    ("unsupported-arch", lambda b, o: ["compress", b.gpt2, o / "ck", "--calib", b.text, *SMALL],
     "unsupported architecture 'gpt2'"),
    ("checkpoint-as-compress-source", lambda b, o: ["compress", b.ckpt, o / "ck", "--calib", b.text, *SMALL],
     "is a compressed checkpoint"),
    ("gguf-as-compress-source", lambda b, o: ["compress", b.gguf, o / "ck", "--calib", b.text, *SMALL],
     "is a pbs2p GGUF"),
    ("gguf-eval-seqlen-over-context", lambda b, o: ["eval", b.gguf, "--data", b.text, "--seqlen", "1000"],
     "exceeds the model's context_length 256"),
    ("gguf-eval-too-short", lambda b, o: ["eval", b.gguf, "--data", b.root / "short.txt", "--seqlen", "16"],
     "too short for one evaluation window"),
    ("gguf-eval-on-cuda", lambda b, o: ["eval", b.gguf, "--data", b.text, "--device", "cuda"], "on the CPU"),
    ("run-prompt-over-ctx", lambda b, o: ["run", b.gguf, "-p", "Emma Woodhouse, handsome, clever, and rich",
                                          "--ctx", "4", "-t", "1"], "longer than the context"),
    ("run-missing-model", lambda b, o: ["run", b.root / "nothing.gguf", "-p", "Emma"], "no such file or directory"),
    ("run-not-pbs2p", lambda b, o: ["run", b.root / "notes.txt", "-p", "Emma"], "GGUF"),
    ("run-missing-prompt-file", lambda b, o: ["run", b.gguf, "-f", b.root / "no-prompt.txt"], "no-prompt.txt"),
    ("run-bad-top-p", lambda b, o: ["run", b.gguf, "-p", "Emma", "--top-p", "1.5"], "--top-p: must be in (0, 1]"),
    ("run-zero-top-p", lambda b, o: ["run", b.gguf, "-p", "Emma", "--top-p", "0"], "--top-p: must be in (0, 1]"),
    ("run-nan-temp", lambda b, o: ["run", b.gguf, "-p", "Emma", "--temp", "nan"], "--temp"),
    ("run-no-prompt", lambda b, o: ["run", b.gguf], "-p/--prompt -f/--file"),
    ("run-two-prompts", lambda b, o: ["run", b.gguf, "-p", "Emma", "-f", b.text], "not allowed with"),
    ("run-empty-prompt", lambda b, o: ["run", b.gguf, "-p", ""], "the prompt is empty"),
    *[(f"{name}-{cmd}", (lambda n, c: lambda b, o: {"inspect": ["inspect", b.root / n],
                                                    "eval": ["eval", b.root / n, "--data", b.text, "--seqlen", "16"],
                                                    "export": ["export", b.root / n, o / "m.gguf"]}[c])(name, cmd), msg)
      for name, msg in [("ckpt-bad-config", "bad compress_config (N:M must be whole numbers"),
                        ("ckpt-bad-layer", "bad layer metadata")] for cmd in ("inspect", "eval", "export")],
    ("ckpt-bad-tokenizer-eval", lambda b, o: ["eval", b.root / "ckpt-bad-tokenizer", "--data", b.text, "--seqlen", "16"],
     "unreadable tokenizer"),
    ("ckpt-bad-tokenizer-export", lambda b, o: ["export", b.root / "ckpt-bad-tokenizer", o / "m.gguf"],
     "unreadable tokenizer"),
    ("export-checkpoint-with-nm", lambda b, o: ["export", b.ckpt, o / "m.gguf", "--nm", "2:4"], "already compressed: --nm"),
    ("export-checkpoint-with-bpw", lambda b, o: ["export", b.ckpt, o / "m.gguf", "--bpw", "3"], "already compressed: --bpw"),
    ("export-checkpoint-with-recover-codes", lambda b, o: ["export", b.ckpt, o / "m.gguf", "--recover-codes", "on"],
     "already compressed: --recover-codes"),
    ("export-checkpoint-with-dtype", lambda b, o: ["export", b.ckpt, o / "m.gguf", "--dtype", "bfloat16"],
     "already compressed: --dtype bfloat16"),
    ("unknown-dtype", lambda b, o: ["compress", b.llama, o / "ck", "--dtype", "int8", *SMALL], "--dtype: invalid choice"),
    ("run-endless-prompt-file", lambda b, o: ["run", b.gguf, "-f", "/dev/zero"], "larger than 256 MiB"),
    ("run-ctx-over-int32", lambda b, o: ["run", b.gguf, "-p", "Emma", "--ctx", str(2**31)], "--ctx: must be at most"),
    ("seed-over-64-bits", lambda b, o: ["export", b.llama, o / "m.gguf", "--seed", str(2**70)], "--seed: must be at most"),
    ("negative-seed", lambda b, o: ["compress", b.llama, o / "ck", "--seed", "-1", *SMALL], "--seed: must be at least 0"),
    ("empty-text", lambda b, o: ["compress", b.llama, o / "ck", "--calib", b.root / "empty.txt", *SMALL], "is empty"),
    ("not-utf8", lambda b, o: ["compress", b.llama, o / "ck", "--calib", b.root / "latin1.txt", *SMALL],
     "is not UTF-8"),
    ("unknown-corpus", lambda b, o: ["compress", b.llama, o / "ck", "--calib", "austen:middlemarch", *SMALL],
     "unknown"),
    ("too-short-calib", lambda b, o: ["compress", b.llama, o / "ck", "--calib", b.root / "short.txt", *SMALL],
     "too short for one calibration window"),
    ("too-short-eval", lambda b, o: ["eval", b.llama, "--data", b.root / "short.txt", "--seqlen", "16"],
     "too short for one evaluation window"),
    ("nsamples-0", lambda b, o: ["compress", b.llama, o / "ck", "--calib", b.text, "--nsamples", "0"],
     "--nsamples: must be at least 1"),
    ("seqlen-over-positions", lambda b, o: ["eval", b.llama, "--data", b.text, "--seqlen", "1000"],
     "exceeds this model's max_position_embeddings 256"),
    ("unknown-device", lambda b, o: ["eval", b.llama, "--data", b.text, "--seqlen", "16", "--device", "tpu9"],
     "device"),
    ("out-dir-missing", lambda b, o: ["compress", b.llama, o / "nowhere" / "ck", "--calib", b.text, *SMALL],
     "does not exist"),
    ("export-dir-missing", lambda b, o: ["export", b.ckpt, o / "nowhere" / "m.gguf"], "does not exist"),
    ("export-under-a-file", lambda b, o: ["export", b.ckpt, b.root / "notes.txt" / "m.gguf"], "is not a directory"),
    ("compress-under-a-file", lambda b, o: ["compress", b.llama, b.root / "notes.txt" / "ck", "--calib", b.text,
                                            *SMALL], "is not a directory"),
    ("compress-over-foreign-dir", lambda b, o: ["compress", b.llama, b.root / "hidden-not-empty", "--calib", b.text,
                                                *SMALL], "refusing to replace it"),
    ("unknown-extension", lambda b, o: ["export", b.ckpt, o / "m.bin"], "unknown output extension '.bin'"),
    ("export-over-a-dir", lambda b, o: ["export", b.ckpt, b.root / "dir.gguf"], "is a directory"),
    ("eval-ckpt-no-packed", lambda b, o: ["eval", b.root / "ckpt-no-packed", "--data", b.text, "--seqlen", "16"],
     "packed.safetensors is missing"),
    ("export-ckpt-no-packed", lambda b, o: ["export", b.root / "ckpt-no-packed", o / "m.gguf"],
     "packed.safetensors is missing"),
    ("inspect-ckpt-no-packed", lambda b, o: ["inspect", b.root / "ckpt-no-packed"], "packed.safetensors is missing"),
    ("eval-ckpt-truncated", lambda b, o: ["eval", b.root / "ckpt-truncated", "--data", b.text, "--seqlen", "16"],
     "corrupt safetensors file"),
    ("export-ckpt-truncated", lambda b, o: ["export", b.root / "ckpt-truncated", o / "m.gguf"],
     "corrupt safetensors file"),
    ("inspect-not-gguf", lambda b, o: ["inspect", b.root / "notes.txt"],
     "neither a GGUF file, an .onnx file nor a checkpoint"),
    ("inspect-missing", lambda b, o: ["inspect", b.root / "nothing.gguf"], "no such file or directory"),
    ("inspect-truncated-gguf", lambda b, o: ["inspect", b.root / "truncated.gguf"], "not a readable GGUF file"),
    *[(f"{what}-{cmd}", (lambda c, p: lambda b, o: {"inspect": ["inspect", p(b)], "run": ["run", p(b), "-p", "Emma"],
                                                      "eval": ["eval", p(b), "--data", b.text, "--seqlen", "16"],
                                                      "export": ["export", p(b), o / "m.gguf"]}[c])(cmd, path), msg)
      for what, path, msg in [("device", lambda b: "/dev/zero", "/dev/zero: not a regular file (a character device)"),
                              ("link-loop", lambda b: b.root / "loop-a", "loop-a: too many levels of symbolic links")]
      for cmd in ("inspect", "run", "eval", "export")],
    ("no-sub-command", lambda b, o: [], "required"),
    ("budget-with-method", lambda b, o: ["compress", b.llama, o / "ck", "--bpw", "30", "--method", "rtn",
                                         "--calib", b.text, "--quiet"], "--method sets the binary structure"),
    ("budget-too-small", lambda b, o: ["compress", b.llama, o / "ck", "--bpw", "2", "--calib", b.text,
                                       "--nsamples", "2", "--seqlen", "16", "--quiet"], "below the smallest file"),
    ("budget-bad-size", lambda b, o: ["export", b.llama, o / "m.gguf", "--size", "12XB"], "expected a size"),
    ("budget-bad-tier", lambda b, o: ["compress", b.llama, o / "ck", "--tiers", "q4_0,q5_k"], "expected tiers among"),
    ("budget-tiers-too-big", lambda b, o: ["compress", b.llama, o / "ck", "--bpw", "5", "--tiers", "q8_0", *SMALL[:4],
                                           "--calib", b.text, "--quiet"], "below the smallest file"),
]


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("argv,fragment", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_error_line_and_exit_2(capsys, tmp_path, bad, argv, fragment):
    args = argv(bad, tmp_path)
    before_out, before_bad = _tree(tmp_path), _tree(bad.root)
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), err
    assert fragment in lines[0]
    assert out == ""
    assert _tree(tmp_path) == before_out and _tree(bad.root) == before_bad  # nothing written, nothing left


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes through chmod; the under-a-file cases cover an unwritable output")
def test_unwritable_output_directory(capsys, tmp_path, bad):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, _, err = run_cli(capsys, "export", bad.ckpt, locked / "m.gguf")
        assert rc == 2 and err.splitlines() == [err.strip()] and "is not writable" in err
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_cuda_device_without_cuda_is_a_config_error(capsys, bad):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc, _, err = run_cli(capsys, "eval", bad.llama, "--data", bad.text, "--device", "cuda")
    assert rc == 2 and err.startswith(ERROR_PREFIX) and "CUDA is not available" in err


# ------------------------------------------------------------------------------------------- subprocess


def console_script() -> list[str]:
    """The installed `pbs2p-edge` entry point (the same main() as `python -m pbs2p_edge.cli`)."""
    exe = shutil.which("pbs2p-edge")
    return [exe] if exe else [sys.executable, "-m", "pbs2p_edge.cli"]


def run_script(*argv, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    for key in [k for k, v in env.items() if v is None]:
        full_env.pop(key)
    return subprocess.run([*console_script(), *map(str, argv)], capture_output=True, text=True, env=full_env,
                          timeout=120)


def test_console_script_error_is_exit_2_and_one_stderr_line(bad, tmp_path):
    """Without --quiet: the model is loaded before the text is found too short, and still nothing but
    the error line reaches stderr (no transformers progress bar, no warning, no traceback)."""
    p = run_script("compress", bad.llama, tmp_path / "ck", "--calib", bad.root / "short.txt",
                   "--nsamples", "2", "--seqlen", "16")
    assert p.returncode == 2
    assert p.stderr.splitlines() == [p.stderr.rstrip("\n")]
    assert p.stderr.startswith(ERROR_PREFIX + "text too short for one calibration window")
    assert p.stdout == "" and not any(tmp_path.iterdir())


def test_console_script_info_reports_an_unloadable_native_library(tmp_path):
    p = run_script("info", "--json", PBS2P_LIBRARY=None, PBS2P_KERNEL=None)
    assert (p.returncode, p.stderr) == (0, "")
    ok = json.loads(p.stdout)
    assert ok["native_library"] and "error" not in ok

    p = run_script("info", "--json", PBS2P_LIBRARY=str(tmp_path / "libmissing.so"))
    assert (p.returncode, p.stderr) == (0, "")
    d = json.loads(p.stdout)
    assert d["native_library"] is None and d["selected_kernel"] is None and d["kernel_variants"] == []
    assert "PBS2P_LIBRARY" in d["error"] and d["version"] == __version__

    not_a_library = tmp_path / "libpbs2p.so"
    not_a_library.write_text("not an ELF file\n")
    d = json.loads(run_script("info", "--json", PBS2P_LIBRARY=str(not_a_library)).stdout)
    assert d["native_library"] is None and "cannot load library" in d["error"]

    d = json.loads(run_script("info", "--json", PBS2P_KERNEL="no-such-variant").stdout)
    assert d["native_library"] == ok["native_library"] and d["kernel_variants"] == ok["kernel_variants"]
    assert d["selected_kernel"] is None and "no-such-variant" in d["error"]

    p = run_script("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"pbs2p-edge {__version__}"


def test_budget_recovery_default_follows_the_budget(monkeypatch, capsys, tmp_path):
    """Without --recover, the budget path recovers below RECOVER_BELOW_BPW (a --size counts by its bits per
    parameter) and not above; --recover wins; the binary path never recovers unless asked."""
    from pbs2p_edge import commands
    from pbs2p_edge.algo.config import RECOVER_BELOW_BPW, RECOVER_STEPS, default_recover_steps

    assert default_recover_steps(RECOVER_BELOW_BPW - 0.5) == RECOVER_STEPS and default_recover_steps(RECOVER_BELOW_BPW) == 0
    seen = []
    monkeypatch.setattr(commands, "compress", lambda *a, **kw: seen.append((a[2], kw)) or {})
    for argv in (["--bpw", "3"], ["--bpw", "3", "--recover", "5"], [], ["--nm", "4:8"], ["--nm", "4:8", "--recover", "7"]):
        assert cli.main(["compress", "m", str(tmp_path / "ck"), *argv]) == 0
    capsys.readouterr()
    (c3, k3), (c5, k5), (cd, kd), (cb, kb), (cr, kr) = seen
    assert k3["bpw"] == 3 and k3["recover"] is None  # compress resolves None by the budget (--size known only there)
    assert k5["recover"] == 5 and kd["bpw"] == 5 and kd["recover"] is None
    assert "recover" not in kb and cb.recover_steps == 0 and cr.recover_steps == 7


@pytest.mark.parametrize("command", ["inspect", "eval", "run"])
def test_corrupt_gguf_files_are_one_error_line_and_exit_2(capsys, bad, command):
    """Every broken copy of a valid file, through inspect, eval and run: exit 2, one line on stderr, no traceback,
    nothing on stdout (none is accepted as a valid model)."""
    root = bad.root / f"corrupt-{command}"
    root.mkdir()
    for name, path in corrupt_ggufs(bad.gguf, root).items():
        argv = {"inspect": ["inspect", path], "eval": ["eval", path, "--data", bad.text, "--seqlen", "16"],
                "run": ["run", path, "-p", "Emma", "-n", "2"]}[command]
        rc, stdout, err = run_cli(capsys, *argv)
        assert (rc, stdout) == (2, ""), (name, rc, stdout, err)
        assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("pbs2p-edge: error: "), (name, err)


@pytest.mark.parametrize("command", ["inspect", "eval", "export"])
def test_corrupt_checkpoints_are_one_error_line_and_exit_2(capsys, bad, command, tmp_path):
    """Every broken copy of a valid checkpoint, through inspect, eval and export (and the Python API's
    load_checkpoint): exit 2 with one line, nothing on stdout, nothing written; the API raises FormatError or
    ModelError."""
    from pbs2p_edge.checkpoint import load_checkpoint
    from pbs2p_edge.errors import FormatError, ModelError

    root = bad.root / f"corrupt-ckpt-{command}"
    root.mkdir()
    wrong = []
    for name, path in corrupt_checkpoints(bad.ckpt, root).items():
        out = tmp_path / f"{name}.gguf"
        argv = {"inspect": ["inspect", path], "eval": ["eval", path, "--data", bad.text, "--seqlen", "16"],
                "export": ["export", path, out]}[command]
        rc, stdout, err = run_cli(capsys, *argv)
        if (rc, stdout) != (2, "") or err.count("\n") != 1 or not err.startswith("pbs2p-edge: error: "):
            wrong.append((name, rc, stdout[:80], err[-300:]))
        assert not [p for p in tmp_path.iterdir()], name
        if command == "inspect":
            with pytest.raises((FormatError, ModelError)):
                load_checkpoint(path)
    assert wrong == []


def test_a_reader_that_goes_away_is_not_an_error(bad):
    """`pbs2p-edge inspect FILE --json | head -c 10`: no error line, exit 0 or 141 (128 + SIGPIPE)."""
    proc = subprocess.Popen([sys.executable, "-m", "pbs2p_edge.cli", "inspect", str(bad.gguf), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141) and err == ""
