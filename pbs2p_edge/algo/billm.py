"""BiLLM structure: salient-column search, magnitude split search, and the closed-form block init.

Choices the papers leave open (BiLLM arXiv 2402.04291 describes the search, not its details):
- Saliency is W^2 / U_jj^2 (U = upper Cholesky of H^-1, its block diagonal `d`), summed per column;
  without a Hessian (d = None) it is |W|.
- The salient count k is searched in 1..max_salient per block by the plain squared reconstruction
  error of the block, with the non-salient part fitted as ONE first-order group during this search
  (the split is searched afterwards, for the chosen k) — one candidate loop instead of a product.
- The split threshold is one per block (not per row), searched over the 10 %, 20 %, ..., 90 %
  quantiles of |w| of the non-salient kept elements; with 3 groups over every pair of them (36).
  Group k holds the elements above k of the thresholds (group 0 = smallest magnitudes).
"""

from __future__ import annotations

import itertools

import torch

from .binarize import first_error, fit_first, fit_residual
from .block_fit import BlockFit

QUANTILES = [i / 10 for i in range(1, 10)]


def saliency(W: torch.Tensor, d: torch.Tensor | None) -> torch.Tensor:
    """(R, b) element saliency: W^2 / U_jj^2 (BiLLM's "hessian"), or |W| without a Hessian."""
    return W.abs() if d is None else W.square() / d.square()[None]


def search_salient(W: torch.Tensor, kept: torch.Tensor, d: torch.Tensor | None,
                   max_salient: int, use_mean: bool) -> torch.Tensor:
    """(b,) bool: the k most salient columns, k in 1..max_salient minimising the block error."""
    b = W.shape[1]
    order = (saliency(W, d) * kept).sum(0).argsort(descending=True, stable=True)
    errs = []
    for k in range(1, min(max_salient, b) + 1):
        sal = torch.zeros(b, dtype=torch.bool, device=W.device)
        sal[order[:k]] = True
        Ws, Ms = W[:, order[:k]], kept[:, order[:k]]  # (R, k): the residual fit only needs these
        a0, a1, mu, B0, B1 = fit_residual(Ws, Ms, use_mean)
        approx = a0[:, None] * B0 + a1[:, None] * B1 + mu[:, None]
        errs.append(((Ws - approx).square() * Ms).sum() + first_error(W, kept & ~sal, use_mean))
    k = int(torch.stack(errs).argmin()) + 1  # first minimum: the smallest k among equals
    sal = torch.zeros(b, dtype=torch.bool, device=W.device)
    sal[order[:k]] = True
    return sal


def search_split(W: torch.Tensor, member: torch.Tensor, groups: int, use_mean: bool) -> torch.Tensor:
    """(R, b) int64 split-group index of each member element (0 outside member)."""
    A = W.abs()
    vals = A[member]
    if groups == 1 or vals.numel() == 0:
        return torch.zeros_like(W, dtype=torch.int64)
    qs = torch.quantile(vals, torch.tensor(QUANTILES, device=W.device))
    cands = [(q,) for q in qs] if groups == 2 else list(itertools.combinations(qs, 2))
    errs = []
    for ths in cands:
        grp = sum((A > t).long() for t in ths)
        errs.append(sum(first_error(W, member & (grp == k), use_mean) for k in range(groups)))
    ths = cands[int(torch.stack(errs).argmin())]
    return torch.where(member, sum((A > t).long() for t in ths), 0)


def billm_init(W: torch.Tensor, kept: torch.Tensor, d: torch.Tensor | None, salient: bool,
               max_salient: int, split_groups: int, use_mean: bool, rc: bool = False) -> BlockFit:
    """BiLLM's block fit of W (R, b) over the kept entries: salient columns (2nd-order residual,
    when `salient`) and `split_groups` first-order magnitude groups. With rc, column scales start at 1."""
    R, b = W.shape
    S, P = split_groups, (2 if salient else 1)
    sal = (search_salient(W, kept, d, max_salient, use_mean) if salient
           else torch.zeros(b, dtype=torch.bool, device=W.device))
    rest = kept & ~sal[None]
    group = search_split(W, rest, S, use_mean)
    alpha = W.new_zeros(P, 1 + S, R)
    mu = W.new_zeros(1 + S, R)
    s0 = torch.ones_like(W)
    s1 = None
    if salient:
        a0, a1, m0, B0, B1 = fit_residual(W, kept & sal[None], use_mean)
        alpha[0, 0], alpha[1, 0], mu[0] = a0, a1, m0
        s0 = torch.where(sal[None], B0, s0)
        s1 = torch.where(sal[None], B1, 1.0)
    for k in range(S):
        member = rest & (group == k)
        a, m_, B = fit_first(W, member, use_mean)
        alpha[0, 1 + k], mu[1 + k] = a, m_
        s0 = torch.where(member, B, s0)
    region = torch.where(sal[None], 0, 1 + group)
    col = W.new_ones(1 + S, b) if rc else None
    return BlockFit(kept=kept.clone(), region=region, salient=sal, s0=s0, s1=s1, alpha=alpha, mu=mu, col=col)
