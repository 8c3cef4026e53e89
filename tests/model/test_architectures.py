"""Tests of the architecture table: the checks on a config alone, the sliding window rule, and the README's copy."""

from pathlib import Path

import pytest

from pbs2p_edge.errors import ModelError
from pbs2p_edge.pack.architectures import ARCHITECTURES, check_config, markdown_table, sliding_window

README = Path(__file__).resolve().parents[2] / "README.md"
LLAMA_SIZES = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-6}
OPT_SIZES = {**LLAMA_SIZES, "ffn_dim": 64}


def _c(model_type, **fields):
    return {"model_type": model_type, **(OPT_SIZES if model_type == "opt" else LLAMA_SIZES), **fields}


def test_readme_lists_exactly_the_table():
    table = "\n".join("  " + line for line in markdown_table().splitlines())
    assert table in README.read_text()
    assert [line.split("|")[1].strip() for line in markdown_table().splitlines()[2:]] == list(ARCHITECTURES)


@pytest.mark.parametrize("config, window", [
    ({"model_type": "llama", "sliding_window": 4}, None),  # Llama has no window, whatever the field says
    ({"model_type": "mistral", "sliding_window": 4096}, 4096),
    ({"model_type": "mistral", "sliding_window": None}, None),
    ({"model_type": "qwen2", "sliding_window": 8, "layer_types": ["full_attention"] * 3}, None),
    ({"model_type": "qwen2", "sliding_window": 8, "layer_types": ["sliding_attention"] * 3}, 8),
    ({"model_type": "opt"}, None),
])
def test_sliding_window_follows_the_config_as_transformers_reads_it(config, window):
    assert sliding_window(config) == window


def test_check_config_refuses_before_any_weight():
    with pytest.raises(ModelError, match="unsupported architecture 'gemma3'; supported: gemma3_text, llama, mistral, opt, qwen2"):
        check_config({"model_type": "gemma3"})
    with pytest.raises(ModelError, match="mixed attention layer types"):
        check_config(_c("qwen2", layer_types=["full_attention", "sliding_attention"]))
    # a config without its sizes would be filled in by transformers' defaults (a 7B model): refused
    with pytest.raises(ModelError, match="llama config: hidden_size must be a whole number >= 1, got None"):
        check_config({"model_type": "llama", "vocab_size": 64})
    with pytest.raises(ModelError, match="ffn_dim must be a whole number >= 1, got '64'"):
        check_config(_c("opt", ffn_dim="64"))
    # compression alone (no output) takes what transformers runs: OPT with project_in, a yarn RoPE, gelu
    opt_proj = _c("opt", hidden_size=1024, word_embed_proj_dim=512)
    yarn = _c("llama", rope_parameters={"rope_type": "yarn", "factor": 2.0})
    gelu = _c("llama", hidden_act="gelu")
    for config in (opt_proj, yarn, gelu):
        assert check_config(config) is ARCHITECTURES[config["model_type"]]
    with pytest.raises(ModelError, match="project_in"):
        check_config(opt_proj, ".gguf")
    with pytest.raises(ModelError, match="GGUF export supports RoPE scaling linear, llama3 \\(or none\\), not 'yarn'"):
        check_config(yarn, ".gguf")
    with pytest.raises(ModelError, match="ONNX export of llama supports hidden_act 'silu', not 'gelu'"):
        check_config(gelu, ".onnx")
    assert check_config(_c("opt", activation_function="gelu"), ".gguf").gguf == "opt"
    with pytest.raises(ModelError, match="ONNX export of opt supports activation_function 'relu', not 'gelu'"):
        check_config(_c("opt", activation_function="gelu"), ".onnx")
    linear = _c("mistral", rope_scaling={"type": "linear", "factor": 2.0})
    assert check_config(linear, ".gguf").gguf == "llama"
    with pytest.raises(ModelError, match="not 'linear'"):
        check_config(linear, ".onnx")


def test_gemma3_checks():
    """Gemma 3: layer types mix sliding and global (one bool per layer in the GGUF), transformers 4 and 5 RoPE
    configs give the same two bases, and what libpbs2p does not compute (soft-capping, scaled RoPE, bidirectional
    attention) is refused from the config, for either format."""
    from pbs2p_edge.pack.architectures import gemma_rope_bases, sliding_layers

    g = _c("gemma3_text", num_hidden_layers=4, head_dim=16, query_pre_attn_scalar=16, sliding_window=8,
           layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"])
    assert check_config(g, ".gguf").gguf == "gemma3" and sliding_window(g) == 8
    assert sliding_layers(g) == [True, True, False, True]
    v4 = {k: v for k, v in g.items() if k != "layer_types"}
    assert sliding_layers({**v4, "sliding_window_pattern": 2}) == [True, False, True, False]
    v5 = {"rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                              "full_attention": {"rope_type": "default", "rope_theta": 1e6}}}
    assert gemma_rope_bases({**g, **v5}) == gemma_rope_bases({**g, "rope_theta": 1e6, "rope_local_base_freq": 1e4}) \
        == (1e6, 1e4)
    for bad, fragment in [({"final_logit_softcapping": 30.0}, "final_logit_softcapping"),
                          ({"use_bidirectional_attention": True}, "bidirectional"),
                          ({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0}}}, "linear"),
                          ({"layer_types": ["sliding_attention"] * 3}, "layer_types"),
                          ({"query_pre_attn_scalar": None}, "query_pre_attn_scalar is missing")]:
        with pytest.raises(ModelError, match=fragment):
            check_config({**g, **bad})
    assert check_config(g, ".onnx").layout == "gemma3"
    with pytest.raises(ModelError, match="ONNX export of gemma3_text supports hidden_activation 'gelu_pytorch_tanh'"):
        check_config({**g, "hidden_activation": "silu"}, ".onnx")


def test_the_tables_tokenizer_kinds_are_the_ones_libpbs2p_reads():
    """Every kind the table names is one the C tokenizer loads (and tests/runtime/test_tokenizer.py checks each against
    Hugging Face's ids: gpt-2 the tiny BPE, smollm SmolLM2's, llama-bpe and qwen2 their split regexes, llama the
    SentencePiece layouts and Gemma 3's); and every kind it reads belongs to some architecture."""
    from pbs2p_edge.runtime.tokenizer import PRE_NAMES

    assert all(a.tokenizers for a in ARCHITECTURES.values())
    assert {k for a in ARCHITECTURES.values() for k in a.tokenizers} == set(PRE_NAMES.values())
