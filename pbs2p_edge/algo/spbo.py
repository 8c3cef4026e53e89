"""SPBO: stepwise pruning with binarization optimization — prune progressively, refitting ARB each step.

[choice] The pruned set of every row x M-group (its M - N lowest-scoring entries) is split into tau
sub-masks by score rank: with tau = M - N (the default) step t prunes the (t+1)-th lowest-scoring
entry of every M-group; with a smaller tau the ranks are cut into tau contiguous chunks
(rank * tau // (M - N)). Each step zeroes its sub-mask and runs `iters` ARB alternations
(mu -> alpha -> B) on the entries still kept, starting from the caller's unpruned ARB fit.
"""

from __future__ import annotations

import torch

from .arb import arb_refine
from .arb_x import XRefiner, refines_in_x
from .block_fit import BlockFit


def prune_steps(scores: torch.Tensor, kept: torch.Tensor, m: int, steps: int) -> torch.Tensor:
    """(R, b) int64 step index at which each pruned entry is removed; -1 for kept entries.

    Within each M-group the pruned entries are ranked by ascending score (stable on ties);
    `steps` is clipped to 1..(number pruned per group).
    """
    R, b = scores.shape
    n_pruned = int((~kept[0, :m]).sum())
    if n_pruned == 0:
        return torch.full_like(scores, -1, dtype=torch.int64)
    steps = max(1, min(steps, n_pruned))
    sc = scores.masked_fill(kept, float("inf")).reshape(R, b // m, m)
    rank = sc.argsort(dim=-1, stable=True).argsort(dim=-1, stable=True).reshape(R, b)  # 0 = lowest score
    return torch.where(kept, -1, rank * steps // n_pruned)


def spbo(fit: BlockFit, W: torch.Tensor, kept: torch.Tensor, scores: torch.Tensor, m: int,
         steps: int, iters: int, use_mean: bool, S: torch.Tensor | None = None) -> BlockFit:
    """Prunes `fit` (an unpruned ARB fit of W (R, b)) down to `kept` in `steps` steps, in place."""
    step_of = prune_steps(scores, kept, m, steps)
    x = XRefiner(fit, W, use_mean, S) if refines_in_x(fit, S) else None
    for t in range(int(step_of.max()) + 1):
        if x is None:
            fit.kept = fit.kept & (step_of != t)
            arb_refine(fit, W, iters, use_mean, S)
        else:  # one refiner for every step: a prune recomputes its bases, keeps W S and the copies
            x.prune(step_of == t)
            x.refine(iters)
    fit.kept = fit.kept & kept  # exact final mask, also when steps == 0
    return fit
