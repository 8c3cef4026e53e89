"""Hugging Face -> GGUF naming: tensor names (llama.cpp style) and architecture keys, per supported architecture."""

from __future__ import annotations

import math
import re

import numpy as np

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack.architectures import (Architecture, check_config, gemma_rope_bases, rope_config, sliding_layers,
                                             sliding_window)

# per layout (Architecture.layout): (regex on the HF state-dict name, GGUF name template); {0} is the block index.
_LLAMA = [
    (r"model\.embed_tokens\.weight", "token_embd.weight"),
    (r"model\.norm\.weight", "output_norm.weight"),
    (r"lm_head\.weight", "output.weight"),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", "blk.{0}.attn_norm.weight"),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", "blk.{0}.ffn_norm.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", "blk.{0}.attn_q.{1}"),
    (r"model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)", "blk.{0}.attn_k.{1}"),
    (r"model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)", "blk.{0}.attn_v.{1}"),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)", "blk.{0}.attn_output.{1}"),
    (r"model\.layers\.(\d+)\.mlp\.gate_proj\.(weight|bias)", "blk.{0}.ffn_gate.{1}"),
    (r"model\.layers\.(\d+)\.mlp\.up_proj\.(weight|bias)", "blk.{0}.ffn_up.{1}"),
    (r"model\.layers\.(\d+)\.mlp\.down_proj\.(weight|bias)", "blk.{0}.ffn_down.{1}"),
]
_OPT = [
    (r"model\.decoder\.embed_tokens\.weight", "token_embd.weight"),
    (r"model\.decoder\.embed_positions\.weight", "position_embd.weight"),
    (r"model\.decoder\.final_layer_norm\.(weight|bias)", "output_norm.{0}"),
    (r"lm_head\.weight", "output.weight"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", "blk.{0}.attn_norm.{1}"),
    (r"model\.decoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", "blk.{0}.ffn_norm.{1}"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", "blk.{0}.attn_q.{1}"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)", "blk.{0}.attn_k.{1}"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)", "blk.{0}.attn_v.{1}"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", "blk.{0}.attn_output.{1}"),
    (r"model\.decoder\.layers\.(\d+)\.fc1\.(weight|bias)", "blk.{0}.ffn_up.{1}"),
    (r"model\.decoder\.layers\.(\d+)\.fc2\.(weight|bias)", "blk.{0}.ffn_down.{1}"),
]
# Gemma 3 (llama.cpp's names): its post_attention_layernorm follows attention, pre_feedforward_layernorm leads the MLP
_GEMMA3 = [r for r in _LLAMA if "post_attention_layernorm" not in r[0]] + [
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", "blk.{0}.post_attention_norm.weight"),
    (r"model\.layers\.(\d+)\.pre_feedforward_layernorm\.weight", "blk.{0}.ffn_norm.weight"),
    (r"model\.layers\.(\d+)\.post_feedforward_layernorm\.weight", "blk.{0}.post_ffw_norm.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.q_norm\.weight", "blk.{0}.attn_q_norm.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.k_norm\.weight", "blk.{0}.attn_k_norm.weight"),
]
_RULES = {layout: [(re.compile(p), t) for p, t in rules]
          for layout, rules in (("llama", _LLAMA), ("opt", _OPT), ("gemma3", _GEMMA3))}


def gguf_arch(config: dict) -> Architecture:
    """The table's record of a checkpoint's config, checked for GGUF export (ModelError otherwise)."""
    return check_config(config, ".gguf")


def gguf_tensor_name(arch: Architecture, hf_name: str) -> str:
    """GGUF name of a state-dict tensor; FormatError for a tensor this architecture does not know."""
    for rx, template in _RULES[arch.layout]:
        mt = rx.fullmatch(hf_name)
        if mt:
            return template.format(*mt.groups())
    raise FormatError(f"no GGUF name for tensor {hf_name!r} of a {arch.model_type} model")


def gguf_tensor_value(arch: Architecture, gguf_name: str, a: np.ndarray) -> np.ndarray:
    """The values the file holds for tensor `gguf_name`: Gemma's RMSNorm scales by (1 + w), so its norm weights are
    stored as 1 + w in float32 (as Hugging Face computes them; llama.cpp's converter does the same)."""
    if arch.layout == "gemma3" and gguf_name.endswith("norm.weight"):
        return np.asarray(a, dtype=np.float32) + np.float32(1.0)
    return a


def sort_key(gguf_name: str) -> tuple:
    """File order: token/position embeddings, blocks by index, then output norm and head."""
    parts = gguf_name.split(".")
    if parts[0] == "blk":
        return (1, int(parts[1]), ".".join(parts[2:]))
    return (0 if parts[0] in ("token_embd", "position_embd", "rope_freqs") else 2, 0, gguf_name)


