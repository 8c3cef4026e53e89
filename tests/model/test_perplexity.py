"""Tests that perplexity equals exp(mean NLL) computed directly, and stays finite after compression."""

import math

import pytest
import torch

from pbs2p_edge.model.perplexity import perplexity


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_opt"])
def test_equals_direct_computation(name, request, tiny_ids):
    model = request.getfixturevalue(name)
    seqlen = 64
    res = perplexity(model, tiny_ids, seqlen, max_windows=5)
    nll = []
    with torch.no_grad():
        for k in range(5):
            w = tiny_ids[k * seqlen : (k + 1) * seqlen]
            logp = torch.log_softmax(model(w[None]).logits[0].double(), dim=-1)
            nll.append(-logp[torch.arange(seqlen - 1), w[1:]])
    nll = torch.cat(nll)
    assert (res.windows, res.tokens) == (5, 5 * 63) and nll.numel() == res.tokens
    assert res.nll == pytest.approx(nll.mean().item(), rel=1e-6)
    assert res.ppl == pytest.approx(math.exp(nll.mean().item()), rel=1e-6)
    # a random model over 320 tokens is close to uniform: ppl near the vocabulary size
    assert 200 < res.ppl < 450


def test_all_windows_by_default(tiny_llama, tiny_ids):
    res = perplexity(tiny_llama, tiny_ids, 256)
    assert res.windows == tiny_ids.numel() // 256 and res.tokens == res.windows * 255


def test_compressed_model_is_finite(tiny_llama, tiny_ids):
    from pbs2p_edge.algo.config import CompressConfig
    from pbs2p_edge.calib.windows import calibration_windows
    from pbs2p_edge.model.sequential import compress_model

    before = perplexity(tiny_llama, tiny_ids, 64, max_windows=4)
    compress_model(tiny_llama, calibration_windows(tiny_ids, 4, 64, 0), CompressConfig(method="rtn"), progress=False)
    after = perplexity(tiny_llama, tiny_ids, 64, max_windows=4)
    assert math.isfinite(after.ppl) and after.ppl != before.ppl


def test_seqlen_beyond_model_positions(tiny_opt, tiny_ids):
    from pbs2p_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="max_position_embeddings 256"):
        perplexity(tiny_opt, tiny_ids, 512)
