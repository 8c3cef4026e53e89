"""Tests of the architecture registry: block lists, linears in order, unsupported models."""

import pytest
from torch import nn

from pbs2p_edge.errors import ModelError
from pbs2p_edge.model.arch import arch_for, block_linears, decoder_blocks, embed_modules


def test_llama_layout_with_gqa_shapes(tiny_llama):
    spec = arch_for(tiny_llama)
    blocks = decoder_blocks(tiny_llama, spec)
    assert len(blocks) == 2
    shapes = {name: tuple(lin.weight.shape) for name, lin in block_linears(blocks[1], spec).items()}
    assert list(shapes) == [
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    ]
    assert shapes["self_attn.k_proj"] == (32, 64) and shapes["mlp.down_proj"] == (64, 128)
    assert [type(m).__name__ for m in embed_modules(tiny_llama, spec)] == ["Embedding", "LlamaRotaryEmbedding"]


def test_opt_layout(tiny_opt):
    spec = arch_for(tiny_opt)
    lin = block_linears(decoder_blocks(tiny_opt, spec)[0], spec)
    assert list(lin) == ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"]
    assert tuple(lin["fc1"].weight.shape) == (128, 64) and tuple(lin["fc2"].weight.shape) == (64, 128)
    # project_in is None when word_embed_proj_dim == hidden_size: it is skipped, not an error
    assert len(embed_modules(tiny_opt, spec)) == 2


def test_unsupported_architecture_names_the_supported_ones():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=32))
    with pytest.raises(ModelError, match=r"unsupported architecture 'gpt2'; supported: gemma3_text, llama, mistral, opt, qwen2"):
        arch_for(model)
    with pytest.raises(ModelError):
        arch_for(nn.Linear(2, 2))


def test_mistral_and_qwen2_use_the_llama_layout():
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    kw = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    for model in [MistralForCausalLM(MistralConfig(**kw)), Qwen2ForCausalLM(Qwen2Config(**kw))]:
        spec = arch_for(model)
        assert len(block_linears(decoder_blocks(model, spec)[0], spec)) == 7


def test_mixed_attention_layer_types_are_rejected():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, use_sliding_window=True, sliding_window=8, max_window_layers=1)
    if len(set(cfg.layer_types)) < 2:
        pytest.skip("this transformers version builds uniform layer types for this config")
    with pytest.raises(ModelError, match="mixed attention"):
        arch_for(Qwen2ForCausalLM(cfg))
