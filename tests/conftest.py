"""Shared test fixtures: tiny random Llama and OPT causal LMs and a tiny byte-level BPE tokenizer, all offline.

Fixtures (function scope unless noted; every model is built with torch.manual_seed(0), eval mode, fp32):
  tiny_llama         LlamaForCausalLM: hidden 64, 2 layers, 4 heads / 2 KV heads (GQA, head_dim 16),
                     MLP 128, vocab 320, untied lm_head. Linears per block: q 64x64, k 32x64, v 32x64,
                     o 64x64, gate 128x64, up 128x64, down 64x128.
  tiny_opt           OPTForCausalLM: hidden 64, 2 layers, 4 heads, FFN 128, vocab 320, max positions 256.
  tiny_gemma3        Gemma3ForCausalLM: hidden 64, 4 layers mixing sliding (window 8) and global attention, 4 heads /
                     2 KV heads of head_dim 32, vocab 320, tied head (make_tiny_gemma3).
  tiny_tokenizer     (session) PreTrainedTokenizerFast, byte-level BPE with 320 tokens trained on
                     TINY_TEXT (ids always < 320, so it matches both models).
  tiny_llama_dir     (session) a saved Hugging Face directory (config.json, safetensors, tokenizer)
                     of a tiny Llama, for loaders and exporters; do not modify it.
  tiny_ids           (session) 1-D int64 tensor: tiny_tokenizer(TINY_TEXT * 8), about 2-3k tokens.
"""

from __future__ import annotations

import pytest
import torch

# The tiny models' ops are far too small to gain from threads; on a busy 2-core machine (CI) two
# threads make them 20-30x slower. Tests that check thread behaviour set their own counts.
torch.set_num_threads(1)

TINY_VOCAB = 320
TINY_TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be on "
    "his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding "
    "families, that he is considered the rightful property of some one or other of their daughters.\n"
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, "
    "seemed to unite some of the best blessings of existence; and had lived nearly twenty-one years "
    "in the world with very little to distress or vex her. 0123456789 ,.;:!?'\"()[]{}-_\n"
)


def make_tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=TINY_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def make_tiny_gemma3(seed: int = 0):
    """Gemma 3 text model: hidden 64, 4 layers (sliding, sliding, global, sliding; window 8), 4 heads / 2 KV heads of
    head_dim 32 (not hidden / heads), query_pre_attn_scalar 24, GELU-tanh MLP 128, vocab 320, tied head."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=TINY_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=256, sliding_window=8, query_pre_attn_scalar=24,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
        bos_token_id=0, eos_token_id=0, pad_token_id=1,
    )
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config).eval()


def make_tiny_opt(seed: int = 0):
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=TINY_VOCAB, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=256, word_embed_proj_dim=64, pad_token_id=1, bos_token_id=2, eos_token_id=2,
    )
    torch.manual_seed(seed)
    return OPTForCausalLM(config).eval()


def make_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB, special_tokens=["<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TINY_TEXT], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<s>")


@pytest.fixture
def tiny_llama():
    return make_tiny_llama()


@pytest.fixture
def tiny_opt():
    return make_tiny_opt()


@pytest.fixture
def tiny_gemma3():
    return make_tiny_gemma3()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_ids(tiny_tokenizer):
    return torch.tensor(tiny_tokenizer(TINY_TEXT * 8)["input_ids"], dtype=torch.long)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("tiny_llama_hf")
    make_tiny_llama().save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path
