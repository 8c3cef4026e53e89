"""The output head's input over the calibration windows: its Hessian, what GPTQ needs to store the head (checkpoint/head.py).

The head computes logits = h W^T, h the last block's output through the tail modules (the final norm; OPT's
project_out), so H = 2 / n sum_t h_t h_t^T over the windows' n positions, the same statistic every linear's GPTQ uses.
h is taken from the compressed model's activations (compress_model's after its last block), as each linear's inputs are.
"""

from __future__ import annotations

import torch
from torch import nn

from .arch import ArchSpec, named_tail_modules
from .stream import StreamedWeights


@torch.no_grad()
def head_hessian(model: nn.Module, spec: ArchSpec, x: torch.Tensor, weights: StreamedWeights | None) -> torch.Tensor:
    """H (D', D') float32 on the CPU of the head's input (D': its width), from x (n, S, D): the last block's output on every window (each
    run through the tail modules at float32, on x's device; a streamed model's tail read for it and released after).
    The sum is float64, window by window in order: the same windows give the same H."""
    found = named_tail_modules(model, spec)
    homes = []
    for path, m in found:
        if weights is not None:
            weights.load(m, path, x.device)
        else:
            homes.append(next(m.parameters(), torch.empty(0)).device)
            m.to(x.device)
    try:
        H = None  # (D', D'): the tail's output width (OPT's project_out may change it)
        for j in range(x.shape[0]):
            h = x[j].float()
            for _, m in found:
                h = m(h)
            h = h.double()
            H = h.T @ h if H is None else H.addmm_(h.T, h)
    finally:
        for k, (_, m) in enumerate(found):
            if weights is not None:
                StreamedWeights.release(m)
            else:
                m.to(homes[k])
    return (2 * H / (x.shape[0] * x.shape[1])).float().cpu()
