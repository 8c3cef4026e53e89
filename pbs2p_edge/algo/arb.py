"""ARB: alternating refined binarization of a BlockFit (ARB-LLM arXiv 2410.03129), plain, -X and -RC.

One coordinate-descent step per parameter, in the norm ||E||_S^2 = sum_rows E S E^T
(S = I: plain ARB; S = the block of H, proportional to X^T X: ARB-X). For a parameter theta with
basis e (the tensor it multiplies: mu -> region indicator, alpha_p -> plane-p signs on the region,
both times the column scale) the exact minimiser given the rest is
    theta += <E, e>_S / <e, e>_S,            E = W - W_hat,
which is METHOD.md's closed forms mu = (r - alpha b)^T S g / g^T S g and
alpha = b^T S (r - mu g) / b^T S b (and, with S = I, mu = mean(w - alpha B), alpha = mean(B (w - mu))).
Order per iteration: for each region mu -> alpha_0 -> alpha_1; ARB-RC then the column scales
(least squares per column, plain norm only); then the B step (nearest level).

ARB-X without column scales (ARB-X itself, and PBS2P's refits) runs in per-row coordinates
instead, with an exact scale pass and an active set of rows (arb_x.XRefiner); the direct form here
serves the plain norm and ARB-RC, whose column step changes every basis each iteration.

[choice] In the S-norm the elementwise B step is not a minimiser, so the direct form keeps it per
row only when it does not increase that row's error; this makes every iteration monotone (in the
plain norm the B step is exact and the guard never fires). Empty regions keep alpha = mu = 0 and column scale 1.
"""

from __future__ import annotations

import torch

from .arb_x import XRefiner, refines_in_x
from .block_fit import BlockFit


def _apply(S: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return x if S is None else x @ S


def row_error(W: torch.Tensor, fit: BlockFit, S: torch.Tensor | None = None) -> torch.Tensor:
    """(R,) per-row ||W - W_hat||_S^2 of the block (pruned entries count with W_hat = 0)."""
    E = W - fit.dequant()
    return (_apply(S, E) * E).sum(1)


def _fit_scales_direct(fit: BlockFit, W: torch.Tensor, use_mean: bool, S: torch.Tensor | None) -> None:
    E = W - fit.dequant()
    SE = _apply(S, E)
    for r in fit.regions:
        g = (fit.kept & (fit.region == r)).to(W.dtype)
        if fit.col is not None:
            g = g * fit.col[r][None]
        params = ([("mu", None, g)] if use_mean else []) + [("alpha", 0, fit.s0 * g)]
        if r == 0 and fit.s1 is not None:
            params.append(("alpha", 1, fit.s1 * g))
        for name, p, e in params:
            Se = _apply(S, e)
            den = (Se * e).sum(1)
            delta = torch.where(den > 0, (SE * e).sum(1) / den.clamp_min(1e-30), 0.0)  # (R,)
            if name == "mu":
                fit.mu[r] += delta
            else:
                fit.alpha[p, r] += delta
            E -= delta[:, None] * e
            if S is not None:
                SE -= delta[:, None] * Se


def _fit_columns(fit: BlockFit, W: torch.Tensor) -> None:
    """ARB-RC column step: col[r, j] = sum_i u w / sum_i u^2 over region r's kept entries of column j,
    u = the row-scaled value without its column scale (plain norm)."""
    u = fit.dequant(use_col=False)
    for r in fit.regions:
        g = fit.kept & (fit.region == r)
        den = (u.square() * g).sum(0)
        fit.col[r] = torch.where(den > 0, (u * W * g).sum(0) / den.clamp_min(1e-30), 1.0)


def _sign_step_direct(fit: BlockFit, W: torch.Tensor, S: torch.Tensor | None) -> None:
    if S is None:  # plain norm: each element's nearest level cannot raise the row error, no guard
        fit.resign(W)
        return
    before = row_error(W, fit, S)
    near = fit.nearest(W)
    E = W - near.W_hat  # W_hat equals fit.dequant() with the new signs
    worse = ((E @ S) * E).sum(1)[:, None] > before[:, None]  # (R, 1)
    fit.s0 = torch.where(worse, fit.s0, near.s0)
    if near.s1 is not None:
        fit.s1 = torch.where(worse, fit.s1, near.s1)


def arb_refine(fit: BlockFit, W: torch.Tensor, iters: int, use_mean: bool,
               S: torch.Tensor | None = None) -> BlockFit:
    """Refines `fit` of W (R, b) in place over its kept entries for `iters` alternations and
    returns it. S (b, b): ARB-X's block Gram matrix; None: plain norm. fit.col present: ARB-RC."""
    if refines_in_x(fit, S):
        if iters > 0:
            XRefiner(fit, W, use_mean, S).refine(iters)
        return fit
    for _ in range(iters):
        _fit_scales_direct(fit, W, use_mean, S)
        if fit.col is not None:
            _fit_columns(fit, W)
        _sign_step_direct(fit, W, S)
    return fit
