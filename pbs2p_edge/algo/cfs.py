"""CFS (coarse-to-fine search): per-layer N from block importance, then per-element OBS-score N:M masks.

Coarse stage choices ([choice], the paper's Eq. 7 is not public in detail):
- I_l = 1 / mean_tokens cos(x_in, x_out) of decoder block l, normalised to mean 1; the mean cosine
  is clamped to >= 1e-3 so a block that reverses its input counts as very important, not negative.
  The tokens are those of the first cfs_windows calibration windows (CompressConfig; 8 by default).
- Mapping: deviations d = I - 1 are scaled so the most important layer lands on n_hi = min(m, n+high)
  and the least important on n_lo = max(1, n-low) (positive and negative sides scaled separately, so
  the mean importance maps to n); x_l = n + d * scale, N_l = floor(x_l + 1/2) (round half up).
  A plain N * I_l would leave almost every layer at N: importances differ by a few percent.
- Rebalance to an exact parameter-weighted mean n: while sum p_l N_l > n sum p_l, lower by one the
  layer with the largest N_l - x_l that is above n_lo (ties: least important); while below, raise the
  layer with the largest x_l - N_l below n_hi (ties: most important). Each move keeps N monotone in
  importance and stays nearest to x. With equal parameter counts (every decoder block of a dense
  LLM) this always ends exactly at n; if unequal counts make exactness impossible for this greedy,
  the allocation falls back to N_l = n everywhere, which is exact, rather than spend a wrong budget.
Fine stage: OBS score w^2 / U_jj^2 on the current, already compensated block (SparseGPT's form of
w^2 / [H^-1]_jj^2 for sequential compensation: U_jj^2 is the conditional [H^-1]_jj of column j given
the columns before it), top N_l of every M-group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .config import check_nm
from .nm_mask import nm_mask


def block_importance(x_in: torch.Tensor | Sequence[torch.Tensor],
                     x_out: torch.Tensor | Sequence[torch.Tensor]) -> float:
    """1 / (mean over tokens of cos(x_in, x_out)) for one decoder block; (..., hidden) tensors, or
    equal-length sequences of such batches (averaged over all their tokens)."""
    xs_in = [x_in] if isinstance(x_in, torch.Tensor) else list(x_in)
    xs_out = [x_out] if isinstance(x_out, torch.Tensor) else list(x_out)
    if len(xs_in) != len(xs_out) or not xs_in:
        raise ConfigError("block_importance needs the same non-zero number of input and output batches")
    total, count = 0.0, 0
    for a, b in zip(xs_in, xs_out):
        if a.shape != b.shape:
            raise ConfigError(f"block input {tuple(a.shape)} and output {tuple(b.shape)} differ in shape")
        cos = F.cosine_similarity(a.float().reshape(-1, a.shape[-1]), b.float().reshape(-1, b.shape[-1]), dim=-1)
        total += float(cos.double().sum())
        count += cos.numel()
    return 1.0 / max(total / count, 1e-3)


def allocate_n(importance: list[float], params: list[int], n: int, m: int,
               low: int = 1, high: int = 1) -> list[int]:
    """Per-layer N_l in [max(1, n-low), min(m, n+high)], monotone in importance, with
    sum(p_l N_l) == n * sum(p_l) (see the module docstring for the mapping and rebalancing)."""
    check_nm(n, m)
    L = len(importance)
    if L == 0 or len(params) != L:
        raise ConfigError(f"allocate_n needs one parameter count per layer ({L} importances, {len(params)} counts)")
    if any(p <= 0 for p in params) or any(not (math.isfinite(i) and i > 0) for i in importance):
        raise ConfigError("allocate_n needs positive parameter counts and positive finite importances")
    if low < 0 or high < 0:
        raise ConfigError("cfs_low and cfs_high must be >= 0")
    n_lo, n_hi = max(1, n - low), min(m, n + high)
    mean = sum(importance) / L
    d = [i / mean - 1.0 for i in importance]
    up = max(max(d), 0.0)
    down = max(-min(d), 0.0)
    x = [n + (di / up * (n_hi - n) if di > 0 else (di / down * (n - n_lo) if di < 0 else 0.0)) for di in d]
    N = [min(n_hi, max(n_lo, math.floor(xi + 0.5))) for xi in x]
    excess = sum(p * k for p, k in zip(params, N)) - n * sum(params)
    while excess > 0:
        cands = [l for l in range(L) if N[l] > n_lo]
        if not cands:
            break
        l = max(cands, key=lambda l: (N[l] - x[l], -importance[l], -l))
        N[l] -= 1
        excess -= params[l]
    while excess < 0:
        cands = [l for l in range(L) if N[l] < n_hi]
        if not cands:
            break
        l = max(cands, key=lambda l: (x[l] - N[l], importance[l], l))
        N[l] += 1
        excess += params[l]
    return N if excess == 0 else [n] * L


def obs_scores(W: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(R, b) OBS saliency w^2 / U_jj^2 of the current block; d = diag of U's block (b,)."""
    return W.square() / d.square()[None]


def cfs_mask(W: torch.Tensor, d: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """(R, b) bool: the n highest-OBS-score entries of every M-group are kept."""
    return nm_mask(obs_scores(W, d), n, m)
