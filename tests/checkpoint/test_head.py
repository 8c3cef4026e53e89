"""The head's stored form (checkpoint/head.py): GPTQ onto the embedding tier with the head input's Hessian, kept in the
checkpoint and written by every exporter in place of the nearest rounding."""

import copy

import gguf
import numpy as np
import onnx
import pytest
import torch
from checkpoint.tiny_compressed import compress_tiered, tiny_model

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import load_checkpoint, save_checkpoint, to_fake_quant_model
from pbs2p_edge.checkpoint.head import stored_head
from pbs2p_edge.errors import ConfigError, FormatError
from pbs2p_edge.pack import tiers
from pbs2p_exporters.gguf_export import export_gguf
from pbs2p_exporters.onnx_export import export_onnx


def _outlier_hessian(D: int, seed: int) -> torch.Tensor:
    """H of hidden states with a few dimensions far larger than the rest (as a real model's final norm output has)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(512, D, generator=g)
    h[:, :3] *= 30
    return 2 * h.T @ h / h.shape[0]


def _head_error(W: np.ndarray, Q: np.ndarray, H: torch.Tensor) -> float:
    E = torch.from_numpy(W - Q).double()
    return float((E @ H.double() * E).sum())


@pytest.mark.parametrize("tier", ["q4_0", "q8_0", "q3_s16", "q2_s16"])
def test_the_stored_head_has_less_logit_error_than_nearest_in_the_same_bytes(tier):
    g = torch.Generator().manual_seed(0)
    W, H = torch.randn(96, 64, generator=g) * 0.05, _outlier_hessian(64, 1)
    layer = stored_head(W, H, tier, 0.01)
    near = tiers.quantize_nearest(tier, W.numpy()) if tiers.TIERS[tier].ggml_type is None else None
    nearest_values = tiers.round_trip(tier, W.numpy())
    assert layer.tier == tier and (layer.rows, layer.cols) == (96, 64)
    if near is not None:
        assert layer.blocks.shape == near.shape
    ours, theirs = _head_error(W.numpy(), layer.decode(), H), _head_error(W.numpy(), nearest_values, H)
    assert ours < 0.8 * theirs  # measured: q4_0 0.38x, q8_0 0.73x, q3_s16 0.23x, q2_s16 0.37x
    again = stored_head(W, H, tier, 0.01)
    assert np.array_equal(again.blocks, layer.blocks)


def test_the_head_needs_a_grid_tier_that_fits_its_width():
    W, H = torch.randn(8, 64), torch.eye(64)
    with pytest.raises(ConfigError, match="grid tier"):
        stored_head(W, H, "f16", 0.01)
    with pytest.raises(ConfigError, match="divisible"):
        stored_head(torch.randn(8, 40), torch.eye(40), "q4_0", 0.01)


def _checkpoint(root, tokenizer, tie: bool, tier: str):
    model = tiny_model("llama", tie=tie)
    D = model.config.hidden_size
    out = root / f"head-{tie}-{tier}"
    save_checkpoint(out, model, copy.deepcopy(tokenizer), compress_tiered(model), CompressConfig(n=4, m=8), {},
                    {"model_id": "tiny-head"}, embed_tier=tier, head_hessian=_outlier_hessian(D, 2))
    return out, model


@pytest.mark.parametrize("tier", ["q4_0", "q3_s16"])
def test_a_tied_head_is_the_stored_embedding_everywhere(tmp_path, tiny_tokenizer, tier):
    """Tied: the one matrix is stored GPTQ'd; the GGUF's token_embd, the fake-quant model and a reloaded checkpoint
    all hold exactly those blocks' values; --embed-type of another tier rounds to nearest."""
    out, model = _checkpoint(tmp_path, tiny_tokenizer, True, tier)
    ck = load_checkpoint(out)
    key, layer = ck.head
    emb = ck.dense["model.embed_tokens.weight"]
    assert key == "model.embed_tokens.weight" and layer.tier == tier and (layer.rows, layer.cols) == emb.shape
    expected = stored_head(torch.from_numpy(emb), _outlier_hessian(emb.shape[1], 2), tier, 0.01)
    assert np.array_equal(layer.blocks, expected.blocks)
    assert not np.array_equal(layer.decode(), tiers.round_trip(tier, emb))
    fq, _ = to_fake_quant_model(out)
    np.testing.assert_array_equal(fq.lm_head.weight.detach().numpy(), layer.decode())
    names = {t.name: t for t in gguf.GGUFReader(str(export_gguf(out, tmp_path / "m.gguf"))).tensors}
    if tiers.TIERS[tier].ggml_type is None:
        stored = np.asarray(names["token_embd.pbs2p.q"].data).view(np.uint8).reshape(layer.blocks.shape)
    else:
        stored = np.asarray(names["token_embd.weight"].data).view(np.uint8).reshape(layer.blocks.shape)
    np.testing.assert_array_equal(stored, layer.blocks)
    other = "q8_0" if tier != "q8_0" else "q4_0"
    t = {t.name: t for t in gguf.GGUFReader(str(export_gguf(out, tmp_path / "o.gguf", embed_type=other))).tensors}
    np.testing.assert_array_equal(
        np.asarray(t["token_embd.weight"].data).view(np.uint8).reshape(-1),
        gguf.quants.quantize(emb.astype(np.float32), gguf.GGMLQuantizationType.Q8_0).view(np.uint8).reshape(-1))


