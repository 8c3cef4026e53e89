"""Tests of apply_results: dequantized weights written in place, mismatches rejected before any write."""

import pytest
import torch

from pbs2p_edge.algo.result import LayerResult
from pbs2p_edge.errors import ModelError
from pbs2p_edge.model.fake_quant import apply_results


def sign_result(R: int, K: int, seed: int) -> LayerResult:
    """A 1-region, 1-plane layer: W_hat[i, j] = alpha[i] * sign, every weight kept (n = m = 8)."""
    g = torch.Generator().manual_seed(seed)
    signs = torch.rand(1, R, K, generator=g) > 0.5
    alpha = torch.rand(1, 2, R, 1, generator=g).half().float()
    return LayerResult(
        mask=torch.ones(R, K, dtype=torch.bool), signs=signs, salient=torch.zeros(K, dtype=torch.bool),
        group=torch.zeros(R, K, dtype=torch.uint8), alpha=alpha, mu=torch.zeros(2, R, 1), col_scale=None,
        n=8, m=8, group_size=128, loss=0.0,
    )


def test_writes_dequantized_weights(tiny_llama):
    names = ["model.layers.0.self_attn.k_proj", "model.layers.1.mlp.down_proj"]
    results = {names[0]: sign_result(32, 64, 0), names[1]: sign_result(64, 128, 1)}
    untouched = tiny_llama.get_submodule("model.layers.0.self_attn.q_proj").weight.clone()
    apply_results(tiny_llama, results)
    for name in names:
        w = tiny_llama.get_submodule(name).weight
        assert torch.equal(w, results[name].dequantize())
        assert set(w.abs().unique().tolist()) <= set(results[name].alpha.abs().flatten().tolist())
    assert torch.equal(tiny_llama.get_submodule("model.layers.0.self_attn.q_proj").weight, untouched)


def test_writes_in_the_models_dtype(tiny_llama):
    tiny_llama.to(torch.bfloat16)
    r = sign_result(64, 64, 2)
    apply_results(tiny_llama, {"model.layers.0.self_attn.o_proj": r})
    w = tiny_llama.get_submodule("model.layers.0.self_attn.o_proj").weight
    assert w.dtype == torch.bfloat16 and torch.equal(w, r.dequantize().bfloat16())


def test_mismatches_raise_before_writing(tiny_llama):
    before = tiny_llama.get_submodule("model.layers.0.self_attn.q_proj").weight.clone()
    good = {"model.layers.0.self_attn.q_proj": sign_result(64, 64, 0)}
    for bad, match in [
        ({"model.layers.9.self_attn.q_proj": sign_result(64, 64, 0)}, "does not exist"),
        ({"model.layers.0.self_attn.k_proj": sign_result(64, 64, 0)}, r"shape \(64, 64\).*\(32, 64\)"),
        ({"model.layers.0.input_layernorm": sign_result(64, 64, 0)}, "not nn.Linear"),
    ]:
        with pytest.raises(ModelError, match=match):
            apply_results(tiny_llama, {**good, **bad})
    assert torch.equal(tiny_llama.get_submodule("model.layers.0.self_attn.q_proj").weight, before)
