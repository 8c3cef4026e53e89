"""Tests of runtime.model (libpbs2p's C Llama forward from our GGUF): logits equal the PyTorch fake-quant model's;
generation, sampling, perplexity and tokenization through the C library agree with PyTorch and Hugging Face."""

import copy
import dataclasses
import functools
import re
import struct
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from checkpoint.tiny_compressed import compress, tiny_model
from int8_acts import emulate_int8_activations

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import save_checkpoint, to_fake_quant_model
from pbs2p_edge.errors import ConfigError, DataError, NativeError
from pbs2p_edge.model.perplexity import perplexity
from pbs2p_edge.runtime._ffi import ffi, lib
from pbs2p_edge.runtime.model import GenerateResult, Model as NativeModel
from pbs2p_edge.runtime.gguf_file import GGUFFile
from pbs2p_edge.runtime.kernels import select_kernel, selected_kernel
from pbs2p_exporters.gguf_export import export_gguf

# These tests hold libpbs2p to PyTorch's float32 keys and values: the float32 KV cache (the float16 default is tested
# against it in test_model.py's test_f16_kv_cache_*).
Model = functools.partial(NativeModel, kv="f32")

PROMPT = [5, 17, 200, 3, 99, 42, 7, 311, 64, 128, 0, 250]  # 12 tokens < vocab 320
EXTRA = [13, 77, 301]
# max |C - torch| <= REL_TOL * (max - min of the torch logits). The packed layers and the block-type head multiply
# int8 activations in C, which the reference emulates (int8_acts.py) but cannot round identically: an activation at a
# rounding boundary of its code may round the other way after float32 differences of order 1e-7, and that code's step
# (1/127 of its block's largest value) moves the logits by up to 4.7e-4 of their range (measured; 2e-7 without such
# flips).
REL_TOL = 2e-3


def _random(arch: str, tie: bool, **overrides):
    """tiny_model(arch) (hidden 64, 2 layers, 4 heads, vocab 320; Llama: 2 KV heads) with config overrides."""
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(tiny_model(arch, tie=tie).config)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a forgotten one shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model


def _llama(tie: bool, **overrides):
    return _random("llama", tie, **overrides)


def _opt(tie: bool, **overrides):
    """OPT: LayerNorm weights and biases, q/k/v/out/fc1/fc2 biases, learned positions (all random)."""
    return _random("opt", tie, **overrides)


def _export(root, tokenizer, name, model, embed_type="f16", **kw):
    ck = root / name
    save_checkpoint(ck, model, copy.deepcopy(tokenizer), compress(model, **kw), CompressConfig(n=4, m=8), {},
                    {"model_id": name})
    return ck, export_gguf(ck, root / f"{name}.gguf", embed_type=embed_type)


def _reference(ck, path):
    """The fake-quant PyTorch model with token_embd / position_embd / output exactly as the GGUF stores them, and the
    head's input quantized as libpbs2p quantizes it when the head is in a block type (int8_acts.py)."""
    model, _ = to_fake_quant_model(ck)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    params = [("token_embd.weight", model.get_input_embeddings().weight),
              ("output.weight", model.get_output_embeddings().weight)]
    if model.config.model_type == "opt":
        params.append(("position_embd.weight", model.model.decoder.embed_positions.weight))
    with torch.no_grad():
        for gname, param in params:
            if gname in tensors:
                t = tensors[gname]
                w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(param.shape)
                param.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
    emulate_int8_activations(model, ck, path)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_tokenizer):
    """name -> (checkpoint dir, GGUF path, PyTorch reference model)."""
    root = tmp_path_factory.mktemp("model")
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    builds = {
        "tied": (_llama(True), "f16", {}),
        "untied": (_llama(False, attention_bias=True, mlp_bias=True, rope_parameters=rope), "f16",
                   {"n_salient": 5, "split": 2}),
        "q8": (_llama(False), "q8_0", {}),
        # Qwen2: q/k/v biases (random), keys under "qwen2."; Mistral: a sliding window shorter than PROMPT
        "qwen2": (_random("qwen2", True), "f16", {}),
        "qwen2_window": (_random("qwen2", False, use_sliding_window=True, sliding_window=5, max_window_layers=0,
                                 layer_types=["sliding_attention"] * 2), "f16", {}),
        "mistral": (_random("mistral", False, sliding_window=5), "f16", {}),
        # Gemma 3: (1 + w) norms before and after each sublayer, QK-norm, GeGLU, embedding x sqrt(D), sliding (window
        # 5, shorter than PROMPT) and global layers with their own RoPE bases, attention scale 24^-0.5
        "gemma3": (_random("gemma3_text", True), "f16", {}),
        "opt_tied": (_opt(True), "f16", {}),
        "opt_untied": (_opt(False), "f16", {"n_salient": 5, "split": 2}),
        "opt_post_ln": (_opt(False, do_layer_norm_before=False, activation_function="gelu"), "f16", {}),
        "opt_q8": (_opt(True, activation_function="gelu_new"), "q8_0", {}),
    }
    out = {}
    for name, (model, embed_type, kw) in builds.items():
        ck, path = _export(root, tiny_tokenizer, name, model, embed_type, **kw)
        out[name] = (ck, path, _reference(ck, path))
    return out


def _torch_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _assert_close(got, want):
    tol = REL_TOL * float(want.max() - want.min())
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= tol, (np.abs(got - want).max(), tol)


