"""Tests of the pbs2p-run CLI (native/cli): greedy ids equal the Python runtime's, tokenize equals Hugging Face,
perplexity equals the PyTorch fake-quant model's, seeded sampling repeats, valid JSON, one-line errors with exit 2."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
import torch
from checkpoint.tiny_compressed import compress, tiny_model

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.calib.tokens import encode
from pbs2p_edge.checkpoint import save_checkpoint, to_fake_quant_model
from pbs2p_edge.model.perplexity import perplexity
from pbs2p_edge.runtime.library import find_cli
from pbs2p_edge.runtime.model import Model
from pbs2p_exporters.gguf_export import export_gguf

PROMPT = "Emma Woodhouse, handsome, clever"
CORPUS = ("Emma Woodhouse, handsome, clever, and rich, had lived nearly twenty-one years in the world; "
          "a single man in possession of a good fortune must be in want of a wife.\n") * 6
PPL_REL_TOL = 1e-4  # |C - torch| / torch; measured 1.6e-8 (float32 logits, float16-exact weights on both sides)
TIMEOUT = 120


BINARY = find_cli()
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="no pbs2p-run binary: set PBS2P_RUN, put pbs2p-run on PATH, or build it with "
    "cmake -S . -B build/dev && cmake --build build/dev")


def run(*args, check=True):
    proc = subprocess.run([BINARY, *map(str, args)], capture_output=True, timeout=TIMEOUT)
    if check:
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


def run_json(*args):
    proc = run(*args, "--json")
    return json.loads(proc.stdout)  # must be strict, valid JSON


def utf8_per_byte_replace(data: bytes) -> str:
    """The documented --json rule: well-formed UTF-8 sequences kept, every other byte -> U+FFFD (one per byte)."""
    out, i = [], 0
    while i < len(data):
        for k in (1, 2, 3, 4):
            try:
                ch = data[i:i + k].decode("utf-8")
            except UnicodeDecodeError:
                continue
            if len(ch) == 1:
                out.append(ch)
                i += k
                break
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_tokenizer):
    """(checkpoint dir, GGUF path) of the tiny untied Llama (context 128) with its embedding and head rounded to
    float16 first, so the GGUF (F16 matrices) and the fake-quant PyTorch model hold exactly the same weights."""
    root = tmp_path_factory.mktemp("pbs2p_run")
    model = tiny_model("llama", tie=False)
    with torch.no_grad():
        for p in (model.model.embed_tokens.weight, model.lm_head.weight):
            p.copy_(p.half().float())
    ck = root / "ck"
    save_checkpoint(ck, model, copy.deepcopy(tiny_tokenizer), compress(model), CompressConfig(n=4, m=8), {},
                    {"model_id": "tiny-llama"})
    return ck, export_gguf(ck, root / "tiny.gguf")


@pytest.fixture(scope="module")
def model_path(exported):
    return exported[1]


def test_greedy_json_equals_python_runtime(model_path, tiny_tokenizer):
    out = run_json("-m", model_path, "-p", PROMPT, "-n", 24, "-t", 1, "--no-eos")
    assert out["prompt_ids"] == tiny_tokenizer(PROMPT)["input_ids"]
    assert out["prompt_tokens"] == len(out["prompt_ids"])
    with Model(model_path) as m:
        want = m.generate_greedy(out["prompt_ids"], 24)
    assert out["tokens"] == want
    assert out["n_generated"] == 24 and out["stop_reason"] == "length"
    assert out["text"] == utf8_per_byte_replace(_token_bytes(tiny_tokenizer, want))
    assert out["threads"] == 1 and out["ctx"] == 128 and out["model"] == str(model_path) and out["kv"] == "f16"
    assert out["kernel"] in ("ref", "avx2", "avx512", "neon")
    for key in ("prompt_seconds", "decode_seconds", "prompt_tokens_per_second", "decode_tokens_per_second"):
        assert out[key] > 0, key


def _token_bytes(tokenizer, ids) -> bytes:
    """The bytes of byte-level BPE ids, from the tokenizer's vocabulary strings (GPT-2 byte <-> unicode table)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    inverse = {c: b for b, c in bytes_to_unicode().items()}
    return bytes(inverse[c] for tok in tokenizer.convert_ids_to_tokens(ids) for c in tok)


