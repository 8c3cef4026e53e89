"""The one Hessian accumulator: H = running mean over calibration tokens of 2·x·xᵀ for one linear's input."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import ModelError


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
    """Within the block, every forward through linears[name] adds its input to hessians[name].

    Linears that read the very same input tensor (a decoder block's q/k/v, gate/up) share one Hessian:
    hessians[name] is the same object for each, accumulated once (the same values separate accumulators would
    hold: the same inputs in the same order). [choice] Sharing is found on the first forward, by identity of the
    input tensor with the one the previous hook saw, not from a table of layer names: it holds for any
    architecture, and saves two of a Llama block's seven K x K matrices and their X^T X products (0.2 GB and about
    a tenth of a 7B block's time). A Hessian is made when its linear first runs (so a shared one is never
    allocated); a linear that never ran has a zero Hessian.
    """
    hessians: dict[str, Hessian] = {}
    owner: dict[str, bool] = {}  # name -> True if its hook adds to the Hessian, False if it shares another's
    last: list = [None, None]  # the input tensor the previous hook saw and that hook's Hessian

    def hook(name: str, lin: nn.Linear, x: torch.Tensor) -> None:
        if name not in owner:
            shared = last[0] is x and last[1].H.shape[0] == lin.in_features
            hessians[name] = last[1] if shared else Hessian(lin.in_features, lin.weight.device)
            owner[name] = not shared
        elif not owner[name] and last[0] is not x:
            raise ModelError(f"{name} shared its input with the linear before it on the first forward but not now; "
                             "its Hessian cannot be shared")
        if owner[name]:
            hessians[name].add(x)
        last[0], last[1] = x, hessians[name]

    handles = [
        lin.register_forward_hook(lambda _m, inp, _out, name=name, lin=lin: hook(name, lin, inp[0]))
        for name, lin in linears.items()
    ]
    try:
        yield hessians
    finally:
        for handle in handles:
            handle.remove()
        last[0] = last[1] = None  # the block's last activation is not kept alive
        # in the order of `linears` (execution order), a zero Hessian for a linear that never ran
        ordered = {name: hessians.get(name) or Hessian(lin.in_features, lin.weight.device)
                   for name, lin in linears.items()}
        hessians.clear()
        hessians.update(ordered)
