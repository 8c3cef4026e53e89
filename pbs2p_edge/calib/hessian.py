"""The one Hessian accumulator: H = running mean over calibration tokens of 2·x·xᵀ for one linear's input."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn


class Hessian:
    """H (K, K) float32 = (2 / n) Σ_t x_t x_tᵀ over the n tokens seen so far (x_t: one input row, K features).

    The update is GPTQ's running mean: H ← H·n/(n+t) + (2/(n+t))·XᵀX for a batch X of t tokens, so H
    stays O(|x|²) however many tokens arrive (no fp32 overflow or precision loss from a growing sum);
    the scale factors are Python floats (float64) and XᵀX is computed in float32.
    """

    def __init__(self, columns: int, device: str | torch.device = "cpu"):
        self.H = torch.zeros(columns, columns, dtype=torch.float32, device=device)
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:
        """x: (..., K) inputs of the linear; every leading index is one token."""
        x = x.detach().reshape(-1, x.shape[-1]).to(device=self.H.device, dtype=torch.float32)
        t = x.shape[0]
        if t == 0:
            return
        total = self.tokens + t
        self.H.mul_(self.tokens / total)
        x = x * math.sqrt(2.0 / total)
        self.H.addmm_(x.T, x)
        self.tokens = total


@contextlib.contextmanager
def accumulate_hessians(linears: dict[str, nn.Linear]) -> Iterator[dict[str, Hessian]]:
    """Within the block, every forward through linears[name] adds its input to hessians[name]."""
    hessians = {name: Hessian(lin.in_features, lin.weight.device) for name, lin in linears.items()}
    handles = [
        lin.register_forward_hook(lambda _m, inp, _out, h=hessians[name]: h.add(inp[0]))
        for name, lin in linears.items()
    ]
    try:
        yield hessians
    finally:
        for handle in handles:
            handle.remove()
