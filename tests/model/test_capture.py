"""Tests that captured block-0 inputs, replayed through every block with run_block and that block's captured keyword
arguments, reproduce the model (Gemma 3: sliding and global layers get their own mask and RoPE)."""

import pytest
import torch

from pbs2p_edge.model.arch import arch_for, decoder_blocks, run_block
from pbs2p_edge.model.capture import capture_block_inputs


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_opt", "tiny_gemma3"])
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
    assert all(type(b).__name__.endswith("DecoderLayer") for b in blocks)  # catchers removed
    assert len(captured.block_kwargs) == len(blocks)
    with torch.no_grad():
        x = captured.hidden
        for block, kwargs in zip(blocks, captured.block_kwargs):
            x = torch.cat([run_block(block, x[j : j + 1], kwargs) for j in range(3)])
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