def test_text_mode_streams_the_same_bytes(model_path, tiny_tokenizer):
    js = run_json("-m", model_path, "-p", PROMPT, "-n", 16, "-t", 2, "--no-eos")
    proc = run("-m", model_path, "-p", PROMPT, "-n", 16, "-t", 2, "--no-eos")
    assert proc.stdout == _token_bytes(tiny_tokenizer, js["tokens"]) + b"\n"
    err = proc.stderr.decode().splitlines()
    assert len(err) == 1 and "tokens/s" in err[0] and "stop: length" in err[0]


def test_prompt_file_equals_prompt_text(model_path, tmp_path):
    f = tmp_path / "prompt.txt"
    f.write_bytes(PROMPT.encode())
    a = run_json("-m", model_path, "-f", f, "-n", 8, "-t", 1)
    b = run_json("-m", model_path, "-p", PROMPT, "-n", 8, "-t", 1)
    assert a["prompt_ids"] == b["prompt_ids"] and a["tokens"] == b["tokens"]


def test_context_stop(model_path, tiny_tokenizer):
    n_prompt = len(tiny_tokenizer(PROMPT)["input_ids"])
    out = run_json("-m", model_path, "-p", PROMPT, "-n", 64, "--ctx", n_prompt + 3, "--no-eos", "-t", 1)
    assert out["stop_reason"] == "context"
    assert out["n_generated"] == 3 and len(out["tokens"]) == 3  # prompt + generated == n_ctx


def test_seeded_sampling_is_reproducible(model_path):
    args = ("-m", model_path, "-p", PROMPT, "-n", 32, "-t", 1, "--no-eos", "--temp", 1.5, "--top-k", 200,
            "--top-p", 0.98)
    a = run_json(*args, "--seed", 7)
    b = run_json(*args, "--seed", 7)
    c = run_json(*args, "--seed", 8)
    greedy = run_json("-m", model_path, "-p", PROMPT, "-n", 32, "-t", 1, "--no-eos")
    assert a["tokens"] == b["tokens"] and a["text"] == b["text"]
    assert a["tokens"] != c["tokens"]
    assert a["tokens"] != greedy["tokens"]
    k1 = run_json("-m", model_path, "-p", PROMPT, "-n", 32, "-t", 1, "--no-eos", "--temp", 1.5, "--top-k", 1,
                  "--seed", 4)
    assert k1["tokens"] == greedy["tokens"]  # top-k 1 is greedy whatever the temperature and seed


def test_stop_at_eos(model_path, tiny_tokenizer):
    """Without --no-eos the output is the --no-eos output cut just after the first eos (reported and counted)."""
    eos = tiny_tokenizer.eos_token_id
    args = ("-m", model_path, "-p", PROMPT, "-n", 100, "-t", 1, "--temp", 3, "--json")
    hits = 0
    for seed in range(6):  # fixed seeds: at temperature 3 several of them draw eos within 100 tokens
        free = json.loads(run(*args, "--seed", seed, "--no-eos").stdout)
        stopped = json.loads(run(*args, "--seed", seed).stdout)
        if eos in free["tokens"]:
            hits += 1
            cut = free["tokens"].index(eos) + 1
            assert stopped["tokens"] == free["tokens"][:cut] and stopped["n_generated"] == cut
            assert stopped["stop_reason"] == "eos"
        else:
            assert stopped["tokens"] == free["tokens"] and stopped["stop_reason"] == "length"
    assert hits >= 2


