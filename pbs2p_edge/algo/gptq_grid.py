"""GPTQ onto a grid tier (pbs2p_edge.pack.tiers): k-bit codes per block of `block` columns, Hessian-compensated.

Frantar et al.'s loop, column by column with lazy batch updates of 128 columns: a block's scale d (and min m)
is fitted when the loop reaches the block's first column, on the block's current (already compensated) weights;
each column then takes its nearest code, and its error, divided by U_jj, updates every later column.

[choice] The scale of a block is searched, not taken from the block's extremes alone: the extremes are shrunk by
each factor of CLIP and the factor with the least activation-weighted error sum_j H_jj (w_j - w_hat_j)^2 is kept
per row and block (GPTQ's `mse` grid and llama.cpp's imatrix weighting in one; on SmolLM2 block 3 the search
lowers the GPTQ loss of 3-bit layers by about a tenth). Symmetric ggml grids take d = extreme / -offset (Q4_0's
rule: the value of largest magnitude maps to code 0); asymmetric ones d = (hi - lo) / qmax, m = lo.
d and m are rounded to float16 before any code is chosen, so the compensation sees exactly what the file holds.

A two-level tier (tier.sub > 0) fixes the row's float16 D and M first, from the weights as the loop starts: D = the
largest sub-block range / qmax / 15, M = the largest -min / 15, so every sub-block's range fits the codes; each
sub-block then searches CLIP as above for its scale code sc = round(range / qmax / D) in 1..15 and min code
mc = round(-lo / M) in 0..15 (d = D * sc, m = -(M * mc), exact in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pack.tiers import CLIP, SUB_CODE_MAX, SUB_CODE_STEPS, Tier
from .hessian_prep import prepare_hessian
from .result import in_row_chunks

LAZY = 128  # columns per lazy batch update


@dataclass(frozen=True)
class GridResult:
    """A linear on a grid tier: q (R, K) codes 0..qmax, d and m (R, K / block) float16-valued float32."""
    tier: Tier
    q: torch.Tensor
    d: torch.Tensor
    m: torch.Tensor | None
    loss: float  # sum over columns of ((w - w_hat) / U_jj)^2, GPTQ's objective
    sc: torch.Tensor | None = None  # two-level tiers: d and m are the row's D and M (R, 1); sc, mc (R, K / sub)
    mc: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)

    def dequantize(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """W_hat (R, K) float32 in the file's order: d * (q - offset), or (d * q) + m; in row chunks (elementwise: any
        cut of the rows gives the same bits), into `out` when given."""
        return in_row_chunks(self.shape, self._rows, out, self.q.device)

    def scales(self, r0: int = 0, r1: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(d, m) of rows [r0, r1) per scale block (R, K / scale_block): a two-level tier's D * sc and -(M * mc)."""
        if self.sc is None:
            return self.d[r0:r1], None if self.m is None else self.m[r0:r1]
        return self.d[r0:r1] * self.sc[r0:r1].float(), -(self.m[r0:r1] * self.mc[r0:r1].float())

    def _rows(self, r0: int, r1: int) -> torch.Tensor:
        b = self.tier.scale_block
        d, m = self.scales(r0, r1)
        v = d.repeat_interleave(b, dim=1) * (self.q[r0:r1].float() - self.tier.offset)
        return v if m is None else v + m.repeat_interleave(b, dim=1)


def _f16(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-65504.0, 65504.0).to(torch.float16).float()


def quantize(x: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, t: Tier) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, values) of x (R, ...) on the grid d (R, 1), m (R, 1); d == 0 maps everything to code offset / 0."""
    inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))
    if m is None:
        q = torch.clamp(torch.round(x * inv) + t.offset, 0, t.qmax)
        return q, d * (q - t.offset)
    q = torch.clamp(torch.round((x - m) * inv), 0, t.qmax)
    return q, d * q + m


def _least_error(candidates) -> tuple:
    """Per row, the tensors of the candidate with the least error (the first on ties): candidates yields
    (err (R, 1), (tensor (R, ...) or None, ...)), one per shrink factor."""
    best_err = best = None
    for err, vals in candidates:
        if best is None:
            best_err, best = err, vals
            continue
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = tuple(None if v is None else torch.where(better, v, b) for v, b in zip(vals, best))
    return best


def fit_scales(Wb: torch.Tensor, h: torch.Tensor, t: Tier,
               clip: tuple[float, ...] = CLIP) -> tuple[torch.Tensor, torch.Tensor | None]:
    """d (R, 1) and m (R, 1) or None for the block Wb (R, b), searched over the shrink factors `clip` with
    column weights h (b,), or (R, b) when every row has its own."""
    def candidates():
        for c in clip:
            if t.has_min:
                lo = torch.clamp(Wb.min(1, keepdim=True).values, max=0) * c
                hi = torch.clamp(Wb.max(1, keepdim=True).values, min=0) * c
                d, m = _f16((hi - lo) / t.qmax), _f16(lo)
            else:
                idx = Wb.abs().argmax(1, keepdim=True)
                d, m = _f16(Wb.gather(1, idx) * c / -t.offset), None
            _, v = quantize(Wb, d, m, t)
            yield ((Wb - v).square() * h).sum(1, keepdim=True), (d, m)

    return _least_error(candidates())


def row_scales(W: torch.Tensor, t: Tier) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-level tier's D and M (R, 1), float16-valued, for W (R, K): every sub-block's range [min(lo, 0),
    max(hi, 0)] fits D * 15 * qmax and M * 15 covers its -lo."""
    Wb = W.reshape(W.shape[0], -1, t.sub)
    lo = Wb.min(2).values.clamp(max=0)
    hi = Wb.max(2).values.clamp(min=0)
    D = _f16(((hi - lo) / t.qmax).max(1, keepdim=True).values / SUB_CODE_MAX)
    M = _f16((-lo).max(1, keepdim=True).values / SUB_CODE_MAX)
    return D, M


