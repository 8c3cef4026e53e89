"""Fixtures for exporter tests: tiny compressed checkpoints (Llama, Qwen2, Mistral and OPT) written once per session."""

import copy
from pathlib import Path

import pytest
from checkpoint.tiny_compressed import compress, tiny_model

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import save_checkpoint


def _write(root: Path, tokenizer, arch: str, tie: bool, config: dict | None = None, **kw) -> Path:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }}{% endfor %}"
    model = tiny_model(arch, tie=tie, **(config or {}))
    out = root / f"{arch}-{'tied' if tie else 'untied'}"
    save_checkpoint(out, model, tok, compress(model, **kw), CompressConfig(n=4, m=8), {}, {"model_id": f"tiny-{arch}"})
    return out


@pytest.fixture(scope="session")
def llama_ckpt(tmp_path_factory, tiny_tokenizer):
    return _write(tmp_path_factory.mktemp("ck"), tiny_tokenizer, "llama", True)


@pytest.fixture(scope="session")
def llama_untied_ckpt(tmp_path_factory, tiny_tokenizer):
    return _write(tmp_path_factory.mktemp("ck"), tiny_tokenizer, "llama", False, n_salient=5, split=2)


@pytest.fixture(scope="session")
def qwen2_ckpt(tmp_path_factory, tiny_tokenizer):
    """Qwen2: q/k/v biases (random, from the seeded init)."""
    return _write(tmp_path_factory.mktemp("ck"), tiny_tokenizer, "qwen2", True)


@pytest.fixture(scope="session")
def mistral_ckpt(tmp_path_factory, tiny_tokenizer):
    """Mistral with a sliding window of 4 positions, shorter than the test prompts."""
    return _write(tmp_path_factory.mktemp("ck"), tiny_tokenizer, "mistral", False, {"sliding_window": 4})


@pytest.fixture(scope="session")
def gemma3_ckpt(tmp_path_factory, tiny_tokenizer):
    """Gemma 3: sliding (window 5) and global layers, head_dim 32 != hidden / heads, non-trivial (1 + w) norms."""
    import torch

    tok = copy.deepcopy(tiny_tokenizer)
    model = tiny_model("gemma3_text", tie=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(0.3 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("ck") / "gemma3-tied"
    save_checkpoint(out, model, tok, compress(model), CompressConfig(n=4, m=8), {}, {"model_id": "tiny-gemma3"})
    return out


@pytest.fixture(scope="session")
def opt_ckpt(tmp_path_factory, tiny_tokenizer):
    return _write(tmp_path_factory.mktemp("ck"), tiny_tokenizer, "opt", True, n_salient=3, split=3)


@pytest.fixture(scope="session")
def tiered_ckpt(tmp_path_factory, tiny_tokenizer):
    """A tiny tied Llama whose linears cycle through every tier (tiny_compressed.TIER_CYCLE), embedding q4_0."""
    from checkpoint.tiny_compressed import compress_tiered

    tok = copy.deepcopy(tiny_tokenizer)
    model = tiny_model("llama", tie=True)
    out = tmp_path_factory.mktemp("ck") / "llama-tiered"
    save_checkpoint(out, model, tok, compress_tiered(model), CompressConfig(n=4, m=8), {}, {"model_id": "tiny-tiered"},
                    embed_tier="q4_0")
    return out


@pytest.fixture(scope="session")
def opt_tiered_ckpt(tmp_path_factory, tiny_tokenizer):
    """A tiny tied OPT (biases on every linear) whose linears cycle through every tier, embedding q8_0."""
    from checkpoint.tiny_compressed import compress_tiered

    model = tiny_model("opt", tie=True)
    out = tmp_path_factory.mktemp("ck") / "opt-tiered"
    save_checkpoint(out, model, copy.deepcopy(tiny_tokenizer), compress_tiered(model, seed=1), CompressConfig(n=4, m=8),
                    {}, {"model_id": "tiny-opt-tiered"}, embed_tier="q8_0")
    return out


# the grid-only checkpoint's cycle: every grid tier and f16, no binary layer
GRID_CYCLE = ("q2_g64", "q8_0", "f16", "q3_g64", "q4_0", "q4_s16", "q3_s16", "q2_s16")


@pytest.fixture(scope="session")
def grid_ckpt(tmp_path_factory, tiny_tokenizer):
    """A tiny untied Llama whose linears are all on grid / f16 tiers (GRID_CYCLE), embedding and head f16."""
    import torch
    from checkpoint.tiny_compressed import apply_fake_quant, linear_names

    from pbs2p_edge.algo.gptq_grid import gptq_grid, round_f16
    from pbs2p_edge.pack.tiers import TIERS

    model = tiny_model("llama", tie=False)
    g = torch.Generator().manual_seed(2)
    results = {}
    for i, name in enumerate(linear_names(model)):
        W = model.get_submodule(name).weight.detach().float()
        t = GRID_CYCLE[i % len(GRID_CYCLE)]
        X = torch.randn(256, W.shape[1], generator=g)
        results[name] = round_f16(W) if t == "f16" else gptq_grid(W, X.T @ X / 256, TIERS[t])
    apply_fake_quant(model, results)
    out = tmp_path_factory.mktemp("ck") / "llama-grid"
    save_checkpoint(out, model, copy.deepcopy(tiny_tokenizer), results, CompressConfig(n=4, m=8), {},
                    {"model_id": "tiny-grid"}, embed_tier="f16")
    return out


@pytest.fixture(scope="module")
def fq_models():
    """Fake-quantized torch models by checkpoint fixture name, built once per module (onnx_run.fake_quant_of)."""
    return {}
