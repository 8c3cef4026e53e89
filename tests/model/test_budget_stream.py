"""measure_streamed: a bit budget's sensitivity taken one decoder block at a time is budget.measure's on the whole
model, and a budgeted compression of a streamed model writes the whole model's checkpoint."""

import json

import pytest
import torch

from pbs2p_edge import commands
from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.calib.windows import calibration_windows
from pbs2p_edge.model import budget_stream
from pbs2p_edge.model.arch import arch_for, block_linears, decoder_blocks
from pbs2p_edge.model.budget import EMBEDDING, measure
from pbs2p_edge.model.budget_stream import measure_streamed, streams
from pbs2p_edge.model.load import load_model, open_model_streamed
from pbs2p_edge.model.stream import StreamedWeights

from conftest import make_tiny_gemma3, make_tiny_llama, make_tiny_opt
from saved_models import save_hf_dir
from test_stream import compress_both, text  # noqa: F401 (a fixture)


def _model(kind: str):
    model = {"opt": make_tiny_opt, "gemma3": make_tiny_gemma3}.get(kind, make_tiny_llama)()
    if kind == "llama-tied":
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM(model.config.__class__(**{**model.config.to_dict(), "tie_word_embeddings": True}))
    return model


# llama-tied: the head's and the lookup's gradients meet on one weight; gemma3: the lookup scales its rows and row 0 is
# the padding index (no lookup gradient); opt: learned positions before block 0, a padding index of 1
@pytest.mark.parametrize("kind", ["llama", "llama-tied", "gemma3", "opt"])
def test_streamed_sensitivity_is_the_whole_models(monkeypatch, tmp_path, tiny_tokenizer, tiny_ids, kind):
    src = save_hf_dir(_model(kind), tiny_tokenizer, tmp_path / "src")
    windows = calibration_windows(tiny_ids, nsamples=4, seqlen=32, seed=0)
    whole, tok = load_model(str(src), device="cpu")
    expect = measure(whole, tok, windows)
    model, _, weights = open_model_streamed(str(src))
    assert streams(model)
    held = []
    load = StreamedWeights.load

    def recording(self, module, prefix, device):  # how many blocks hold weights when one is read
        held.append(sum(any(not p.is_meta for p in b.parameters()) for b in decoder_blocks(model)))
        load(self, module, prefix, device)

    monkeypatch.setattr(StreamedWeights, "load", recording)
    monkeypatch.setattr("pbs2p_edge.model.budget_stream.LOGITS", 4 * 32 * 37)  # the head in pieces of 37 of 320 rows
    pull_back, widest = budget_stream._pull_back, []

    def pulling_back(block, *args):  # the float32 weights the block's linears hold through its backward
        widest.append(sum(lin.weight.numel() for lin in block_linears(block, arch_for(model)).values()))
        return pull_back(block, *args)

    monkeypatch.setattr(budget_stream, "_pull_back", pulling_back)
    got = measure_streamed(model, tok, windows, weights, scratch=tmp_path)
    assert max(held) == 0 and len(held) >= 4  # each block read twice (forward, backward), never beside another
    assert widest == [0] * len(decoder_blocks(model))  # held as stored, widened only while one runs
    assert list(tmp_path.glob("budget-*")) == []  # the blocks' saved inputs are gone
    assert all(p.is_meta for p in model.parameters())
    assert (got.unplanned_bits, got.n_params) == (expect.unplanned_bits, expect.n_params)
    assert got.options.keys() == expect.options.keys() and EMBEDDING in got.options
    for name, opts in expect.options.items():
        assert [(o.tier, o.bits) for o in got.options[name]] == [(o.tier, o.bits) for o in opts]
        # the same sums in another grouping (the head's logits in pieces of rows, g^T x per window)
        torch.testing.assert_close(torch.tensor([o.loss for o in got.options[name]], dtype=torch.float64),
                                   torch.tensor([o.loss for o in opts], dtype=torch.float64), rtol=1e-4, atol=0)


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_a_budget_streams_to_the_bytes_of_the_model_in_memory(monkeypatch, tmp_path, tiny_tokenizer, text, kind):
    src = save_hf_dir(_model(kind), tiny_tokenizer, tmp_path / "src")
    streamed, whole = compress_both(monkeypatch, src, tmp_path, text, cfg=CompressConfig(method="rtn"), bpw=7.0,
                                    recover=2)
    assert streamed == whole
    plan = json.loads(streamed["pbs2p.json"])["extra"]["plan"]
    assert len(set(plan["linears"].values())) > 1  # a mixed plan: the sensitivities decided it
