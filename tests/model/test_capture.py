"""Tests that captured block-0 inputs, replayed through every block with run_block, reproduce the model."""

import pytest
import torch

from pbs2p_edge.model.arch import arch_for, decoder_blocks, run_block
from pbs2p_edge.model.capture import capture_block_inputs


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_opt"])
def test_replay_matches_full_forward(name, request, tiny_ids):
    model = request.getfixturevalue(name)
    spec = arch_for(model)
    blocks = decoder_blocks(model, spec)
    ids = tiny_ids[:96].reshape(3, 32)

    seen = []
    handle = blocks[-1].register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        for row in ids:
            model(input_ids=row[None], use_cache=False)
    handle.remove()
    expected = torch.cat(seen)

    captured = capture_block_inputs(model, ids, spec, "cpu")
    assert captured.hidden.shape == (3, 32, 64)
    assert blocks[0] is not None and type(blocks[0]).__name__.endswith("DecoderLayer")  # catcher removed
    with torch.no_grad():
        x = captured.hidden
        for block in blocks:
            x = torch.cat([run_block(block, x[j : j + 1], captured.kwargs) for j in range(3)])
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
