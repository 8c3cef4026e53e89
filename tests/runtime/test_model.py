"""Tests of runtime.model (libpbs2p's C Llama forward from our GGUF): logits equal the PyTorch fake-quant model's."""

import copy
import struct

import gguf
import numpy as np
import pytest
import torch
from checkpoint.tiny_compressed import compress, tiny_model

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import save_checkpoint, to_fake_quant_model
from pbs2p_edge.errors import ConfigError, NativeError
from pbs2p_edge.runtime._ffi import lib
from pbs2p_edge.runtime.model import Model
from pbs2p_exporters.gguf_export import export_gguf

PROMPT = [5, 17, 200, 3, 99, 42, 7, 311, 64, 128, 0, 250]  # 12 tokens < vocab 320
EXTRA = [13, 77, 301]
REL_TOL = 1e-5  # max |C - torch| <= REL_TOL * (max - min of the torch logits); measured about 2e-7


def _llama(tie: bool, **overrides):
    """tiny_model("llama") (hidden 64, 2 layers, 4 heads / 2 KV heads, vocab 320) with config overrides."""
    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(tiny_model("llama", tie=tie).config)
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


def _export(root, tokenizer, name, model, embed_type="f16", **kw):
    ck = root / name
    save_checkpoint(ck, model, copy.deepcopy(tokenizer), compress(model, **kw), CompressConfig(n=4, m=8), {},
                    {"model_id": name})
    return ck, export_gguf(ck, root / f"{name}.gguf", embed_type=embed_type)


def _reference(ck, path):
    """The fake-quant PyTorch model with token_embd / output exactly as the GGUF stores them (F16 or Q8_0)."""
    model, _ = to_fake_quant_model(ck)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    with torch.no_grad():
        for gname, param in (("token_embd.weight", model.model.embed_tokens.weight),
                             ("output.weight", model.lm_head.weight)):
            if gname in tensors:
                t = tensors[gname]
                w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(param.shape)
                param.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
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


@pytest.mark.parametrize("name", ["tied", "untied", "q8"])
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


@pytest.mark.parametrize("name", ["tied", "untied"])
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


def test_threads_give_identical_logits(exported, monkeypatch):
    monkeypatch.setenv("PBS2P_MIN_WORK_PER_THREAD", "1")  # force threads on this tiny model
    path = exported["untied"][1]
    with Model(path, n_threads=1) as a, Model(path, n_threads=2) as b:
        assert b.info.n_threads == 2
        assert np.array_equal(a.eval(PROMPT), b.eval(PROMPT))
        assert np.array_equal(a.eval([9], len(PROMPT)), b.eval([9], len(PROMPT)))


def test_greedy_generation_matches_pytorch(exported):
    _, path, ref = exported["tied"]
    ids = list(PROMPT)
    for _ in range(4):
        ids.append(int(_torch_logits(ref, ids)[-1].argmax()))
    with Model(path) as m:
        assert m.generate_greedy(PROMPT, 4) == ids[len(PROMPT):]


def test_info(exported):
    with Model(exported["tied"][1], n_threads=2) as m:
        i = m.info
    assert (i.arch, i.n_vocab, i.n_layer, i.n_embd, i.n_ff) == ("llama", 320, 2, 64, 128)
    assert (i.n_head, i.n_head_kv, i.head_dim, i.n_ctx_train, i.n_ctx, i.n_threads) == (4, 2, 16, 128, 128, 2)
    assert i.n_cached == 0


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


def test_opt_is_unsupported(tmp_path, tiny_tokenizer):
    model = tiny_model("opt", tie=True)
    _, path = _export(tmp_path, tiny_tokenizer, "opt", model)
    with pytest.raises(NativeError, match="architecture 'opt' is not supported") as e:
        Model(path)
    assert _status(e) == lib.PBS2P_ERR_UNSUPPORTED


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
])
def test_inconsistent_hyper_parameters_are_refused(exported, tmp_path, key, value, match):
    bad = _patched_u32(exported["tied"][1], tmp_path / "bad.gguf", key, value)
    with pytest.raises(NativeError, match=match) as e:
        Model(bad)
    assert _status(e) == lib.PBS2P_ERR_FORMAT
