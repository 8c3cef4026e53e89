"""The table of supported architectures: one record per Hugging Face model_type, every fact the chain needs.

The PyTorch side (model/arch.py: where the blocks and linears are), the GGUF and ONNX exporters (names, keys, graph)
and the README's table are derived from ARCHITECTURES; the C loader's list of GGUF names is checked against it by
the test suite. check_config runs on a model's config before any weight is loaded, so a model the chain cannot carry
to the end fails in a second, naming what is supported, and not after an hour of compression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ModelError


@dataclass(frozen=True)
class Architecture:
    """Facts of one architecture (docs/GGUF.md §3 has their keys).

    model_type: config.model_type. gguf: general.architecture (llama.cpp's name), the prefix of its keys.
    layout: the block layout and tensor names, shared by a family ("llama": pre-RMSNorm, SwiGLU, rotate-half RoPE;
            "opt": LayerNorm, learned positions; "gemma3": (1 + w) RMSNorm before and after each sublayer, QK-norm,
            GeGLU, embedding x sqrt(hidden), sliding and global layers with their own RoPE base). norm, position: for
            the README. activation: the config field that names the MLP activation, its default, and the values the
            runtime has. biases: which linears may have one.
    sliding_window: how the config states a sliding attention window: "" (never), "sliding_window" (the field
            applies to every layer when set), "layer_types" (the field applies where layer_types says
            sliding_attention; uniform layer types only, but for the gemma3 layout, whose layers mix them).
    tokenizers: the tokenizer kinds of the architecture's published models that the chain carries, in libpbs2p's
            names (pbs2p_tokenizer_info.pre; docs/GGUF.md §5): "llama" SentencePiece-style BPE with byte fallback,
            and byte-level BPE split by the "gpt-2", "smollm" (SmolLM2), "llama-bpe" (Llama-3) or "qwen2" rules.
            Each has a test of libpbs2p's ids against Hugging Face's (tests/runtime/test_tokenizer.py).
    """

    model_type: str
    gguf: str
    layout: str
    norm: str
    position: str
    activation: tuple[str, str, tuple[str, ...]]
    biases: str
    sliding_window: str = ""
    tokenizers: tuple[str, ...] = ()


_SILU = ("hidden_act", "silu", ("silu",))
ARCHITECTURES: dict[str, Architecture] = {a.model_type: a for a in (
    Architecture("llama", "llama", "llama", "RMSNorm", "RoPE (rotate-half)", _SILU,
                 "optional on all linears (attention_bias, mlp_bias)",
                 tokenizers=("llama", "gpt-2", "smollm", "llama-bpe")),  # Llama-2, SmolLM2, Llama-3
    # llama.cpp writes Mistral as a llama model; its sliding window is one more key
    Architecture("mistral", "llama", "llama", "RMSNorm", "RoPE (rotate-half)", _SILU, "none",
                 sliding_window="sliding_window", tokenizers=("llama",)),
    Architecture("qwen2", "qwen2", "llama", "RMSNorm", "RoPE (rotate-half)", _SILU, "q, k, v",
                 sliding_window="layer_types", tokenizers=("qwen2",)),
    Architecture("opt", "opt", "opt", "LayerNorm (pre or post)", "learned (offset 2)",
                 ("activation_function", "relu", ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh")), "all linears",
                 tokenizers=("gpt-2",)),
    Architecture("gemma3_text", "gemma3", "gemma3", "RMSNorm (1 + w), before and after each sublayer; QK-norm",
                 "RoPE (rotate-half), a base for sliding and one for global layers",
                 ("hidden_activation", "gelu_pytorch_tanh", ("gelu_pytorch_tanh",)), "none",
                 sliding_window="layer_types", tokenizers=("llama",)),
)}

# per layout: the config's size fields (every real config.json has them; transformers' defaults describe a 7B model,
# so a config without them is refused, not filled in) and the state-dict names of the decoder blocks and embedding
_LLAMA_SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "max_position_embeddings")
SIZE_KEYS = {"llama": _LLAMA_SIZES, "gemma3": _LLAMA_SIZES,
             "opt": ("vocab_size", "hidden_size", "ffn_dim", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings")}
BLOCKS = {"llama": "model.layers", "gemma3": "model.layers", "opt": "model.decoder.layers"}
EMBEDDING = {"llama": "model.embed_tokens.weight", "gemma3": "model.embed_tokens.weight",
             "opt": "model.decoder.embed_tokens.weight"}
# other fields the exporters read, by the kind of value they must hold when present (None: absent)
FIELD_KINDS = {
    "head_dim": int, "num_key_value_heads": int, "max_position_embeddings": int, "word_embed_proj_dim": int,
    "sliding_window": int, "max_window_layers": int, "ffn_dim": int,
    "rms_norm_eps": float, "rope_theta": float, "rope_local_base_freq": float, "query_pre_attn_scalar": float,
    "tie_word_embeddings": bool, "do_layer_norm_before": bool, "use_sliding_window": bool,
    "hidden_act": str, "activation_function": str, "hidden_activation": str,
    "rope_scaling": dict, "rope_parameters": dict, "layer_types": list,
}


# fields of FIELD_KINDS a layout cannot do without
REQUIRED = {"llama": ("rms_norm_eps",), "gemma3": ("rms_norm_eps", "head_dim", "query_pre_attn_scalar"), "opt": ()}


def _check_kinds(config: dict, model_type: str, layout: str) -> None:
    for key, kind in FIELD_KINDS.items():
        value = config.get(key)
        if value is None and key in REQUIRED[layout]:
            raise ModelError(f"{model_type} config: {key} is missing")
        if value is None:
            continue
        ok = (type(value) is int and value >= 0 if kind is int else
              type(value) in (int, float) and math.isfinite(value) and value > 0 if kind is float else
              isinstance(value, kind) and (kind is not list or all(isinstance(v, str) for v in value)))
        if not ok:
            raise ModelError(f"{model_type} config: {key} = {value!r} is not a "
                             f"{ {int: 'whole number >= 0', float: 'positive number'}.get(kind, kind.__name__)}")


# the ONNX graph's activations per layout (docs/ONNX.md §2)
ONNX_ACTIVATIONS = {"llama": ("silu",), "gemma3": ("gelu_pytorch_tanh",), "opt": ("relu",)}
# RoPE scalings each format computes (model/arch: transformers computes any)
ROPE_SCALINGS = {".gguf": ("linear", "llama3"), ".onnx": ("llama3",)}


def supported() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def architecture(config: dict) -> Architecture:
    """The record of a config (a dict, as config.json); ModelError naming the supported ones otherwise."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        raise ModelError(f"unsupported architecture {model_type!r}; supported: {supported()}")
    return ARCHITECTURES[model_type]


def sliding_layers(config: dict) -> list[bool]:
    """Per layer, whether it attends through the sliding window (gemma3: layer_types, or transformers 4's pattern of
    sliding_window_pattern - 1 sliding layers then a global one)."""
    n = config["num_hidden_layers"]
    layer_types = config.get("layer_types")
    if layer_types:
        if len(layer_types) != n or not set(layer_types) <= {"sliding_attention", "full_attention"}:
            raise ModelError(f"{config.get('model_type')} config: layer_types {layer_types!r} are not {n} of "
                             "sliding_attention / full_attention")
        return [t == "sliding_attention" for t in layer_types]
    pattern = config.get("sliding_window_pattern") or config.get("_sliding_window_pattern") or 6
    return [bool((i + 1) % pattern) for i in range(n)]


def sliding_window(config: dict) -> int | None:
    """The attention window of the sliding layers (a key sees itself and the window - 1 before it), None for full
    attention everywhere.

    ModelError when the layers of a layout other than gemma3 mix full and sliding attention: the runtime has one
    window per model there."""
    arch = architecture(config)
    layer_types = config.get("layer_types") or []
    if arch.layout == "gemma3":
        window = config.get("sliding_window")
        return int(window) if window and any(sliding_layers(config)) else None
    if len(set(layer_types)) > 1:
        raise ModelError(f"{arch.model_type} with mixed attention layer types {sorted(set(layer_types))} is not supported")
    window = config.get("sliding_window")
    if arch.sliding_window == "sliding_window":
        return int(window) if window else None
    if arch.sliding_window == "layer_types":
        return int(window) if window and layer_types and layer_types[0] == "sliding_attention" else None
    return None


def rope_config(config: dict) -> tuple[float, dict | None]:
    """(theta, scaling dict with its rope_type, or None) from transformers 4 (rope_theta / rope_scaling) or 5
    (rope_parameters) configs."""
    params = config.get("rope_parameters") or {}
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    scaling = config.get("rope_scaling") or params
    rtype = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
    numbers = {"rope_theta": theta, **{k: scaling.get(k) for k in ("factor", "low_freq_factor", "high_freq_factor",
                                                                  "original_max_position_embeddings")}}
    for key, value in numbers.items():
        if (value is not None or key == "rope_theta") and not (type(value) in (int, float) and math.isfinite(value)
                                                                and value > 0):
            raise ModelError(f"{config.get('model_type')} config: RoPE {key} = {value!r} is not a positive number")
    if not isinstance(rtype, str):
        raise ModelError(f"{config.get('model_type')} config: RoPE type {rtype!r} is not a name")
    return float(theta), (None if rtype == "default" else {**scaling, "rope_type": rtype})


def gemma_rope_bases(config: dict) -> tuple[float, float]:
    """(global, sliding) RoPE bases of a gemma3 config: transformers 5's rope_parameters per layer type, or 4's
    rope_theta and rope_local_base_freq; ModelError for a scaled RoPE (not supported yet)."""
    params = config.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        bases = []
        for kind, default in (("full_attention", 1_000_000.0), ("sliding_attention", 10_000.0)):
            p = params.get(kind) or {}
            if p.get("rope_type", "default") != "default":
                raise ModelError(f"{config.get('model_type')}: RoPE scaling {p.get('rope_type')!r} of its {kind} "
                                 "layers is not supported")
            bases.append(p.get("rope_theta", default))
    else:
        if (config.get("rope_scaling") or {}).get("rope_type", "default") != "default":
            raise ModelError(f"{config.get('model_type')}: RoPE scaling is not supported")
        bases = [config.get("rope_theta", 1_000_000.0), config.get("rope_local_base_freq", 10_000.0)]
    for b in bases:
        if not (type(b) in (int, float) and math.isfinite(b) and b > 0):
            raise ModelError(f"{config.get('model_type')} config: RoPE base {b!r} is not a positive number")
    return float(bases[0]), float(bases[1])


def _check_gemma3(config: dict) -> None:
    """The variant libpbs2p computes: no logit soft-capping, causal attention."""
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if config.get(key) is not None:
            raise ModelError(f"{config['model_type']} with {key} = {config[key]!r} is not supported")
    if config.get("use_bidirectional_attention"):
        raise ModelError(f"{config['model_type']} with bidirectional attention is not supported")
    gemma_rope_bases(config)


def check_config(config: dict, output: str | None = None) -> Architecture:
    """The config's record after every check that needs no weights: the architecture, its sizes, uniform attention
    layers and,
    for an `output` (".gguf" / ".onnx"), the variant the runtime or graph computes. ModelError otherwise."""
    arch = architecture(config)
    for key in SIZE_KEYS[arch.layout]:
        value = config.get(key)
        if type(value) is not int or value < 1:
            raise ModelError(f"{arch.model_type} config: {key} must be a whole number >= 1, got {value!r}")
    _check_kinds(config, arch.model_type, arch.layout)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # an int or a list of them, inside the vocabulary
        value = config.get(key)
        ids = value if isinstance(value, list) else [value]
        if value is not None and not all(type(i) is int and (0 <= i < config["vocab_size"] or
                                                             (key == "pad_token_id" and i == -1)) for i in ids):
            raise ModelError(f"{arch.model_type} config: {key} = {value!r} is not a token of its "
                             f"{config['vocab_size']}-token vocabulary")
    if arch.layout == "llama":
        rope_config(config)
    if arch.layout == "gemma3":
        _check_gemma3(config)
    sliding_window(config)
    if output is None:
        return arch
    if arch.layout == "opt" and config.get("word_embed_proj_dim", config.get("hidden_size")) != config.get("hidden_size"):
        raise ModelError("OPT with word_embed_proj_dim != hidden_size (project_in/out) is not supported")
    field, default, known = arch.activation
    acts = ONNX_ACTIVATIONS[arch.layout] if output == ".onnx" else known
    act = config.get(field) or default
    if act not in acts:
        raise ModelError(f"{output[1:].upper()} export of {arch.model_type} supports {field} "
                         f"{', '.join(map(repr, acts))}, not {act!r}")
    scaling = rope_config(config)[1]
    rtype = scaling and scaling["rope_type"]
    if arch.layout == "llama" and rtype and rtype not in ROPE_SCALINGS[output]:
        raise ModelError(f"{output[1:].upper()} export supports RoPE scaling "
                         f"{', '.join(ROPE_SCALINGS[output])} (or none), not {rtype!r}")
    return arch


def markdown_table() -> str:
    """The README's table of supported architectures."""
    rows = ["| model_type | GGUF name | norm | positions | MLP activation | biases | sliding window | tokenizers |",
            "|---|---|---|---|---|---|---|---|"]
    for a in ARCHITECTURES.values():
        window = {"": "no", "sliding_window": "yes (`sliding_window`)",
                  "layer_types": "yes, when every layer is sliding (`layer_types`)"}[a.sliding_window]
        if a.layout == "gemma3":
            window = "yes, per layer (`layer_types`)"
        rows.append(f"| {a.model_type} | {a.gguf} | {a.norm} | {a.position} | {', '.join(a.activation[2])} "
                    f"| {a.biases} | {window} | {', '.join(a.tokenizers)} |")
    return "\n".join(rows)