def test_tokenize_equals_hugging_face(model_path, tiny_tokenizer, tmp_path):
    text = ("  Emma\tWoodhouse,\n\nhandsome   clever \u00e9t\u00e9 na\u00efve \u2014 \u201cquoted\u201d "
            "\U0001f600 \u6f22\u5b57 0123 \r\n trailing  ")
    f = tmp_path / "text.txt"
    f.write_bytes(text.encode())
    ids = json.loads(run("--tokenize", f, "-m", model_path).stdout)
    assert ids == tiny_tokenizer(text)["input_ids"]
    assert len(ids) > 20


def test_perplexity_equals_pytorch(exported, tiny_tokenizer, tmp_path):
    ck, path = exported
    text = CORPUS
    f = tmp_path / "corpus.txt"
    f.write_bytes(text.encode())
    model, _ = to_fake_quant_model(ck)
    ids = encode(tiny_tokenizer, text)
    for ctx, max_windows in ((64, None), (32, 3)):
        want = perplexity(model, ids, ctx, max_windows)
        args = ("-m", path, "--perplexity", f, "--ctx", ctx, "-t", 2)
        got = run_json(*args, *(("--max-windows", max_windows) if max_windows else ()))
        assert got["windows"] == want.windows and got["tokens"] == want.tokens and got["ctx"] == ctx
        assert want.windows == (max_windows or len(ids) // ctx) and want.windows >= 3
        assert abs(got["ppl"] - want.ppl) <= PPL_REL_TOL * want.ppl, (got, want)
        assert abs(got["nll"] - want.nll) <= PPL_REL_TOL * want.nll, (got, want)
        assert got["seconds"] > 0


def test_json_strings_are_escaped(model_path, tmp_path):
    """The model path is echoed in the JSON: quotes, backslashes, control bytes and invalid UTF-8 in it must give
    valid JSON that decodes to the documented replacement."""
    name = b'odd "q" \\ \t\x01\x7f caf\xc3\xa9 \xff\xc3 \xed\xa0\x80 \xf0\x9f\x98\x80.gguf'
    odd = os.path.join(os.fsencode(tmp_path), name)
    os.symlink(os.fsencode(model_path), odd)
    proc = subprocess.run([os.fsencode(BINARY), b"-m", odd, b"-p", PROMPT.encode(), b"-n", b"2", b"--json"],
                          capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == utf8_per_byte_replace(odd)
    assert b"\t" not in proc.stdout and b"\x01" not in proc.stdout and b"\xff" not in proc.stdout


def _not_pbs2p_gguf(path: Path) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.context_length", 128)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return path


@pytest.mark.parametrize("case", ["missing model", "directory", "not a GGUF", "not pbs2p", "prompt longer than ctx",
                                  "perplexity text too short", "missing text file", "bad top-p", "unknown option",
                                  "bad integer", "two modes", "no mode", "bad kv"])
def test_errors_exit_2_with_one_line(case, model_path, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a GGUF file")
    short = tmp_path / "short.txt"
    short.write_bytes(b"Emma")
    args = {
        "missing model": ("-m", tmp_path / "absent.gguf", "-p", "hi"),
        "directory": ("-m", tmp_path, "-p", "hi"),
        "not a GGUF": ("-m", junk, "-p", "hi"),
        "not pbs2p": ("-m", _not_pbs2p_gguf(tmp_path / "plain.gguf"), "-p", "hi"),
        "prompt longer than ctx": ("-m", model_path, "-p", PROMPT * 4, "--ctx", 8),
        "perplexity text too short": ("-m", model_path, "--perplexity", short, "--ctx", 32),
        "missing text file": ("-m", model_path, "--perplexity", tmp_path / "absent.txt"),
        "bad top-p": ("-m", model_path, "-p", "hi", "--top-p", "1.5"),
        "unknown option": ("-m", model_path, "-p", "hi", "--frobnicate"),
        "bad integer": ("-m", model_path, "-p", "hi", "-n", "12x"),
        "two modes": ("-m", model_path, "-p", "hi", "--tokenize", short),
        "no mode": ("-m", model_path),
        "bad kv": ("-m", model_path, "-p", "hi", "--kv", "q8_0"),
    }[case]
    proc = run(*args, check=False)
    lines = proc.stderr.decode(errors="replace").splitlines()
    assert proc.returncode == 2, (case, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("pbs2p-run: "), lines
    assert proc.stdout == b""
    if case == "prompt longer than ctx":
        assert "longer than the context" in lines[0]
    if case == "perplexity text too short":
        assert "too short" in lines[0]
    if case == "bad kv":
        assert lines[0] == "pbs2p-run: --kv expects f16 or f32, got 'q8_0'"


def test_a_prompt_that_cannot_fit_is_refused_before_the_load(model_path, tmp_path):
    """The prompt is checked against the context from the file's header (pbs2p_model_peek) before any weight is
    read, as a 7B model's layers take seconds to prepare: with a NaN in a norm of the file, a prompt too long for
    --ctx is refused as too long, a short one by the load."""
    t = next(t for t in gguf.GGUFReader(str(model_path)).tensors if t.name == "output_norm.weight")
    data = bytearray(model_path.read_bytes())
    data[int(t.data_offset):int(t.data_offset) + 4] = b"\x00\x00\xc0\x7f"  # float32 NaN
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    long = run("-m", bad, "-p", PROMPT * 4, "--ctx", 8, check=False)
    assert long.returncode == 2 and b"longer than the context" in long.stderr, long.stderr
    short = run("-m", bad, "-p", "hi", "--ctx", 8, check=False)
    assert short.returncode == 2 and b"is NaN" in short.stderr, short.stderr


def test_kv_f32_runs_the_float32_cache(model_path):
    out = run_json("-m", model_path, "-p", PROMPT, "-n", 24, "-t", 1, "--no-eos", "--kv", "f32")
    assert out["kv"] == "f32"
    with Model(model_path, kv="f32") as m:
        assert out["tokens"] == m.generate_greedy(out["prompt_ids"], 24)


def test_both_clis_agree_on_temperature_and_text_files(model_path, tmp_path):
    """pbs2p-run and `pbs2p-edge run` give the same answer: --temp <= 0 is greedy (the sampler's rule), and a
    prompt, corpus or tokenize file that is not UTF-8 is refused with the same one-line reason, exit 2."""
    edge = [sys.executable, "-m", "pbs2p_edge.cli", "run", str(model_path)]
    for temp in ("0", "-1"):
        c = run_json("-m", model_path, "-p", PROMPT, "-n", 8, "-t", 1, "--no-eos", "--temp", temp)
        p = subprocess.run([*edge, "-p", PROMPT, "-n", "8", "-t", "1", "--no-eos", "--temp", temp, "--json"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["tokens"] == c["tokens"]
    with Model(model_path) as m:
        assert c["tokens"] == m.generate_greedy(c["prompt_ids"], 8)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Emma \xff\xfe was")
    for flag in ("-f", "--perplexity", "--tokenize"):
        proc = run("-m", model_path, flag, bad, check=False)
        assert (proc.returncode, proc.stdout) == (2, b"")
        assert proc.stderr.decode().endswith(f"{bad} is not UTF-8 (byte 5: 0xff)\n") and proc.stderr.count(b"\n") == 1
    p = subprocess.run([*edge, "-f", str(bad)], capture_output=True, text=True, timeout=TIMEOUT)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == f"pbs2p-edge: error: prompt file {bad} is not UTF-8 (byte 5: 0xff)\n"


def test_help_and_version():
    h = run("--help")
    assert b"--perplexity" in h.stdout and b"(n_generated - 1) / decode seconds" in h.stdout
    from pbs2p_edge.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    named = re.findall(rb"pbs2p-edge ([a-z][a-z-]*)", h.stdout)
    assert named and all(c.decode() in commands for c in named)  # no command that no longer exists
    v = run("--version")
    assert v.stdout.startswith(b"pbs2p-run 0.1.0")