def llama3_rope_factors(config: dict, head_dim: int, theta: float, scaling: dict) -> np.ndarray:
    """Per-frequency divisors of Llama-3 RoPE scaling, as llama.cpp's rope_freqs.weight (float32, head_dim/2)."""
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _llama_family_keys(p: str, c: dict, theta: float) -> list[tuple[str, str, object]]:
    """docs/GGUF.md §3 llama keys 1-9 under the prefix p (the llama and gemma3 layouts)."""
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    return [
        (f"{p}.vocab_size", "UINT32", c["vocab_size"]),
        (f"{p}.context_length", "UINT32", c["max_position_embeddings"]),
        (f"{p}.embedding_length", "UINT32", c["hidden_size"]),
        (f"{p}.block_count", "UINT32", c["num_hidden_layers"]),
        (f"{p}.feed_forward_length", "UINT32", c["intermediate_size"]),
        (f"{p}.attention.head_count", "UINT32", heads),
        (f"{p}.attention.head_count_kv", "UINT32", c.get("num_key_value_heads") or heads),
        (f"{p}.attention.key_length", "UINT32", head_dim),
        (f"{p}.attention.value_length", "UINT32", head_dim),
        (f"{p}.rope.dimension_count", "UINT32", head_dim),
        (f"{p}.rope.freq_base", "FLOAT32", theta),
        (f"{p}.attention.layer_norm_rms_epsilon", "FLOAT32", float(c["rms_norm_eps"])),
    ]


def arch_keys(arch: Architecture, config: dict) -> list[tuple[str, str, object]]:
    """(key, gguf value type name, value) of the architecture's hyperparameters; see docs/GGUF.md §3."""
    c, p = config, arch.gguf
    if arch.layout == "llama":
        theta, scaling = rope_config(c)
        keys = _llama_family_keys(p, c, theta)
        if scaling is not None:
            keys.append((f"{p}.rope.scaling.type", "STRING", scaling["rope_type"]))
            if "factor" in scaling:
                keys.append((f"{p}.rope.scaling.factor", "FLOAT32", float(scaling["factor"])))
            if "original_max_position_embeddings" in scaling:
                keys.append((f"{p}.rope.scaling.original_context_length", "UINT32",
                             int(scaling["original_max_position_embeddings"])))
        window = sliding_window(c)
        if window:
            keys.append((f"{p}.attention.sliding_window", "UINT32", window))
        return keys
    if arch.layout == "gemma3":
        theta, theta_swa = gemma_rope_bases(c)
        keys = _llama_family_keys(p, c, theta) + [
            (f"{p}.rope.freq_base_swa", "FLOAT32", theta_swa),
            (f"{p}.attention.scale", "FLOAT32", float(c["query_pre_attn_scalar"]) ** -0.5),
        ]
        window = sliding_window(c)
        if window:
            keys.append((f"{p}.attention.sliding_window", "UINT32", window))
            keys.append((f"{p}.attention.sliding_window_pattern", "ARRAY_BOOL", sliding_layers(c)))
        return keys
    if arch.layout == "opt":
        heads = c["num_attention_heads"]
        return [
            ("opt.vocab_size", "UINT32", c["vocab_size"]),
            ("opt.context_length", "UINT32", c["max_position_embeddings"]),
            ("opt.embedding_length", "UINT32", c["hidden_size"]),
            ("opt.block_count", "UINT32", c["num_hidden_layers"]),
            ("opt.feed_forward_length", "UINT32", c["ffn_dim"]),
            ("opt.attention.head_count", "UINT32", heads),
            ("opt.attention.head_count_kv", "UINT32", heads),
            ("opt.attention.layer_norm_epsilon", "FLOAT32", 1e-5),  # torch.nn.LayerNorm default, as OPT uses
            ("opt.position_offset", "UINT32", 2),  # OPT's learned positions start at row 2 of position_embd
            ("opt.activation", "STRING", c.get("activation_function", "relu")),
            ("opt.layer_norm_before", "BOOL", bool(c.get("do_layer_norm_before", True))),
        ]
    raise FormatError(f"no GGUF keys for the {arch.layout!r} layout")


def add_arch_keys(w, arch: Architecture, config: dict) -> None:
    """arch_keys onto a gguf.GGUFWriter; a type "ARRAY_<T>" is an array of T."""
    import gguf

    V = gguf.GGUFValueType
    for key, vtype, value in arch_keys(arch, config):
        if vtype.startswith("ARRAY_"):
            w.add_key_value(key, value, V.ARRAY, V[vtype.removeprefix("ARRAY_")])
        else:
            w.add_key_value(key, value, V[vtype])


def extra_tensors(arch: Architecture, config: dict) -> dict[str, np.ndarray]:
    """Tensors llama.cpp derives from the config (Llama-3 rope_freqs.weight)."""
    if arch.layout != "llama":
        return {}
    theta, scaling = rope_config(config)
    if scaling is None or scaling["rope_type"] != "llama3":
        return {}
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return {"rope_freqs.weight": llama3_rope_factors(config, head_dim, theta, scaling)}