OPT_NAMES = ["opt_tied", "opt_untied", "opt_post_ln", "opt_q8"]
LLAMA_LAYOUT_NAMES = ["qwen2", "qwen2_window", "mistral", "gemma3"]


@pytest.mark.parametrize("name", ["tied", "untied", "q8", *LLAMA_LAYOUT_NAMES, *OPT_NAMES])
def test_logits_match_pytorch(exported, name):
    ck, path, ref = exported[name]
    with Model(path) as m:
        _assert_close(m.eval(PROMPT), _torch_logits(ref, PROMPT))


def test_file_really_has_the_variant_features(exported):
    """The cases above cover what they claim: tied head, biases, llama3 rope_freqs, Q8_0 rows."""
    def names(key):
        return {t.name: t.tensor_type for t in gguf.GGUFReader(str(exported[key][1])).tensors}
    assert "output.weight" not in names("tied")
    u = names("untied")
    assert "blk.0.attn_q.bias" in u and "blk.1.ffn_down.bias" in u and "rope_freqs.weight" in u
    assert names("q8")["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert names("q8")["output.weight"] == gguf.GGMLQuantizationType.Q8_0
    with Model(exported["tied"][1]) as a, Model(exported["untied"][1]) as b:
        assert a.info.tied and not b.info.tied
    o = names("opt_untied")
    assert {"position_embd.weight", "output.weight", "output_norm.bias", "blk.1.attn_norm.bias", "blk.1.ffn_norm.bias",
            "blk.0.attn_q.bias", "blk.0.attn_output.bias", "blk.1.ffn_up.bias", "blk.1.ffn_down.bias"} <= set(o)
    assert "blk.0.ffn_gate.bias" not in o and "output.weight" not in names("opt_tied")
    post = gguf.GGUFReader(str(exported["opt_post_ln"][1]))
    assert "output_norm.weight" not in {t.name for t in post.tensors}  # HF has no final LayerNorm when post-LN
    assert bool(post.fields["opt.layer_norm_before"].parts[-1][0]) is False
    assert bytes(post.fields["opt.activation"].parts[-1]) == b"gelu"
    assert names("opt_q8")["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    q8 = gguf.GGUFReader(str(exported["opt_q8"][1]))
    assert bytes(q8.fields["opt.activation"].parts[-1]) == b"gelu_new"


@pytest.mark.parametrize("name", ["tied", "untied", "qwen2_window", "mistral", "gemma3", "opt_untied", "opt_post_ln"])
def test_incremental_decoding_equals_full_sequence(exported, name):
    _, path, ref = exported[name]
    full_ids = PROMPT + EXTRA
    with Model(path, n_ctx=32) as m:
        full = m.eval(full_ids)
        _assert_close(full, _torch_logits(ref, full_ids))
        m.reset()
        rows = [m.eval(PROMPT, 0)]
        for i, t in enumerate(EXTRA):
            rows.append(m.eval([t], len(PROMPT) + i))
        _assert_close(np.concatenate(rows), full)
        assert m.info.n_cached == len(full_ids)
        # rewinding: re-running the last token from its position gives the same row again (gemv, same cache)
        again = m.eval([EXTRA[-1]], len(full_ids) - 1)
        assert np.array_equal(again, rows[-1])


def test_last_only_is_the_last_row(exported):
    with Model(exported["untied"][1]) as m:
        full = m.eval(PROMPT)
        m.reset()
        last = m.eval(PROMPT, last_only=True)
    assert last.shape == (320,) and np.array_equal(last, full[-1])


@pytest.mark.parametrize("name", ["untied", "opt_untied"])
def test_threads_give_identical_logits(exported, monkeypatch, name):
    monkeypatch.setenv("PBS2P_MIN_WORK_PER_THREAD", "1")  # force threads on this tiny model
    path = exported[name][1]
    with Model(path, n_threads=1) as a, Model(path, n_threads=2) as b:
        assert b.info.n_threads == 2
        assert np.array_equal(a.eval(PROMPT), b.eval(PROMPT))
        assert np.array_equal(a.eval([9], len(PROMPT)), b.eval([9], len(PROMPT)))


@pytest.mark.parametrize("name, n_new", [("tied", 4), ("qwen2", 16), ("mistral", 16), ("gemma3", 16),
                                         ("opt_tied", 16), ("opt_untied", 16)])
def test_greedy_generation_matches_pytorch(exported, name, n_new):
    _, path, ref = exported[name]
    ids = list(PROMPT)
    for _ in range(n_new):
        ids.append(int(_torch_logits(ref, ids)[-1].argmax()))
    with Model(path) as m:
        assert m.generate_greedy(PROMPT, n_new) == ids[len(PROMPT):]


def test_info(exported):
    with Model(exported["tied"][1], n_threads=2) as m:
        i = m.info
    assert (i.arch, i.n_vocab, i.n_layer, i.n_embd, i.n_ff) == ("llama", 320, 2, 64, 128)
    assert (i.n_head, i.n_head_kv, i.head_dim, i.n_ctx_train, i.n_ctx, i.n_threads) == (4, 2, 16, 128, 128, 2)
    assert i.n_cached == 0


def _reads_kept_signs() -> bool:
    """Whether the selected kernel's int8 products read plane 1 as kept-order signs (native/src/internal.h), so that
    a model prepares its layers so: NEON; AVX-512 with VBMI, VNNI and BMI2; the AVX2 products (the avx2 variant's, and
    the avx512 variant's without VBMI or VNNI) where pdep is fast: every BMI2 core but AMD's and Hygon's before Zen 3
    (CPU family 0x19; dispatch.c fast_pdep)."""
    kernel = selected_kernel()
    if kernel in ("neon", "ref"):
        return kernel == "neon"
    cpu = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        cpu.setdefault(key.strip(), value.strip())
    flags = set(cpu.get("flags", "").split())
    if kernel == "avx512" and {"avx512vbmi", "avx512_vnni", "bmi2"} <= flags:  # as Linux spells them
        return True
    slow_pdep = cpu.get("vendor_id") in ("AuthenticAMD", "HygonGenuine") and int(cpu.get("cpu family", "0")) < 0x19
    return "bmi2" in flags and not slow_pdep


def _held_bytes(meta, planes_nbytes: int, kept_signs: bool) -> int:
    """A packed linear's bytes as a model holds it: the planes (pbs2p_layer_prepare), or, where the kernel reads
    kept-order signs and the layer keeps half of every N:M group in whole 32-column words, plane 1's words replaced by
    16-bit signs (and 64 bytes of slack)."""
    fits = (kept_signs and 2 * meta.n == meta.m and meta.split == 1 and meta.n_salient == 0 and meta.cols % 32 == 0
            and (meta.group_size % 32 == 0 or meta.group_size >= meta.cols))
    if not fits:
        return planes_nbytes
    words = -(-meta.cols // meta.group_size) * -(-min(meta.group_size, meta.cols) // 32)  # G W
    return planes_nbytes - meta.rows * words * 4 + meta.rows * -(-words // 2) * 4 + 64


@pytest.mark.parametrize("kernel", [None, "ref"])
@pytest.mark.parametrize("name", ["tied", "opt_untied", "gemma3"])
def test_info_step_bytes_is_every_weight_a_decode_step_reads(exported, name, kernel):
    """step_bytes: the packed linears as the model holds them (their prepared bytes, not their file bytes: the planes,
    or kept-order signs where the kernel reads them), every other tensor as stored except the token and position
    embeddings, of which one row each, and the head whole (the embedding when tied)."""
    path = exported[name][1]
    select_kernel(kernel)
    try:
        kept_signs = _reads_kept_signs()
        with Model(path) as m:
            i = m.info
    finally:
        select_kernel(None)
    with GGUFFile(path) as f:
        bases = f.linear_names()
        packed = sum(_held_bytes(f.linear(b).meta, f.linear(b).prepare().nbytes, kept_signs) for b in bases)
        tensors = {t.name: t for t in f.tensors()}
        of_linears = {n for n in tensors if any(n.startswith(b + ".pbs2p.") for b in bases)}
        embeddings = [tensors[n] for n in ("token_embd.weight", "position_embd.weight") if n in tensors]
        rest = sum(t.n_bytes for n, t in tensors.items() if n not in of_linears and t not in embeddings)
        rows = sum(t.n_bytes // t.shape[0] for t in embeddings)
        head = 0 if "output.weight" in tensors else embeddings[0].n_bytes
    assert i.step_bytes == packed + rest + rows + head
    assert packed > sum(tensors[n].n_bytes for n in of_linears)  # either layout holds more than the file's codes


def test_info_opt(exported):
    with Model(exported["opt_untied"][1], n_ctx=64) as m:
        i = m.info
    assert (i.arch, i.n_vocab, i.n_layer, i.n_embd, i.n_ff, i.tied) == ("opt", 320, 2, 64, 128, False)
    assert (i.n_head, i.n_head_kv, i.head_dim, i.n_ctx_train, i.n_ctx) == (4, 4, 16, 128, 64)


def test_llama_layout_files_say_their_architecture(exported):
    """Qwen2 is "qwen2" with its keys under qwen2. and q/k/v biases only; Mistral is "llama" as llama.cpp writes it;
    a sliding window is a key, and only where the config's layers use one."""
    def read(name):
        r = gguf.GGUFReader(str(exported[name][1]))
        fields = {k: f.contents() for k, f in r.fields.items()}
        return fields, {t.name for t in r.tensors}
    fields, names = read("qwen2")
    assert fields["general.architecture"] == "qwen2" and fields["qwen2.block_count"] == 2
    assert {"blk.0.attn_q.bias", "blk.1.attn_k.bias", "blk.1.attn_v.bias"} <= names
    assert not {n for n in names if n.endswith(".bias") and "attn_output" in n or "ffn" in n and n.endswith(".bias")}
    assert "qwen2.attention.sliding_window" not in fields  # the config has a window field, but no layer uses it
    assert read("qwen2_window")[0]["qwen2.attention.sliding_window"] == 5
    fields, names = read("mistral")
    assert fields["general.architecture"] == "llama" and fields["llama.attention.sliding_window"] == 5
    with Model(exported["qwen2"][1]) as m:
        assert m.info.arch == "qwen2"


def test_the_c_loader_accepts_exactly_the_tables_gguf_names(exported, tmp_path):
    """libpbs2p's list of architectures (its error message names them) is the GGUF names of
    pack/architectures.py, and each loads: the two lists are kept in step by this test."""
    from pbs2p_edge.pack.architectures import ARCHITECTURES

    with pytest.raises(NativeError, match="architecture 'bloom' is not supported by the model runtime") as e:
        Model(_patched_str(exported["tied"][1], tmp_path / "arch.gguf", "general.architecture", "bloom"))
    table = sorted({a.gguf for a in ARCHITECTURES.values()})
    assert sorted(re.search(r"model runtime \(([^)]*)\)", str(e.value)).group(1).split(", ")) == table
    loaded = set()
    for _, path, _ in exported.values():
        with Model(path) as m:
            loaded.add(m.info.arch)
    assert sorted(loaded) == table  # every name of the table has a file above that loads


def _status(exc):
    return exc.value.status


def test_eval_argument_errors(exported):
    with Model(exported["tied"][1], n_ctx=16) as m:
        with pytest.raises(NativeError, match="outside the vocabulary") as e:
            m.eval([1, 320])
        assert _status(e) == lib.PBS2P_ERR_ARGUMENT
        with pytest.raises(NativeError, match="positions in the KV cache") as e:
            m.eval([1], n_past=1)  # nothing cached yet
        assert _status(e) == lib.PBS2P_ERR_ARGUMENT
        m.eval(PROMPT)
        with pytest.raises(NativeError, match="exceeds n_ctx 16") as e:
            m.eval([1, 2, 3, 4, 5], n_past=len(PROMPT))
        assert _status(e) == lib.PBS2P_ERR_ARGUMENT
        assert m.info.n_cached == len(PROMPT)  # an argument error changes nothing
        with pytest.raises(ConfigError):
            m.eval([])
        with pytest.raises(ConfigError, match="n_past"):
            m.eval([1], n_past=-1)
    with pytest.raises(ConfigError, match="closed"):
        m.eval([1])


def test_load_argument_errors(exported):
    path = exported["tied"][1]
    with pytest.raises(NativeError, match="exceeds the model's context_length 128") as e:
        Model(path, n_ctx=129)
    assert _status(e) == lib.PBS2P_ERR_ARGUMENT
    with pytest.raises(NativeError, match="n_threads") as e:
        Model(path, n_threads=-1)
    assert _status(e) == lib.PBS2P_ERR_ARGUMENT
    with pytest.raises(NativeError) as e:
        Model(path.parent / "missing.gguf")
    assert _status(e) == lib.PBS2P_ERR_IO


def test_opt_positions_past_the_context_are_refused(exported):
    """Positions run up to n_ctx - 1 and read row n_past + 2: a full context is right, one more is refused."""
    _, path, ref = exported["opt_tied"]
    ids = (PROMPT * 11)[:128]  # context_length 128 = the positions of position_embd (130 rows) minus the offset 2
    with Model(path) as m:
        _assert_close(m.eval(ids), _torch_logits(ref, ids))  # the last position reads the last row
        with pytest.raises(NativeError, match="exceeds n_ctx 128"):
            m.eval([1], 128)


def test_stock_gguf_is_not_pbs2p(tmp_path):
    path = tmp_path / "stock.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(NativeError) as e:
        Model(path)
    assert _status(e) == lib.PBS2P_ERR_NOT_PBS2P


def _patched_u32(src, dst, key, value):
    """Copy of GGUF `src` with the u32 value of `key` replaced (same length, so every offset stays valid)."""
    data = bytearray(src.read_bytes())
    k = key.encode()
    at = data.find(struct.pack("<Q", len(k)) + k)
    assert at >= 0
    at += 8 + len(k)
    assert struct.unpack_from("<I", data, at)[0] == 4  # GGUF value type UINT32
    struct.pack_into("<I", data, at + 4, value)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("key, value, match", [
    ("llama.attention.head_count_kv", 3, "not a multiple of head_count_kv"),
    ("llama.embedding_length", 32, "token_embd.weight has ne"),
    ("llama.feed_forward_length", 96, "the hyper-parameters say"),
    ("llama.vocab_size", 321, "disagrees with token_embd.weight"),
    ("llama.block_count", 1 << 20, "outside"),
    ("llama.block_count", 1, "tensor blk.1.* lies outside the 1 blocks of llama.block_count"),  # the file holds 2
])
def test_inconsistent_hyper_parameters_are_refused(exported, tmp_path, key, value, match):
    bad = _patched_u32(exported["tied"][1], tmp_path / "bad.gguf", key, value)
    with pytest.raises(NativeError, match=match) as e:
        Model(bad)
    assert _status(e) == lib.PBS2P_ERR_FORMAT


# ---- generation (pbs2p_generate) ------------------------------------------------------------------------------


def _torch_greedy(ref, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(_torch_logits(ref, ids)[-1].argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("name", ["tied", "untied"])
def test_generate_greedy_equals_python_loop_and_pytorch(exported, name):
    _, path, ref = exported[name]
    with Model(path) as m:
        res = m.generate(PROMPT, n_predict=6, stop_at_eos=False)
        assert isinstance(res, GenerateResult)
        assert res.tokens == m.generate_greedy(PROMPT, 6) == _torch_greedy(ref, PROMPT, 6)
        assert (res.n_prompt, res.stop_reason) == (len(PROMPT), "length")
        assert res.text == m.detokenize(res.tokens)
        assert res.prompt_seconds > 0 and res.decode_seconds > 0
        assert res.prompt_tokens_per_second == pytest.approx(len(PROMPT) / res.prompt_seconds)
        assert res.decode_tokens_per_second == pytest.approx(5 / res.decode_seconds)  # tokens 2..6 were decoded


def test_generate_from_text_tokenizes_with_the_bos_rule(exported):
    with Model(exported["tied"][1]) as m:
        text = "Emma Woodhouse, handsome"
        from_ids = m.generate(m.tokenize(text), 4, stop_at_eos=False)
        assert m.generate(text, 4, stop_at_eos=False).tokens == from_ids.tokens
        assert m.generate(text, 0).tokens == []
        one = m.generate(text, 1)
        assert len(one.tokens) == 1 and one.decode_tokens_per_second is None  # nothing decoded after the first


def test_callback_receives_every_token_in_order_and_can_stop(exported):
    with Model(exported["untied"][1]) as m:
        seen = []
        full = m.generate(PROMPT, 8, stop_at_eos=False, on_token=lambda t, piece: seen.append((t, piece)))
        assert [t for t, _ in seen] == full.tokens and len(seen) == 8
        assert [p for _, p in seen] == [m.tokenizer.piece(t) for t in full.tokens]
        assert b"".join(p for _, p in seen).decode("utf-8", "replace") == full.text

        calls = []

        def stop_at_third(token, piece):
            calls.append(token)
            return len(calls) == 3

        res = m.generate(PROMPT, 8, stop_at_eos=False, on_token=stop_at_third)
        assert res.stop_reason == "callback" and res.tokens == full.tokens[:3] and calls == full.tokens[:3]


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("exc", [_Boom, KeyboardInterrupt])
def test_callback_exception_propagates_after_c_returns(exported, exc):
    with Model(exported["tied"][1]) as m:
        calls = []

        def fail_second(token, piece):
            calls.append(token)
            if len(calls) == 2:
                raise exc("from the callback")

        with pytest.raises(exc, match="from the callback"):
            m.generate(PROMPT, 8, stop_at_eos=False, on_token=fail_second)
        assert len(calls) == 2  # generation stopped at the raising call
        # the model is intact: the same greedy tokens again
        assert m.generate(PROMPT, 3, stop_at_eos=False).tokens == m.generate_greedy(PROMPT, 3)


def test_seeded_sampling_is_reproducible(exported):
    with Model(exported["untied"][1]) as m:
        kw = dict(n_predict=12, temperature=1.5, top_k=100, top_p=0.95, stop_at_eos=False)
        a, b = m.generate(PROMPT, seed=7, **kw), m.generate(PROMPT, seed=7, **kw)
        assert a.tokens == b.tokens and len(a.tokens) == 12
        assert m.generate(PROMPT, seed=8, **kw).tokens != a.tokens
        assert a.tokens != m.generate_greedy(PROMPT, 12)
        # top_k 1 leaves one candidate: sampling at any temperature is the greedy choice
        assert m.generate(PROMPT, 6, temperature=3.0, top_k=1, seed=5, stop_at_eos=False).tokens == \
            m.generate_greedy(PROMPT, 6)


def test_generation_stops_when_the_context_is_full(exported):
    with Model(exported["tied"][1], n_ctx=16) as m:
        res = m.generate(PROMPT, 10, stop_at_eos=False)
        assert res.stop_reason == "context" and len(res.tokens) == 16 - len(PROMPT)
        assert res.tokens == m.generate_greedy(PROMPT, 4)


def test_prompt_longer_than_the_context_is_refused(exported):
    with Model(exported["tied"][1], n_ctx=12) as m:
        with pytest.raises(NativeError, match="longer than the context") as e:
            m.generate(PROMPT, 4)  # 12 prompt tokens leave no room for one generated token
        assert _status(e) == lib.PBS2P_ERR_ARGUMENT
        assert len(m.generate(PROMPT[:11], 4, stop_at_eos=False).tokens) == 1


@pytest.mark.parametrize("kw, match", [
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_k": -1}, "top_k"),
    ({"temperature": float("nan")}, "temperature"), ({"seed": -1}, "seed"), ({"n_predict": -1}, "n_predict"),
    ({"prompt": []}, "prompt"), ({"prompt": ""}, "prompt"),
])
def test_generate_argument_errors(exported, kw, match):
    with Model(exported["tied"][1]) as m:
        args = {"prompt": PROMPT, **kw}
        with pytest.raises(ConfigError, match=match):
            m.generate(args.pop("prompt"), **args)


# ---- tokenizer -------------------------------------------------------------------------------------------------

UTF8_SAMPLES = ["It is a truth universally acknowledged, that a single man in possession of a good fortune.\n",
                "caf\u00e9 na\u00efve \u2014 \u201cquotes\u201d \u6f22\u5b57 \U0001f600 end",
                "  two  spaces\n\ttab", "x"]


def test_tokenize_equals_hugging_face_and_round_trips(exported, tiny_tokenizer):
    with Model(exported["untied"][1]) as m:
        info = m.tokenizer.info
        assert (info.n_vocab, info.bos, info.add_bos) == (320, tiny_tokenizer.bos_token_id, False)
        for text in UTF8_SAMPLES:
            assert m.tokenize(text) == tiny_tokenizer(text)["input_ids"]
            assert m.detokenize(m.tokenize(text)) == text
        assert m.tokenize("Emma", add_bos=True) == [info.bos] + m.tokenize("Emma")
        assert m.tokenize("Emma", add_eos=True) == m.tokenize("Emma") + [info.eos]
        assert m.tokenize("Emma", add_bos=None, add_eos=None) == m.tokenize("Emma")  # the file's rules: neither
        assert m.detokenize([]) == ""


def test_tokenizer_dies_with_the_model(exported):
    m = Model(exported["tied"][1])
    tok = m.tokenizer
    assert tok.encode("Emma")
    m.close()
    with pytest.raises(ConfigError, match="closed"):
        m.tokenize("Emma")
    with pytest.raises(NativeError):
        tok.encode("Emma")  # the borrowed C tokenizer is gone: a status, not a crash


# ---- perplexity (pbs2p_model_perplexity) --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tied", "untied", "q8", "gemma3", "opt_tied", "opt_untied"])
def test_perplexity_equals_pytorch_eval(exported, tiny_ids, name):
    _, path, ref = exported[name]
    want = perplexity(ref, tiny_ids, 32, max_windows=3)
    with Model(path, n_ctx=32) as m:
        got = m.perplexity(tiny_ids.numpy(), 32, max_windows=3)
        assert (got.windows, got.tokens) == (want.windows, want.tokens) == (3, 93)
        assert got.ppl == pytest.approx(want.ppl, rel=2e-3)  # REL_TOL's rounding flips: up to 5.5e-4 measured
        assert got.nll == pytest.approx(want.nll, rel=2e-3)
        assert m.info.n_cached == 0  # perplexity resets the cache


def test_perplexity_of_text_uses_all_windows_of_the_tokenized_text(exported, tiny_tokenizer, tiny_ids):
    _, path, ref = exported["tied"]
    text = tiny_tokenizer.decode(tiny_ids[:300])
    ids = tiny_tokenizer(text)["input_ids"]
    with Model(path, n_ctx=64) as m:
        got = m.perplexity(text, 64)
        assert got.windows == len(ids) // 64
        assert got == m.perplexity(ids, 64)
        with pytest.raises(DataError, match="too short for one evaluation window"):
            m.perplexity("Emma", 64)
        with pytest.raises(NativeError, match="n_ctx 64") as e:
            m.perplexity(ids, 65)
        assert _status(e) == lib.PBS2P_ERR_ARGUMENT
        with pytest.raises(ConfigError, match="ctx"):
            m.perplexity(ids, 1)
        with pytest.raises(ConfigError, match="max_windows"):
            m.perplexity(ids, 32, max_windows=0)


def _patched_str(src, dst, key, value):
    """Copy of GGUF `src` with the string value of `key` replaced by one of the same length."""
    data = bytearray(src.read_bytes())
    k = key.encode()
    at = data.find(struct.pack("<Q", len(k)) + k)
    assert at >= 0
    at += 8 + len(k)
    assert struct.unpack_from("<I", data, at)[0] == 8  # GGUF value type STRING
    n = struct.unpack_from("<Q", data, at + 4)[0]
    assert n == len(value)
    data[at + 12:at + 12 + n] = value.encode()
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("key, value, match", [
    ("opt.context_length", 200, "position_embd.weight has 130 rows; context_length 200 at position_offset 2 needs 202"),
    ("opt.position_offset", 3, "position_embd.weight has 130 rows; context_length 128 at position_offset 3 needs 131"),
    ("opt.attention.head_count", 5, "head_count 5 does not divide embedding_length 64"),
    ("opt.attention.head_count_kv", 2, "head_count_kv 2 must equal head_count 4"),
    ("opt.feed_forward_length", 96, "the hyper-parameters say"),
    ("opt.vocab_size", 321, "opt.vocab_size 321 disagrees with token_embd.weight"),
])
def test_inconsistent_opt_hyper_parameters_are_refused(exported, tmp_path, key, value, match):
    bad = _patched_u32(exported["opt_tied"][1], tmp_path / "bad.gguf", key, value)
    with pytest.raises(NativeError, match=match) as e:
        Model(bad)
    assert _status(e) == lib.PBS2P_ERR_FORMAT


def test_unsupported_opt_variants_are_refused(exported, tmp_path):
    src = exported["opt_tied"][1]
    with pytest.raises(NativeError, match="opt.activation 'silu' is not supported") as e:
        Model(_patched_str(src, tmp_path / "act.gguf", "opt.activation", "silu"))
    assert _status(e) == lib.PBS2P_ERR_UNSUPPORTED
    # token_embd as wide as something other than the hidden size: word_embed_proj_dim != hidden_size (project_in/out)
    with pytest.raises(NativeError, match="word_embed_proj_dim 64 != embedding_length 32") as e:
        Model(_patched_u32(src, tmp_path / "proj.gguf", "opt.embedding_length", 32))
    assert _status(e) == lib.PBS2P_ERR_UNSUPPORTED
    with pytest.raises(NativeError, match="architecture 'bloom' is not supported") as e:
        Model(_patched_str(exported["tied"][1], tmp_path / "arch.gguf", "general.architecture", "bloom"))
    assert _status(e) == lib.PBS2P_ERR_UNSUPPORTED


def _poisoned(src, tmp_path, tensor: str, raw: bytes, at=(0,)):
    """A copy of GGUF `src` with `raw` written at each byte offset `at` of `tensor`'s data."""
    t = next(t for t in gguf.GGUFReader(str(src)).tensors if t.name == tensor)
    data = bytearray(src.read_bytes())
    for a in at:
        data[int(t.data_offset) + a:int(t.data_offset) + a + len(raw)] = raw
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("tensor, value, what", [("output_norm.weight", np.nan, "NaN"),
                                                 ("blk.1.ffn_norm.weight", np.inf, "infinite"),
                                                 ("blk.0.attn_q.bias", -np.inf, "infinite")])
def test_non_finite_norms_and_biases_are_refused_at_load(exported, tmp_path, tensor, value, what):
    """A NaN / Inf in an F32 norm or bias (which would reach every logit) is a damaged file when it loads, so
    inspect refuses it as eval and run do."""
    bad = _poisoned(exported["untied"][1], tmp_path, tensor, struct.pack("<f", value))
    with pytest.raises(NativeError, match=rf"tensor {tensor}\[0\] is {what}: the model file holds non-finite") as e:
        Model(bad, n_ctx=32)
    assert _status(e) == lib.PBS2P_ERR_FORMAT
    res = subprocess.run([sys.executable, "-m", "pbs2p_edge.cli", "inspect", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == "" and res.stderr.count("\n") == 1 and what in res.stderr


def test_a_non_finite_embedding_row_is_an_error_not_an_answer(exported, tmp_path):
    """A file that loads but holds NaN in its embedding rows (first column of each: rows are not scanned at load)
    gives PBS2P_ERR_NONFINITE from eval and perplexity, never NaN logits or a NaN perplexity with success; the CLI
    prints one line and exits 2."""
    src = exported["untied"][1]
    t = next(t for t in gguf.GGUFReader(str(src)).tensors if t.name == "token_embd.weight")
    assert t.tensor_type == gguf.GGMLQuantizationType.F16
    row_bytes = int(t.shape[0]) * 2
    bad = _poisoned(src, tmp_path, "token_embd.weight", struct.pack("<H", 0x7E00), range(0, int(t.n_bytes), row_bytes))
    with Model(bad, n_ctx=32) as m:
        with pytest.raises(NativeError, match="non-finite") as e:
            m.eval(PROMPT)
        assert _status(e) == lib.PBS2P_ERR_NONFINITE and m.info.n_cached == 0
        with pytest.raises(NativeError) as e:
            m.perplexity(np.array(PROMPT * 4, np.int32), 16, 2)
        assert _status(e) == lib.PBS2P_ERR_NONFINITE
    res = subprocess.run([sys.executable, "-m", "pbs2p_edge.cli", "eval", str(bad), "--data", __file__,
                          "--seqlen", "16", "--max-windows", "1", "--json"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == "" and res.stderr.count("\n") == 1 and "non-finite" in res.stderr


def test_a_path_with_a_nul_byte_is_refused_not_cut(exported):
    """C would stop at the NUL and open the file before it."""
    path = str(exported["tied"][1])
    for make in (Model, GGUFFile):
        with pytest.raises(ConfigError, match="NUL byte"):
            make(path + "\0junk")


@pytest.mark.parametrize("name", ["tied", "opt_untied"])
def test_f16_kv_cache_is_the_default_and_close_to_f32(exported, tiny_ids, name):
    """The float16 cache (the C default, as llama.cpp's): logits within 5e-3 of their range of the float32 cache's
    (the rounding shows, and moves some int8 activation codes by a step: up to 1.7e-3 measured), token-by-token decoding
    reads back what the batch wrote, perplexity within 0.1 %.
    test_attention.c holds its kernel bit for bit to the float32 one on the widened cache."""
    _, path, _ = exported[name]
    ids = PROMPT + EXTRA
    with NativeModel(path, n_ctx=32) as h, Model(path, n_ctx=32) as f:
        assert (h.info.kv, f.info.kv) == ("f16", "f32")
        got, want = h.eval(ids), f.eval(ids)
        span = float(want.max() - want.min())
        assert 0 < np.abs(got - want).max() <= 5e-3 * span
        h.reset()
        rows = [h.eval(PROMPT, 0)] + [h.eval([t], len(PROMPT) + i) for i, t in enumerate(EXTRA)]
        _assert_close(np.concatenate(rows), got)
        a = h.perplexity(tiny_ids.numpy(), 32, max_windows=3)
        b = f.perplexity(tiny_ids.numpy(), 32, max_windows=3)
        assert a.ppl == pytest.approx(b.ppl, rel=1e-3) and a.ppl != b.ppl


@pytest.mark.parametrize("kv, n_threads", [("f16", 1), ("f16", 2), ("f32", 2)])
@pytest.mark.parametrize("name", ["tied", "qwen2_window", "gemma3", "opt_untied"])
def test_a_long_prompt_reads_the_cache_as_short_batches_do(exported, name, kv, n_threads):
    """From 16 tokens a batch attends on float32 keys (a float16 layer widened once: model_forward.c, widened_layer)
    in blocks of queries per KV head (attend_block); shorter batches attend one query at a time, through attend_f16 on
    a float16 cache. The two give the same bits, sliding windows included, however the blocks are split over threads:
    one 40-token batch against 15 + 15 + 10, whose linears give every token's row the same bits too."""
    _, path, _ = exported[name]
    ids = np.arange(3, 43, dtype=np.int32) % 300
    with NativeModel(path, n_ctx=48, kv=kv, n_threads=n_threads) as m:
        whole = m.eval(ids, 0)
        m.reset()
        parts = np.concatenate([m.eval(ids[:15], 0), m.eval(ids[15:30], 15), m.eval(ids[30:], 30)])
    assert np.array_equal(whole, parts)


@pytest.mark.parametrize("name", ["tied", "qwen2_window", "gemma3", "opt_untied"])
def test_a_prompt_longer_than_a_chunk_runs_as_its_chunks(exported, name):
    """An eval runs its tokens in chunks of 64 (model_internal.h, PBS2P_PROMPT_CHUNK), each chunk's keys and values in
    the cache before the next one's queries: 120 tokens at once (64 + 56) give the bits of 40 + 40 + 40 and of 1 + 119,
    every row, and the last row alone as the batch's last row."""
    _, path, _ = exported[name]
    ids = (np.arange(120, dtype=np.int32) * 7 + 3) % 300
    with NativeModel(path, n_ctx=128, n_threads=2) as m:
        whole = m.eval(ids, 0)
        m.reset()
        last = m.eval(ids, 0, last_only=True)
        m.reset()
        thirds = np.concatenate([m.eval(ids[:40], 0), m.eval(ids[40:80], 40), m.eval(ids[80:], 80)])
        m.reset()
        split = np.concatenate([m.eval(ids[:1], 0), m.eval(ids[1:], 1)])
    assert whole.shape[0] == 120 and np.isfinite(whole).all()
    assert np.array_equal(whole, thirds) and np.array_equal(whole, split)
    assert np.array_equal(last.reshape(-1), whole[-1])


def test_kv_type_is_checked(exported):
    path = exported["tied"][1]
    with pytest.raises(ConfigError, match="kv must be one of f16, f32"):
        NativeModel(path, kv="q8")
    params = ffi.new("pbs2p_model_params *", {"n_threads": 1, "n_ctx": 0, "kv_type": 2})
    out = ffi.new("pbs2p_model **")
    assert lib.pbs2p_model_load(str(path).encode(), params, out) == lib.PBS2P_ERR_ARGUMENT
    assert out[0] == ffi.NULL


@pytest.mark.parametrize("old,new,status,fragment", [
    (b"gemma3.attention.sliding_window_pattern", b"gemma3.attention.sliding_window_patterx", "FORMAT",
     "lacks gemma3.attention.sliding_window_pattern"),  # which layers slide is not guessed
    (b"blk.0.attn_q_norm.weight", b"blk.0.attn_q_norx.weight", "FORMAT", "lacks the tensor blk.0.attn_q_norm"),
    (b"blk.2.post_ffw_norm.weight", b"blk.2.post_ffw_norx.weight", "FORMAT", "lacks the tensor blk.2.post_ffw_norm"),
])
def test_gemma3_files_missing_a_part_are_refused(exported, tmp_path, old, new, status, fragment):
    data = exported["gemma3"][1].read_bytes()
    assert len(old) == len(new) and old in data
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data.replace(old, new, 1))
    with pytest.raises(NativeError, match=fragment) as e:
        Model(bad)
    assert _status(e) == getattr(lib, f"PBS2P_ERR_{status}")


def test_gemma3_pattern_holds_bools(exported, tmp_path):
    """gemma3.attention.sliding_window_pattern holds one bool per layer (sliding, sliding, global, sliding here); a
    byte other than 0 or 1 there is refused by the GGUF reader, not read as true."""
    data = bytearray(exported["gemma3"][1].read_bytes())
    k = b"gemma3.attention.sliding_window_pattern"
    at = data.find(struct.pack("<Q", len(k)) + k) + 8 + len(k)
    assert struct.unpack_from("<II", data, at) == (9, 7)  # an ARRAY of BOOL
    assert struct.unpack_from("<Q", data, at + 8)[0] == 4 and bytes(data[at + 16:at + 20]) == b"\x01\x01\x00\x01"
    data[at + 18] = 2
    bad = tmp_path / "bool.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(NativeError, match=r"bool #2 of key-value #\d+ 'gemma3.attention.sliding_window_pattern' is 2") as e:
        Model(bad)
    assert _status(e) == lib.PBS2P_ERR_GGUF


@pytest.mark.parametrize("name, kw", [("tied", {"n_threads": 2}), ("opt_untied", {"n_ctx": 64, "kv": "f32"}),
                                      ("q8", {"kv": "f16"})])
def test_peek_is_the_loaded_models_info(exported, name, kw):
    """Model.peek (pbs2p_model_peek) gives the info the loaded model reports, before any weight is read."""
    path = exported[name][1]
    with NativeModel(path, **kw) as m:
        assert NativeModel.peek(path, **kw) == dataclasses.replace(m.info, step_bytes=0)  # peek prepares nothing


def test_peek_checks_what_the_load_checks_first_and_reads_no_weight(exported, tmp_path):
    path = exported["untied"][1]
    with pytest.raises(NativeError, match="exceeds the model's context_length 128") as e:
        NativeModel.peek(path, n_ctx=129)
    assert _status(e) == lib.PBS2P_ERR_ARGUMENT
    with pytest.raises(NativeError) as e:
        NativeModel.peek(path.parent / "missing.gguf")
    assert _status(e) == lib.PBS2P_ERR_IO
    with pytest.raises(ConfigError, match="kv must be one of"):
        NativeModel.peek(path, kv="q8")
    # generate's rule for a prompt, before the load: n_ctx 8 holds 7 prompt tokens and one generated token
    assert NativeModel.peek(path, n_ctx=8, prompt_tokens=7).n_ctx == 8
    with pytest.raises(NativeError, match=r"the prompt \(8 tokens\) is longer than the context allows: n_ctx 8") as e:
        NativeModel.peek(path, n_ctx=8, prompt_tokens=8)
    assert _status(e) == lib.PBS2P_ERR_ARGUMENT
    # a damaged weight is the load's to find: peek answers, the load refuses
    bad = _poisoned(path, tmp_path, "output_norm.weight", struct.pack("<f", np.nan))
    assert NativeModel.peek(bad, n_ctx=32).n_ctx == 32
    with pytest.raises(NativeError, match="is NaN"):
        NativeModel(bad, n_ctx=32)