def _rounded(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """round(x / step), x where step is 0 (_code zeroes those)."""
    return torch.round(x / torch.where(step == 0, torch.ones_like(step), step))


def _code(r: torch.Tensor, step: torch.Tensor, lo: int) -> torch.Tensor:
    """A rounded code r (_rounded, plus a step) in lo..SUB_CODE_MAX, 0 where step is 0."""
    c = torch.clamp(r, lo, SUB_CODE_MAX)
    return torch.where(step == 0, torch.zeros_like(c), c)


def fit_sub_codes(Wb: torch.Tensor, h: torch.Tensor, t: Tier, D: torch.Tensor, M: torch.Tensor,
                  clip: tuple[float, ...] = CLIP) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and min codes sc, mc (R, 1) of one sub-block Wb (R, sub) of a two-level tier, searched as fit_scales
    over the shrink factors and, for each, the codes SUB_CODE_STEPS around the rounded ones."""
    def candidates():
        for c in clip:
            lo = torch.clamp(Wb.min(1, keepdim=True).values, max=0) * c
            hi = torch.clamp(Wb.max(1, keepdim=True).values, min=0) * c
            rs, rm = _rounded((hi - lo) / t.qmax, D), _rounded(-lo, M)
            for ds, dm in SUB_CODE_STEPS:
                sc, mc = _code(rs + ds, D, 1), _code(rm + dm, M, 0)
                _, v = quantize(Wb, D * sc, -(M * mc), t)
                yield ((Wb - v).square() * h).sum(1, keepdim=True), (sc, mc)

    return _least_error(candidates())


def gptq_grid(W: torch.Tensor, H: torch.Tensor, t: Tier, percdamp: float = 0.01,
              overwrite_h: bool = False, overwrite_w: bool = False) -> GridResult:
    """Quantizes W (R, K) onto tier t with GPTQ compensation by H (K, K); the caller's tensors are not modified
    (but with overwrite_h, a float32 H on W's device is the buffer U is factored in, and with overwrite_w a float32 W
    is the working copy the loop updates: the caller's last use of them).
    K must be a multiple of t.block, and t.block must divide LAZY (so no scale block straddles two batches)."""
    R, K = W.shape
    t.check_cols("GPTQ", K)
    assert LAZY % t.block == 0
    prep = prepare_hessian(W, H.to(W.device), percdamp, overwrite_h, overwrite_w=overwrite_w)
    W, U = prep.W, prep.U
    hdiag = prep.diag
    sb = t.scale_block
    G = K // sb
    q = torch.empty(R, K, dtype=torch.uint8, device=W.device)
    d_all = torch.empty(R, G, device=W.device)
    m_all = torch.empty(R, G, device=W.device) if t.has_min else None
    if t.sub:
        D, M = row_scales(W, t)
        sc_all = torch.empty(R, G, dtype=torch.uint8, device=W.device)
        mc_all = torch.empty(R, G, dtype=torch.uint8, device=W.device)
    loss = W.new_zeros(())
    for i1 in range(0, K, LAZY):
        i2 = min(i1 + LAZY, K)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if col % sb == 0:
                g = col // sb
                if t.sub:
                    sc, mc = fit_sub_codes(W1[:, i:i + sb], hdiag[col:col + sb], t, D, M)
                    sc_all[:, g:g + 1], mc_all[:, g:g + 1] = sc.to(torch.uint8), mc.to(torch.uint8)
                    d, m = D * sc, -(M * mc)
                else:
                    d, m = fit_scales(W1[:, i:i + sb], hdiag[col:col + sb], t)
                    d_all[:, g:g + 1] = d
                    if m is not None:
                        m_all[:, g:g + 1] = m
            w = W1[:, i]
            qc, v = quantize(w[:, None], d, m, t)
            q[:, col] = qc[:, 0].to(torch.uint8)
            err = (w - v[:, 0]) / U1[i, i]
            loss += err.square().sum()
            W1[:, i:] -= err[:, None] * U1[i, i:][None]
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    if t.sub:
        return GridResult(tier=t, q=q, d=D, m=M, loss=float(loss), sc=sc_all, mc=mc_all)
    return GridResult(tier=t, q=q, d=d_all, m=m_all, loss=float(loss))


@dataclass(frozen=True)
class FloatResult:
    """A linear kept in the f16 tier: W_hat = W rounded to float16."""
    W: torch.Tensor  # (R, K) float16-valued float32
    loss: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W.shape)

    def dequantize(self, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.W if out is None else out.copy_(self.W)


def round_f16(W: torch.Tensor) -> FloatResult:
    return FloatResult(_f16(W.detach().float()))
