"""BiLLM-style closed-form binarizers over a masked region, per row: first order and 2nd-order residual."""

from __future__ import annotations

import torch


def fit_first(W: torch.Tensor, member: torch.Tensor, use_mean: bool):
    """W (R, b) ~ alpha * B + mu over the True entries of member (R, b), per row.

    mu = mean(w), alpha = mean|w - mu|, B = sign(w - mu) with sign(0) = +1; mu = 0 without a mean.
    Returns alpha (R,), mu (R,), B (R, b) float in {-1, +1} (B is meaningless outside member).
    A row with no member gets alpha = mu = 0.
    """
    mem = member.to(W.dtype)
    cnt = mem.sum(1).clamp_min(1)
    mu = (W * mem).sum(1) / cnt if use_mean else W.new_zeros(W.shape[0])
    D = W - mu[:, None]
    B = (D >= 0).to(W.dtype) * 2 - 1  # exactly +-1, sign(0) = +1 (no data-dependent branch)
    alpha = (D.abs() * mem).sum(1) / cnt
    return alpha, mu, B


def first_error(W: torch.Tensor, member: torch.Tensor, use_mean: bool) -> torch.Tensor:
    """Scalar squared reconstruction error of fit_first over member (a 0-d tensor, no host sync)."""
    alpha, mu, B = fit_first(W, member, use_mean)
    approx = alpha[:, None] * B + mu[:, None]
    return ((W - approx).square() * member).sum()


def fit_residual(W: torch.Tensor, member: torch.Tensor, use_mean: bool):
    """2nd-order residual binarization W ~ a0*B0 + a1*B1 + mu (BiLLM's salient columns).

    The second plane binarizes the residual of the first; each order has its own mean as in BiLLM,
    and since both are per-row constants they are stored summed in one mu.
    Returns a0 (R,), a1 (R,), mu (R,), B0 (R, b), B1 (R, b).
    """
    a0, mu0, B0 = fit_first(W, member, use_mean)
    a1, mu1, B1 = fit_first(W - (a0[:, None] * B0 + mu0[:, None]), member, use_mean)
    return a0, a1, mu0 + mu1, B0, B1
