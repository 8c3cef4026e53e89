"""Tiny random causal LMs saved as local Hugging Face directories, and English text files, for the CLI and command tests.

Every model is built with torch.manual_seed(0) from a transformers config (no download) and saved
with the conftest `tiny_tokenizer` (320 byte-level BPE tokens), so `pbs2p-edge MODEL_DIR` loads it
exactly as it would a real model directory. checkpoint_snapshot gives what two runs of one compression
must agree on byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

VOCAB = 320  # the conftest tiny_tokenizer's size: every id it produces is < 320

# A few paragraphs of plain English (original prose), repeated with a varying order to a few KB.
_PARAGRAPHS = (
    "The morning was cold and clear, and the road to the village ran between low stone walls. "
    "Anne walked quickly, for she had promised her sister a letter before noon, and the post left early.",
    "Mr. Elton spoke at length about the weather, the harvest and the new curate, while the others "
    "listened politely and wished, each in silence, that the carriage would come round at last.",
    "There is nothing so tiresome as a long evening with nothing to do; yet Catherine found that a "
    "good book, a warm fire and a quiet room could make the hours pass more pleasantly than any ball.",
    "Her father had always said that money was a poor reason to marry, and a worse reason not to. "
    "She smiled at the memory, folded the note twice, and put it away in the drawer of her desk.",
    "By the end of the week the whole neighbourhood knew of the engagement, and opinions were as "
    "many as the families who held them: some were pleased, a few were surprised, none were silent.",
)


def english_text(repeats: int = 6) -> str:
    """About 1 KB per repeat; repeat r rotates the paragraph order by r so windows differ."""
    out = []
    for r in range(repeats):
        k = r % len(_PARAGRAPHS)
        out.extend(_PARAGRAPHS[k:] + _PARAGRAPHS[:k])
    return "\n\n".join(out) + "\n"


def save_hf_dir(model, tokenizer, path: Path) -> Path:
    """model.save_pretrained + tokenizer.save_pretrained into `path` (created); returns it."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_opt():
    """OPT: hidden 64, 2 layers, 4 heads, FFN 128 (linears q/k/v/out 64x64, fc1 128x64, fc2 64x128)."""
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=VOCAB, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=128, word_embed_proj_dim=64, pad_token_id=1, bos_token_id=2,
                       eos_token_id=2)
    torch.manual_seed(0)
    return OPTForCausalLM(config).eval()


def tiny_llama_width40():
    """Llama with hidden 40 and MLP 80, 1 layer: every width is a multiple of 8 but 40 is not one of 16."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=40, intermediate_size=80, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def tiny_gpt2():
    """GPT-2 (an architecture pbs2p-edge does not support): hidden 32, 1 layer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2, n_positions=64, bos_token_id=0,
                        eos_token_id=0)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def checkpoint_snapshot(d: Path) -> dict[str, bytes]:
    """{file name: bytes} of a checkpoint directory, run metadata (wall time, peak memory, planning time) dropped:
    what two runs of the same compression must agree on byte for byte."""
    files = {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}
    meta = json.loads(files["pbs2p.json"])
    for k in ("seconds", "peak_memory_bytes"):
        meta["extra"].pop(k)
    meta["extra"].get("plan", {}).pop("seconds", None)  # the bit budget's planning time
    files["pbs2p.json"] = json.dumps(meta, sort_keys=True).encode()
    return files
