"""Fixtures for exporter tests: tiny compressed checkpoints (Llama and OPT) written once per session."""

import copy
from pathlib import Path

import pytest
from checkpoint.tiny_compressed import compress, tiny_model

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import save_checkpoint


def _write(root: Path, tokenizer, arch: str, tie: bool, **kw) -> Path:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }}{% endfor %}"
    model = tiny_model(arch, tie=tie)
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