def test_an_untied_head_is_stored_and_the_lookup_rounds_to_nearest(tmp_path, tiny_tokenizer):
    out, _ = _checkpoint(tmp_path, tiny_tokenizer, False, "q3_s16")
    ck = load_checkpoint(out)
    key, layer = ck.head
    assert key == "lm_head.weight"
    names = {t.name: t for t in gguf.GGUFReader(str(export_gguf(out, tmp_path / "m.gguf"))).tensors}
    head = np.asarray(names["output.pbs2p.q"].data).view(np.uint8).reshape(layer.blocks.shape)
    np.testing.assert_array_equal(head, layer.blocks)
    emb = ck.dense["model.embed_tokens.weight"]
    lookup = np.asarray(names["token_embd.pbs2p.q"].data).view(np.uint8).reshape(emb.shape[0], -1)
    np.testing.assert_array_equal(lookup, tiers.quantize_nearest("q3_s16", emb))
    fq, _ = to_fake_quant_model(out)
    np.testing.assert_array_equal(fq.lm_head.weight.detach().numpy(), layer.decode())
    np.testing.assert_array_equal(fq.model.embed_tokens.weight.detach().numpy(), tiers.round_trip("q3_s16", emb))


def test_no_hessian_or_an_f16_embedding_stores_no_head(tmp_path, tiny_tokenizer):
    model = tiny_model("llama", tie=True)
    for name, kw in {"none": {"embed_tier": "q4_0"},
                     "f16": {"embed_tier": "f16", "head_hessian": torch.eye(model.config.hidden_size)}}.items():
        out = tmp_path / name
        save_checkpoint(out, model, copy.deepcopy(tiny_tokenizer), compress_tiered(model), CompressConfig(n=4, m=8),
                        {}, {}, **kw)
        ck = load_checkpoint(out)
        assert ck.head is None and "head" not in ck.meta


def test_a_corrupt_head_is_refused(tmp_path, tiny_tokenizer):
    import json

    out, _ = _checkpoint(tmp_path, tiny_tokenizer, True, "q4_0")
    meta_path = out / "pbs2p.json"
    good = json.loads(meta_path.read_text())
    for bad, match in [({**good["head"], "tensor": "lm_head.weight"}, "no blocks"),
                       ({**good["head"], "rows": good["head"]["rows"] + 1}, "needs uint8 blocks"),
                       ("q4_0", "not a table")]:
        meta_path.write_text(json.dumps({**good, "head": bad}))
        with pytest.raises(FormatError, match=match):
            load_checkpoint(out)


def test_the_onnx_export_holds_the_stored_head(tmp_path, tiny_tokenizer):
    """The ONNX graph's embedding initializer (the tied head) is the stored head's values, as the GGUF's and the
    fake-quant model's."""
    out, _ = _checkpoint(tmp_path, tiny_tokenizer, True, "q3_s16")
    key, layer = load_checkpoint(out).head
    m = onnx.load(str(export_onnx(out, tmp_path / "m.onnx", flavor="portable")))
    emb = onnx.numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == key))
    np.testing.assert_array_equal(emb, layer.decode())
