"""Capture what the decoder blocks receive: block 0's hidden states for every calibration window, and every block's
keyword arguments (models that mix attention layer types, as Gemma 3, give a sliding layer another mask and RoPE than
a global one)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..pack.architectures import EMBEDDING
from .arch import ArchSpec, decoder_blocks, embed_modules, named_embed_modules

if TYPE_CHECKING:
    from .stream import StreamedWeights


@dataclass
class BlockInputs:
    """hidden: (nsamples, seqlen, D) inputs of block 0, one row per window; block_kwargs[i]: the rest of block i's
    call (attention mask, position ids, rotary cos/sin, use_cache=False), identical for every window because all
    windows have the same length and no padding."""

    hidden: torch.Tensor
    block_kwargs: list[dict]


class _Stop(Exception):
    """Raised by the last block's catcher so the model's forward stops once every block has received its call."""


class _Catcher(nn.Module):
    """Stands in for a block: keeps its call (block 0: the hidden states of every window; the keyword arguments of
    the first) and passes the hidden states on unchanged (the blocks' kwargs do not depend on them)."""

    def __init__(self, block: nn.Module, keep_hidden: bool, last: bool, dtype: torch.dtype | None = None):
        super().__init__()
        self.block, self.keep_hidden, self.last, self.dtype = block, keep_hidden, last, dtype
        self.hidden: list[torch.Tensor] = []
        self.kwargs: dict | None = None

    def forward(self, hidden_states, *args, **kwargs):
        if args:  # every supported block takes all but the hidden states by keyword
            raise TypeError("decoder block called with extra positional arguments")
        if self.keep_hidden:
            self.hidden.append(hidden_states if self.dtype is None else hidden_states.to(self.dtype))
        if self.kwargs is None:
            self.kwargs = kwargs
        if self.last:
            raise _Stop
        return hidden_states


@torch.no_grad()
def capture_block_inputs(model: nn.Module, ids: torch.Tensor, spec: ArchSpec, device: str | torch.device,
                         dtype: torch.dtype | None = None) -> BlockInputs:
    """Run the embeddings on every window of ids (nsamples, seqlen) and keep the blocks' inputs on `device` (in
    `dtype`, each window as it comes; None: the embeddings' own).

    Only the modules before block 0 visit `device` (and go back afterwards); the blocks stay put and do not run.
    """
    blocks = decoder_blocks(model, spec)
    originals = list(blocks)
    embeds = embed_modules(model, spec)
    home = [next(m.parameters(), next(m.buffers(), torch.empty(0))).device for m in embeds]
    catchers = [_Catcher(b, i == 0, i == len(originals) - 1, dtype) for i, b in enumerate(originals)]
    for i, c in enumerate(catchers):
        blocks[i] = c
    try:
        for m in embeds:
            m.to(device)
        for row in ids:
            try:
                model(input_ids=row[None].to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        for i, b in enumerate(originals):
            blocks[i] = b
        for m, dev in zip(embeds, home):
            m.to(dev)
    hidden = torch.cat(catchers[0].hidden, dim=0)
    return BlockInputs(hidden=hidden, block_kwargs=[c.kwargs for c in catchers])


def capture_inputs(model: nn.Module, ids: torch.Tensor, spec: ArchSpec, device: str | torch.device,
                   weights: StreamedWeights | None, dtype: torch.dtype | None = None) -> BlockInputs:
    """capture_block_inputs for a model in memory or streamed (weights: its shards, model/stream.py). A streamed
    model's token embedding holds only the rows the windows use, the ids renumbered to them (the same values: a lookup
    is a copy; the module itself runs, so Gemma's scaling of the looked-up rows applies), its other embedding modules
    (OPT's positions) are read, and all are released after."""
    from .stream import StreamedWeights

    if weights is None:
        return capture_block_inputs(model, ids, spec, device, dtype)
    used = torch.unique(ids)  # sorted
    others = [(path, m) for path, m in named_embed_modules(model, spec) if m is not model.get_input_embeddings()]
    for path, m in others:
        weights.load(m, path, device)
    try:
        with lent_rows(model, used, weights.read_rows(EMBEDDING[spec.family], used).to(device)):
            return capture_block_inputs(model, torch.searchsorted(used, ids), spec, device, dtype)
    finally:
        for _, m in others:
            StreamedWeights.release(m)


@contextlib.contextmanager
def lent_rows(model: nn.Module, used: torch.Tensor, rows: torch.Tensor):
    """While inside, the token embedding's weight is `rows`, its rows for the sorted ids `used` (a parameter: a gradient
    can be taken through it; the ids it is called with are renumbered by torch.searchsorted(used, ids)), and its
    padding index, whose row takes no gradient, is renumbered alike; its own weight and index are back after (a tied
    head keeps its reference to the weight throughout)."""
    table = model.get_input_embeddings()
    whole, pad = table.weight, getattr(table, "padding_idx", None)
    table.weight = nn.Parameter(rows, requires_grad=rows.requires_grad)
    if pad is not None:
        at = int(torch.searchsorted(used, pad))
        table.padding_idx = at if at < len(used) and int(used[at]) == pad else None
    try:
        yield table.weight
    finally:
        table.weight, table.padding_idx = whole, pad
