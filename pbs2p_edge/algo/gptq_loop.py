"""The GPTQ column-block loop: fit a block, then push its error onto later columns through U.

For block [s, e) of width b (block_size; the last block may be shorter, e.g. K=576: 128x4 + 64):
Q = dequant(fit(W[:, s:e])); Err = (W_blk - Q) / diag(U_blk); W[:, e:] -= Err @ U[s:e, e:];
loss += ||Err||^2. The baselines (BiLLM, ARB, STBLLM) never update columns inside a block for the
errors of earlier columns of the same block; that is the default here too.

[choice] intra_block_update: the block's structure and scales are fitted on the whole block first
(they are shared by its columns); then column by column, as in GPTQ, each column takes the nearest
of its reachable levels given the error-updated weights, and its error updates the later columns of
the block. Only the signs change, so the stored representation is unchanged in shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .block_fit import BlockFit


@dataclass(frozen=True)
class LoopOutput:
    Q: torch.Tensor | None  # (R, K) float32, exactly the dequantized values compensated for (None unless keep_q)
    loss: float  # sum of ||Err||^2 over blocks (0 without U)


def _intra_block(fit: BlockFit, W1: torch.Tensor, U1: torch.Tensor) -> torch.Tensor:
    """Column-by-column sign choice with in-block error feedback; W1 (R, b) is updated in place.
    Returns Err (R, b)."""
    R, b = W1.shape
    signs, levels = fit.level_table()  # (C, 2), (C, R, b)
    rows = torch.arange(R, device=W1.device)
    choice = torch.empty(R, b, dtype=torch.int64, device=W1.device)
    Err = torch.empty_like(W1)
    for i in range(b):
        w = W1[:, i]
        c = (w[None] - levels[:, :, i]).abs().argmin(0)
        err = (w - levels[c, rows, i]) / U1[i, i]
        W1[:, i + 1:] -= torch.outer(err, U1[i, i + 1:])
        Err[:, i] = err
        choice[:, i] = c
    fit.set_choice(signs, choice)
    return Err


def gptq_loop(W: torch.Tensor, U: torch.Tensor | None, fit_block: Callable[[int, int], BlockFit],
              block_size: int, emit: Callable[[int, int, BlockFit], None], intra_block_update: bool = False,
              keep_q: bool = False) -> LoopOutput:
    """Runs the loop over W (R, K), which is modified in place (pass a copy).

    fit_block(s, e) returns the (float16-rounded) fit of the current W[:, s:e]; emit(s, e, fit) receives it with
    its final signs, in column order, and the loop keeps no fit (a layer's fits at once are 17 bytes per weight).
    U (K, K): upper Cholesky factor of H^-1; None = Hessian-free method (no compensation, loss 0).
    keep_q: also return the whole dequantized Q (4 bytes per weight).
    """
    R, K = W.shape
    Q = torch.empty_like(W) if keep_q else None
    loss = W.new_zeros(())
    for s in range(0, K, block_size):
        e = min(s + block_size, K)
        fit = fit_block(s, e)
        if U is not None:
            if intra_block_update:
                Err = _intra_block(fit, W[:, s:e].clone(), U[s:e, s:e])
            else:
                Err = (W[:, s:e] - fit.dequant()) / torch.diagonal(U)[s:e][None]
            loss += Err.square().sum()
            W[:, e:] -= Err @ U[s:e, e:]
        if keep_q:
            Q[:, s:e] = fit.dequant()
        emit(s, e, fit)
    return LoopOutput(Q=Q, loss=float(loss))
