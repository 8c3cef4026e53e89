"""Tests of HF -> GGUF names and architecture keys, and that the exporters never import torch."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from pbs2p_edge.errors import FormatError, ModelError
from pbs2p_edge.pack.architectures import ARCHITECTURES
from pbs2p_exporters.gguf_names import arch_keys, extra_tensors, gguf_arch, gguf_tensor_name


LLAMA, QWEN2, OPT = ARCHITECTURES["llama"], ARCHITECTURES["qwen2"], ARCHITECTURES["opt"]


def test_tensor_names():
    assert gguf_tensor_name(LLAMA, "model.layers.12.self_attn.o_proj.weight") == "blk.12.attn_output.weight"
    assert gguf_tensor_name(LLAMA, "model.layers.0.mlp.gate_proj.weight") == "blk.0.ffn_gate.weight"
    assert gguf_tensor_name(LLAMA, "model.layers.3.post_attention_layernorm.weight") == "blk.3.ffn_norm.weight"
    assert gguf_tensor_name(QWEN2, "model.layers.3.self_attn.k_proj.bias") == "blk.3.attn_k.bias"
    assert gguf_tensor_name(OPT, "model.decoder.layers.1.fc2.bias") == "blk.1.ffn_down.bias"
    assert gguf_tensor_name(OPT, "model.decoder.final_layer_norm.bias") == "output_norm.bias"
    with pytest.raises(FormatError, match="no GGUF name"):
        gguf_tensor_name(LLAMA, "model.layers.0.mlp.weird.weight")
    with pytest.raises(ModelError, match="unsupported architecture 'gpt_neox'; supported: gemma3_text, llama, mistral, opt, qwen2"):
        gguf_arch({"model_type": "gpt_neox"})
    with pytest.raises(ModelError, match="project_in"):
        gguf_arch({"model_type": "opt", "vocab_size": 64, "hidden_size": 1024, "ffn_dim": 64, "num_hidden_layers": 1,
                   "num_attention_heads": 1, "max_position_embeddings": 64, "word_embed_proj_dim": 512})
    assert gguf_arch({"model_type": "mistral", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                      "num_hidden_layers": 1, "num_attention_heads": 1,
                      "max_position_embeddings": 64, "rms_norm_eps": 1e-6}).gguf == "llama"


def test_llama3_rope_scaling_matches_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    cfg = LlamaConfig(hidden_size=512, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                      max_position_embeddings=131072, rope_parameters=rope)
    d = cfg.to_dict()
    keys = {k: v for k, _, v in arch_keys(LLAMA, d)}
    assert keys["llama.rope.scaling.type"] == "llama3" and keys["llama.rope.scaling.factor"] == 8.0
    assert keys["llama.rope.scaling.original_context_length"] == 8192 and keys["llama.rope.freq_base"] == 500000.0
    assert keys["llama.rope.dimension_count"] == 128
    factors = extra_tensors(LLAMA, d)["rope_freqs.weight"]
    inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, torch.device("cpu"))
    base = 1.0 / 500000.0 ** (np.arange(0, 128, 2, dtype=np.float64) / 128)
    np.testing.assert_allclose(base / factors, inv_freq.double().numpy(), rtol=1e-5)
    plain = LlamaConfig(hidden_size=64, num_attention_heads=4, intermediate_size=64).to_dict()
    assert extra_tensors(LLAMA, plain) == {}
    assert not any(k.startswith("llama.rope.scaling") for k, _, _ in arch_keys(LLAMA, plain))


def test_exporters_never_import_torch():
    code = ("import sys, pbs2p_exporters.gguf_export, pbs2p_exporters.gguf_read, pbs2p_exporters.inspect; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
