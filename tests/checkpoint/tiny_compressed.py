"""Tiny compressed models for checkpoint and exporter tests: random Llama / OPT (tied or not) and valid LayerResults.

The tokenizer is tests/conftest.py's `tiny_tokenizer` fixture (320 tokens, matching vocab_size here).
"""

import numpy as np
import torch

from pbs2p_edge.algo.result import LayerResult


def sign_binarize(W: torch.Tensor, n: int, m: int, group_size: int, n_salient: int = 0, split: int = 1,
                  use_mu: bool = True) -> LayerResult:
    """A trivial but valid LayerResult: top-|W| N:M mask, signs, per-region mean-|W| scales (float16-exact)."""
    W = W.detach().float().numpy()
    R, K = W.shape
    G = -(-K // group_size)
    absw = np.abs(W).reshape(R, K // m, m)
    order = (-absw).argsort(axis=2, kind="stable").argsort(axis=2, kind="stable")
    mask = (order < n).reshape(R, K)
    salient = np.zeros(K, bool)
    if n_salient:
        salient[np.argsort(-np.abs(W).sum(0), kind="stable")[:n_salient]] = True
    P = 2 if n_salient else 1
    thresh = np.median(np.abs(W))
    group = np.where(mask & ~salient, np.minimum((np.abs(W) > thresh) * (split - 1), split - 1), 0).astype(np.uint8)
    region = np.where(salient[None], 0, 1 + group.astype(np.int64))
    gcol = np.arange(K) // group_size
    alpha = np.zeros((P, 1 + split, R, G), np.float32)
    mu = np.zeros((1 + split, R, G), np.float32)
    signs = np.zeros((P, R, K), bool)
    for r in range(1 + split):
        for g in range(G):
            sel = mask & (region == r) & (gcol == g)[None]
            cnt = np.maximum(sel.sum(1), 1)
            mean = np.where(sel, W, 0).sum(1) / cnt if use_mu else np.zeros(R)
            mu[r, :, g] = mean
            alpha[0, r, :, g] = np.where(sel, np.abs(W - mean[:, None]), 0).sum(1) / cnt
    f16 = lambda x: x.astype(np.float16).astype(np.float32)
    alpha, mu = f16(alpha), f16(mu)
    signs[0] = mask & (W >= 0)
    if P == 2:
        first = alpha[0][region, np.arange(R)[:, None], gcol[None]] * np.where(signs[0], 1, -1)
        resid = W - first
        signs[1] = mask & salient[None] & (resid >= 0)
        alpha[1, 0] = f16(np.stack([np.abs(np.where(mask & salient[None] & (gcol == g)[None], resid, 0)).mean(1)
                                    for g in range(G)], 1).astype(np.float32))
    t = torch.from_numpy
    return LayerResult(mask=t(mask), signs=t(signs), salient=t(salient), group=t(group), alpha=t(alpha), mu=t(mu),
                       col_scale=None, n=n, m=m, group_size=group_size, loss=0.0)


def tiny_model(arch: str, tie: bool = True, **overrides):
    """A random `arch` model (llama, mistral, qwen2: hidden 64, 2 layers, 4 heads / 2 KV heads; opt: 4 heads;
    gemma3_text: 4 layers, sliding (window 5), sliding, global, sliding, head_dim 32, query_pre_attn_scalar 24);
    overrides: more config fields."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, MistralConfig, OPTConfig, Qwen2Config

    torch.manual_seed(0)
    llama_like = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}
    if arch == "gemma3_text":
        cfg = Gemma3TextConfig(**{**dict(
            vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, max_position_embeddings=128, sliding_window=5,
            query_pre_attn_scalar=24, tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0, pad_token_id=1,
            layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"]),
            **overrides})
    elif arch in llama_like:
        cfg = llama_like[arch](**{**dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                         tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0), **overrides})
    else:
        cfg = OPTConfig(vocab_size=320, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                        word_embed_proj_dim=64, max_position_embeddings=128, tie_word_embeddings=tie,
                        bos_token_id=0, eos_token_id=0, pad_token_id=1, **overrides)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def linear_names(model) -> list[str]:
    blocks = ("layers.",)
    return [n for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear) and any(b in n for b in blocks)]


def compress(model, n=4, m=8, group_size=32, **kw) -> dict[str, LayerResult]:
    """Binarize every decoder-block linear with sign_binarize; also writes W_hat into the model (fake quant)."""
    results = {}
    for i, name in enumerate(linear_names(model)):
        lin = model.get_submodule(name)
        r = sign_binarize(lin.weight, n - (i % 2 if n > 1 else 0), m, group_size, **kw)  # mixed per-layer N
        results[name] = r
    return results


def apply_fake_quant(model, results):
    with torch.no_grad():
        for name, r in results.items():
            model.get_submodule(name).weight.copy_(r.dequantize())


# the tiers compress_tiered cycles through, binary included: every tier meets every linear shape in turn
TIER_CYCLE = ("q4_0", "pbs2p", "q3_g64", "q8_0", "q2_g64", "f16", "q4_s16", "q3_s16", "q2_s16")


def compress_tiered(model, seed: int = 0) -> dict:
    """A mixed-tier model: decoder linear i takes TIER_CYCLE[i % len(TIER_CYCLE)], the grid ones by GPTQ with a random input
    Gram matrix, the binary ones by sign_binarize 4:8. Writes W_hat into the model, like compress."""
    from pbs2p_edge.algo.gptq_grid import gptq_grid, round_f16
    from pbs2p_edge.pack.tiers import TIERS

    g = torch.Generator().manual_seed(seed)
    results = {}
    for i, name in enumerate(linear_names(model)):
        W = model.get_submodule(name).weight.detach().float()
        t = TIER_CYCLE[i % len(TIER_CYCLE)]
        if t == "pbs2p":
            results[name] = sign_binarize(W, 4, 8, 32)
        elif t == "f16":
            results[name] = round_f16(W)
        else:
            X = torch.randn(256, W.shape[1], generator=g)
            results[name] = gptq_grid(W, X.T @ X / 256, TIERS[t])
    apply_fake_quant(model, results)
    return results
