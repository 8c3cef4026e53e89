"""libpbs2p runs mixed-tier files: every tier's linears and a Q4_0 or block-tier (q3_g64, q2_g64) embedding give
PyTorch's logits, with any thread count and any kernel variant; a tier it does not know, or a tensor that is not its
tier's, is refused at load."""

import copy
import functools
import struct

import gguf
import numpy as np
import pytest
import torch
from checkpoint.tiny_compressed import compress_tiered, tiny_model
from int8_acts import emulate_int8_activations

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import save_checkpoint, to_fake_quant_model
from pbs2p_edge.errors import NativeError
from pbs2p_edge.runtime._ffi import lib
from pbs2p_edge.runtime.kernels import available_kernels, select_kernel
from pbs2p_edge.runtime.model import Model as NativeModel
from pbs2p_exporters.gguf_export import export_gguf

# These tests hold libpbs2p to PyTorch's float32 keys and values: the float32 KV cache (the float16 default is tested
# against it in test_model.py's test_f16_kv_cache_*).
Model = functools.partial(NativeModel, kv="f32")

PROMPT = [5, 17, 200, 3, 99, 42, 7, 311, 64, 128, 0, 250]
REL_TOL = 1e-5  # of the logit range, as tests/runtime/test_model.py


@pytest.fixture(scope="module")
def tiered(tmp_path_factory, tiny_tokenizer):
    """(GGUF path, PyTorch reference): a tiny untied Llama, linears cycling through every tier, embedding Q4_0."""
    root = tmp_path_factory.mktemp("tiers")
    torch.manual_seed(3)
    model = tiny_model("llama", tie=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
    ck = save_checkpoint(root / "ck", model, copy.deepcopy(tiny_tokenizer), compress_tiered(model),
                         CompressConfig(n=4, m=8), {}, {"model_id": "tiered"}, embed_tier="q4_0")
    ref, _ = to_fake_quant_model(ck)  # the Q4_0 embedding and head as the file holds them
    path = export_gguf(ck, root / "m.gguf")
    float_ref = copy.deepcopy(ref)
    emulate_int8_activations(ref, ck, path)  # the integer products' inputs as libpbs2p quantizes them
    return path, ref, float_ref


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("threads", [1, 3])
def test_mixed_tiers_give_pytorchs_logits(tiered, threads):
    path, ref, _ = tiered
    want = _logits(ref, PROMPT)
    with Model(path, n_threads=threads) as m:
        got = m.eval(PROMPT)
    assert np.abs(got - want).max() <= REL_TOL * float(want.max() - want.min())


def test_every_kernel_variant_agrees(tiered):
    path, ref, _ = tiered
    want = _logits(ref, PROMPT)
    try:
        for variant in available_kernels():
            select_kernel(variant)
            with Model(path) as m:
                got = m.eval(PROMPT)
            assert np.abs(got - want).max() <= REL_TOL * float(want.max() - want.min()), variant
    finally:
        select_kernel(None)


def test_int8_activations_cost_little(tiered):
    """Against PyTorch's float activations (no emulation) the integer products move the logits by a small fraction
    of their range, and the perplexity by well under 0.5 %."""
    path, ref, float_ref = tiered
    want, emulated = _logits(float_ref, PROMPT), _logits(ref, PROMPT)
    with Model(path) as m:
        got = m.eval(PROMPT)
    span = float(want.max() - want.min())
    assert 1e-5 * span < np.abs(got - want).max() <= 0.02 * span  # the quantization shows, and stays small
    assert np.abs(got - emulated).max() <= REL_TOL * span

    def nll(logits):
        logp = torch.log_softmax(torch.from_numpy(np.asarray(logits, dtype=np.float64)), -1)[:-1]
        return -logp.gather(1, torch.tensor(PROMPT[1:])[:, None]).mean().item()
    assert abs(np.exp(nll(got)) / np.exp(nll(want)) - 1) <= 0.005


def _patched(path, tmp_path, old: bytes, new: bytes):
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    out = tmp_path / "patched.gguf"
    out.write_bytes(data.replace(old, new, 1))
    return out


@pytest.mark.parametrize("old,new,status,fragment", [
    (b"q3_g64", b"q3_g65", "UNSUPPORTED", "tier 'q3_g65'"),  # a tier this library does not know
    (b"q4_0", b"q8_0", "FORMAT", "type Q4_0"),  # a Q4_0 tensor where the tier says Q8_0
    (b"q2_g64", b"q3_g64", "FORMAT", "shape"),  # q2 blocks are 20 bytes, q3 blocks 28
])
def test_bad_tiers_are_refused_at_load(tiered, tmp_path, old, new, status, fragment):
    bad = _patched(tiered[0], tmp_path, old, new)
    with pytest.raises(NativeError, match=fragment) as info:
        Model(bad)
    assert info.value.status == getattr(lib, f"PBS2P_ERR_{status}")


def _block_embedding_file(root, tokenizer, tier: str, tie: bool):
    """(GGUF path, int8-emulated reference, tier): the tiered model with its embedding (and head) in our blocks."""
    torch.manual_seed(5)
    model = tiny_model("llama", tie=tie)
    ck = save_checkpoint(root / "ck", model, copy.deepcopy(tokenizer), compress_tiered(model),
                         CompressConfig(n=4, m=8), {}, {"model_id": "tiered"}, embed_tier=tier)
    ref, _ = to_fake_quant_model(ck)
    path = export_gguf(ck, root / "m.gguf")
    emulate_int8_activations(ref, ck, path)
    return path, ref, tier


@pytest.fixture(scope="module")
def q2_embedding(tmp_path_factory, tiny_tokenizer):
    return _block_embedding_file(tmp_path_factory.mktemp("emb-q2"), tiny_tokenizer, "q2_g64", False)


@pytest.fixture(scope="module", params=["q3_g64-tied", "q2_g64-untied"])
def block_embedding(request, tmp_path_factory, tiny_tokenizer, q2_embedding):
    if request.param == "q2_g64-untied":
        return q2_embedding
    return _block_embedding_file(tmp_path_factory.mktemp("emb-q3"), tiny_tokenizer, "q3_g64", True)


def test_block_tier_embedding_gives_pytorchs_logits(block_embedding):
    path, ref, tier = block_embedding
    want = _logits(ref, PROMPT)
    reader = gguf.GGUFReader(str(path))
    names = {t.name for t in reader.tensors}
    assert "token_embd.pbs2p.q" in names and "token_embd.weight" not in names
    assert reader.fields["pbs2p.embedding.tier"].contents() == tier
    try:
        for variant in available_kernels():
            select_kernel(variant)
            with Model(path, n_threads=2) as m:
                got = m.eval(PROMPT)
            assert np.abs(got - want).max() <= REL_TOL * float(want.max() - want.min()), variant
    finally:
        select_kernel(None)


def _key_value(key: bytes, value: bytes) -> bytes:
    """A GGUF string key-value pair as it lies in the file."""
    return struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value


@pytest.mark.parametrize("old,new,status,fragment", [
    # an embedding tier this library does not know
    (_key_value(b"pbs2p.embedding.tier", b"q2_g64"), _key_value(b"pbs2p.embedding.tier", b"q2_g65"), "UNSUPPORTED",
     "pbs2p.embedding.tier 'q2_g65'"),
    # a ggml type named as the embedding's block tier
    (_key_value(b"pbs2p.embedding.tier", b"q2_g64"), _key_value(b"pbs2p.embedding.tier", b"q4_0\0\0"),
     "UNSUPPORTED", "not a block tier"),
    # q2 blocks (20 bytes) read as q3 blocks (28)
    (_key_value(b"pbs2p.embedding.tier", b"q2_g64"), _key_value(b"pbs2p.embedding.tier", b"q3_g64"), "FORMAT",
     "I8 of 28 bytes a row"),
    # without the key, token_embd.pbs2p.q belongs to nothing
    (b"pbs2p.embedding.tier", b"pbs2p.embedding.tiex", "FORMAT", "belongs to no linear"),
    # the key without its tensor
    (b"token_embd.pbs2p.q", b"token_embd.pbs2p.x", "FORMAT", "belongs to no linear"),
])
def test_bad_block_embeddings_are_refused_at_load(q2_embedding, tmp_path, old, new, status, fragment):
    bad = _patched(q2_embedding[0], tmp_path, old, new)
    with pytest.raises(NativeError, match=fragment) as info:
        Model(bad)
    assert info.value.status == getattr(lib, f"PBS2P_ERR_{status}")
