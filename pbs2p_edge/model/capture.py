"""Capture what decoder block 0 receives (hidden states and keyword arguments) for every calibration window."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .arch import ArchSpec, decoder_blocks, embed_modules


@dataclass
class BlockInputs:
    """hidden: (nsamples, seqlen, D) inputs of block 0, one row per window; kwargs: the rest of
    block 0's call (attention mask, position ids, rotary cos/sin, use_cache=False), identical for
    every window because all windows have the same length and no padding."""

    hidden: torch.Tensor
    kwargs: dict


class _Stop(Exception):
    """Raised by the catcher so the model's forward stops right after block 0 receives its input."""


class _Catcher(nn.Module):
    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.seen: list[tuple[torch.Tensor, dict]] = []

    def forward(self, hidden_states, *args, **kwargs):
        if args:  # every supported block takes all but the hidden states by keyword
            raise TypeError("decoder block called with extra positional arguments")
        self.seen.append((hidden_states, kwargs))
        raise _Stop


@torch.no_grad()
def capture_block_inputs(model: nn.Module, ids: torch.Tensor, spec: ArchSpec, device: str | torch.device) -> BlockInputs:
    """Run the embeddings on every window of ids (nsamples, seqlen) and keep block 0's inputs on `device`.

    Only the modules before block 0 visit `device` (and go back afterwards); the blocks stay put.
    """
    blocks = decoder_blocks(model, spec)
    first = blocks[0]
    embeds = embed_modules(model, spec)
    home = [next(m.parameters(), next(m.buffers(), torch.empty(0))).device for m in embeds]
    catcher = _Catcher(first)
    blocks[0] = catcher
    try:
        for m in embeds:
            m.to(device)
        for row in ids:
            try:
                model(input_ids=row[None].to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        blocks[0] = first
        for m, dev in zip(embeds, home):
            m.to(dev)
    hidden = torch.cat([h for h, _ in catcher.seen], dim=0)
    return BlockInputs(hidden=hidden, kwargs=catcher.seen[0][1])
