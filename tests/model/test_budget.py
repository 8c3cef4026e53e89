"""plan_budget and tiered compression on a tiny Llama: the budget is met, sensitivity is measured, tiers are kept."""

import numpy as np
import pytest
import torch

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.algo.gptq_grid import GridResult
from pbs2p_edge.algo.result import LayerResult
from pbs2p_edge.calib.windows import calibration_windows
from pbs2p_edge.errors import ConfigError
from pbs2p_edge.model.budget import fisher, model_parameters, plan_budget, tokenizer_bytes
from pbs2p_edge.model.sequential import compress_model
from pbs2p_edge.pack import tiers


@pytest.fixture
def calib(tiny_ids):
    return calibration_windows(tiny_ids, nsamples=4, seqlen=32, seed=0)


def _linear_bits(plan, model):
    mods = dict(model.named_modules())
    return sum(mods[n].weight.numel() * tiers.TIERS[t].bits_for(mods[n].weight.shape[1]) for n, t in plan.linears.items())


def test_fisher_is_the_sum_of_squared_window_gradients(tiny_llama, calib):
    w = tiny_llama.model.layers[1].mlp.down_proj.weight
    F = fisher(tiny_llama, calib[:2], [w])[0]
    expect = torch.zeros_like(w)
    for j in range(2):
        tiny_llama.zero_grad()
        tiny_llama(input_ids=calib[j:j + 1], labels=calib[j:j + 1]).loss.backward()
        expect += w.grad.square()
    torch.testing.assert_close(F, expect)
    assert all(p.requires_grad for p in tiny_llama.parameters())  # restored


def test_plan_meets_the_budget_and_spends_it(tiny_llama, tiny_tokenizer, calib):
    n = model_parameters(tiny_llama)
    low = plan_budget(tiny_llama, tiny_tokenizer, calib, 20.0)
    high = plan_budget(tiny_llama, tiny_tokenizer, calib, 40.0)
    for plan, bpw in ((low, 20.0), (high, 40.0)):
        assert plan.estimated_bytes * 8 <= bpw * n
        assert set(plan.linears) == {f"model.layers.{i}.{p}" for i in range(2) for p in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    assert _linear_bits(high, tiny_llama) >= _linear_bits(low, tiny_llama)
    assert sum(high.losses.values()) <= sum(low.losses.values())
    # tiny models are mostly tokenizer and embedding: a budget below them is refused before any work
    with pytest.raises(ConfigError, match="smallest file"):
        plan_budget(tiny_llama, tiny_tokenizer, calib[:0], 2.0)  # no windows: refused before any gradient


def test_tokenizer_bytes_counts_vocab_and_merges(tiny_tokenizer):
    assert 320 * 9 < tokenizer_bytes(tiny_tokenizer) < 320 * 200


def test_mixed_plan_compresses_each_linear_in_its_tier(tiny_llama, calib):
    names = [f"model.layers.{i}.{p}" for i in range(2) for p in ("self_attn.q_proj", "mlp.down_proj",
                                                                    "mlp.up_proj", "self_attn.v_proj")]
    plan = dict(zip(names, ["q4_0", "q3_g64", "q2_g64", "q8_0", "f16", "pbs2p", "q4_0", "q3_g64"]))
    run = compress_model(tiny_llama, calib, CompressConfig(method="rtn"), plan=plan, progress=False)
    assert len(run.results) == 14
    for name, t in plan.items():
        assert run.tiers[name] == t
        mod = tiny_llama.get_submodule(name)
        np.testing.assert_array_equal(mod.weight.detach().numpy(), run.results[name].dequantize().numpy())
    assert isinstance(run.results["model.layers.0.self_attn.q_proj"], GridResult)
    assert isinstance(run.results["model.layers.0.self_attn.k_proj"], LayerResult)  # not in the plan: binary
    assert run.importance == []  # the plan spends the bits: no CFS


def test_unknown_tier_fails_before_work(tiny_llama, calib):
    with pytest.raises(ConfigError, match="unknown tier"):
        compress_model(tiny_llama, calib, CompressConfig(), plan={"model.layers.0.mlp.up_proj": "q5_k"},
                       progress=False)
