"""A streamed block's linears held as the source stores them and widened to float32 only while one runs.

A Llama-2-7B block is 0.8 GB at float32 and half that as its bfloat16 shards store it. Widening a bfloat16 (or
float16) weight to float32 is exact, so a block run with its weights widened one linear at a time computes what the
float32 block computes, while holding the stored copies and one float32 weight:
- `widened`: for forwards without autograd (sequential's fits, the budget plan's forward pass);
- `widened_with_grad`: for a forward whose backward is taken (the budget plan's backward pass): the weight is widened
  again in the backward instead of being kept for it, and the square of each call's weight gradient is summed on the
  way (the empirical Fisher, model/budget_stream.py) without the weight taking a gradient.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .stream import StreamedWeights


def release_weight(lin: nn.Linear) -> None:
    """Free lin's weight (its dtype and device stay): whoever released it remakes it."""
    lin.weight.data = torch.empty(0, dtype=lin.weight.dtype, device=lin.weight.device)


def hold_as_stored(linears: dict[str, nn.Linear], weights: StreamedWeights | None,
                   prefix: str) -> dict[str, torch.Tensor]:
    """A streamed block's (`prefix`) linear weights as the source stores them (bfloat16 shards: half their float32),
    each float32 weight the read made narrowed and released in turn (all narrowed copies beside all float32 weights
    would add half a block). {} for a model in memory (weights None), whose weights stay."""
    held: dict[str, torch.Tensor] = {}
    if weights is not None:
        for name, lin in linears.items():
            held[name] = lin.weight.data.to(weights.stored_dtype(f"{prefix}.{name}.weight"))
            release_weight(lin)
    return held


@contextlib.contextmanager
def widened(linears: dict[str, nn.Linear], held: dict[str, torch.Tensor]):
    """While inside, each linear named in `held` has a float32 weight only while it runs: a forward pre-hook widens
    it (exactly: the values the float32 read gives) and a forward hook releases it. Not for autograd (the weight a
    backward would need is gone): widened_with_grad. The linears of `held` are left released."""
    handles = []
    for name, lin in linears.items():
        if name in held:
            handles.append(lin.register_forward_pre_hook(
                lambda m, _inp, name=name: setattr(m.weight, "data", held[name].to(m.weight.dtype))))
            handles.append(lin.register_forward_hook(lambda m, _inp, _out: release_weight(m)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for name, lin in linears.items():
            if name in held:
                release_weight(lin)


class _HeldLinear(torch.autograd.Function):
    """y = x W^T + b, W the float32 of `stored`, made in the forward and again in the backward (never kept between);
    the backward adds (g^T x)^2, the square of this call's weight gradient, to `fisher` (None: nothing)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, stored: torch.Tensor, bias: torch.Tensor | None, fisher: torch.Tensor | None):
        ctx.stored, ctx.fisher = stored, fisher
        ctx.save_for_backward(x if fisher is not None else None)
        return nn.functional.linear(x, stored.float(), bias)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        if ctx.fisher is not None:
            ctx.fisher.add_(torch.mm(g.reshape(-1, g.shape[-1]).t(), x.reshape(-1, x.shape[-1])).square_())
        return g.matmul(ctx.stored.float()), None, None, None


@contextlib.contextmanager
def widened_with_grad(linears: dict[str, nn.Linear], held: dict[str, torch.Tensor],
                      fisher: dict[str, torch.Tensor] | None = None):
    """While inside, each linear named in `held` runs as _HeldLinear: float32 only while its forward or its backward
    runs, autograd keeping its stored copy (and its input, for the Fisher); fisher[name], when given, gains the square
    of its weight gradient on every backward through it. The bias (if any) takes no gradient."""
    for name, lin in linears.items():
        if name in held:
            f = None if fisher is None else fisher[name]
            lin.forward = lambda x, lin=lin, name=name, f=f: _HeldLinear.apply(x, held[name], lin.bias, f)
    try:
        yield
    finally:
        for name, lin in linears.items():
            if name in held:
                del lin.forward
