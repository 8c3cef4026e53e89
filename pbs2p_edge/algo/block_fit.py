"""BlockFit: the working binarized form of one column block, its exact dequantization, and assembly.

A BlockFit is what every binarizer produces and refines for the columns [start, end) of a layer;
`assemble` writes the blocks into one LayerResult. `dequant` evaluates the same float32 operations
in the same order as LayerResult.dequantize, so the Q the GPTQ loop compensates for is exactly what
the packed file reproduces (equal values; a zero's sign may differ).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .result import LayerResult


@dataclass
class BlockFit:
    kept: torch.Tensor  # (R, b) bool, True = kept
    region: torch.Tensor  # (R, b) int64: 0 = salient column, 1 + k = split group k (any value where pruned)
    salient: torch.Tensor  # (b,) bool
    s0: torch.Tensor  # (R, b) float32 in {-1, +1}, plane 0 signs
    s1: torch.Tensor | None  # (R, b) float32 in {-1, +1}, plane 1 (read in salient columns); None = no salient
    alpha: torch.Tensor  # (P, 1+S, R) float32, scale of plane p in region r
    mu: torch.Tensor  # (1+S, R) float32, mean term per region (all 0 without a mean)
    col: torch.Tensor | None  # (1+S, b) float32 ARB-RC column scales per region, or None

    @property
    def regions(self) -> list[int]:
        """Regions this block can hold: 0 only with salient columns, then 1..S."""
        S = self.mu.shape[0] - 1
        return ([0] if self.s1 is not None else []) + list(range(1, 1 + S))

    def dequant(self, s0: torch.Tensor | None = None, s1: torch.Tensor | None = None,
                use_col: bool = True, rows: torch.Tensor | None = None) -> torch.Tensor:
        """W_hat (R, b) float32 in LayerResult.dequantize's order; s0/s1 override the signs.

        Equal in value to LayerResult.dequantize (only the sign of a zero may differ): the two
        selects of the canonical order are evaluated as exact arithmetic instead, because a select
        over an irregular mask is several times slower on CPU than a multiply; adding
        alpha_1 * s_1 * 0 outside salient columns adds a zero, and a kept entry times 1 is itself.
        rows (an index tensor): only those rows, (len(rows), b); s0/s1 overrides are then per row too.
        """
        sel = slice(None) if rows is None else rows
        s0 = self.s0[sel] if s0 is None else s0
        s1 = (None if self.s1 is None else self.s1[sel]) if s1 is None else s1
        a0, a1, mu, col = self._terms(sel)
        return _compose(a0, a1, mu, col if use_col else None, s0, s1, self.kept[sel])

    def _terms(self, rows=slice(None)):
        """Per element of `rows`: alpha_0 of its region, alpha_1 (0 outside salient columns; None
        without them), mu of its region and its column scale (None without), each (len(rows), b)."""
        region = self.region[rows]
        a0 = self.alpha[0][:, rows].T.gather(1, region)  # alpha[0][region[i, j], i]
        a1 = None if self.s1 is None else \
            self.alpha[1, 0][rows][:, None] * self.salient.to(self.alpha.dtype)[None]
        mu = self.mu[:, rows].T.gather(1, region)
        col = None if self.col is None else self.col.gather(0, region)  # col[region[i, j], j]
        return a0, a1, mu, col

    def level_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every element's reachable values: signs (C, 2) float, levels (C, R, b); C = 2 or 4.

        Combination c sets s0 = signs[c, 0], s1 = signs[c, 1]. Positive combinations come first, so
        an argmin tie picks +1 (matching sign(0) = +1).
        """
        one = torch.ones_like(self.s0)
        if self.s1 is None:
            signs = torch.tensor([[1.0, 1.0], [-1.0, 1.0]], device=one.device)
        else:
            signs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], device=one.device)
        levels = torch.stack([self.dequant(one * a, one * c) for a, c in signs.tolist()])
        return signs, levels

    def set_choice(self, signs: torch.Tensor, choice: torch.Tensor) -> None:
        """Sets the signs from a (R, b) index into level_table's combinations."""
        self.s0 = signs[choice, 0]
        if self.s1 is not None:
            self.s1 = signs[choice, 1]

    def nearest(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """B step without applying it: every element's nearest reachable level, as (s0, s1, W_hat)
        (see nearest_bits; here the signs are float +-1)."""
        _, _, s0, s1, W_hat = self._nearest(W)
        return s0, s1, W_hat

    def nearest_bits(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Every element's nearest reachable level, as (pos0, pos1, W_hat): pos_p bool (R, b), True
        where plane p's sign is +1 (pos1 None without salient columns).

        Equal to argmin over level_table (the first combination wins ties) and W_hat to dequant
        with the returned signs, but cheaper on CPU: the levels are formed in dequant's op order from
        a0 + a1 and a0 - a1 (multiplying by +-1 and negating are exact, and rounding is symmetric,
        so -a0 + a1 = -(a0 - a1) bit for bit), the first minimum is found with compares instead of
        an argmin over a leading dimension, and no select over an irregular mask is used.
        Pruned entries get arbitrary signs (every consumer masks them with `kept`).
        """
        pos0, pos1, _, _, W_hat = self._nearest(W)
        return pos0, pos1, W_hat

    def _nearest(self, W: torch.Tensor):
        """(pos0, pos1, s0, s1, W_hat) of the B step: the signs as bools and as float +-1."""
        a0, a1, mu, col = self._terms()

        def dist(level: torch.Tensor) -> torch.Tensor:
            return (W - (level if col is None else level * col)).abs()

        if a1 is None:  # combinations (+1), (-1)
            pos0 = dist(a0 + mu) <= dist(mu - a0)
            pos1 = None
        else:  # combinations (+,+), (+,-), (-,+), (-,-): first minimum of the four
            P, M = a0 + a1, a0 - a1
            d0, d1, d2, d3 = dist(P + mu), dist(M + mu), dist(mu - M), dist(mu - P)
            pos0 = torch.minimum(d0, d1) <= torch.minimum(d2, d3)
            pos1 = (pos0 & (d0 <= d1)) | (~pos0 & (d2 <= d3))
        s0 = pos0.to(W.dtype) * 2 - 1  # exactly +-1
        s1 = None if pos1 is None else pos1.to(W.dtype) * 2 - 1
        return pos0, pos1, s0, s1, _compose(a0, a1, mu, col, s0, s1, self.kept)

    def resign(self, W: torch.Tensor) -> None:
        """B step: every element takes its nearest reachable level (for first order with alpha >= 0
        this is sign(w - mu); for 2nd order the nearest of the four levels, as ARB prescribes)."""
        self.s0, s1, _ = self.nearest(W)
        if self.s1 is not None:
            self.s1 = s1

    def rounded(self) -> "BlockFit":
        """The same fit with alpha, mu and col held in float16-representable float32 values."""
        def r16(t):
            return None if t is None else t.half().float()
        return dataclasses.replace(self, alpha=r16(self.alpha), mu=r16(self.mu), col=r16(self.col))


def _compose(a0: torch.Tensor, a1: torch.Tensor | None, mu: torch.Tensor, col: torch.Tensor | None,
             s0: torch.Tensor, s1: torch.Tensor | None, kept: torch.Tensor) -> torch.Tensor:
    """W_hat in LayerResult.dequantize's op order from per-element terms (BlockFit._terms) and signs."""
    v = a0 * s0
    if a1 is not None:
        v = v + a1 * s1
    v = v + mu
    if col is not None:
        v = v * col
    return v * kept


def assemble(fits: list[BlockFit], R: int, K: int, n: int, m: int, group_size: int,
             split_groups: int, salient: bool, rc: bool, loss: float) -> LayerResult:
    """Writes the per-block fits (in column order) into one LayerResult in canonical form:
    signs False where pruned, plane 1 False outside salient columns, group 0 for salient or pruned
    elements, unused regions' alpha/mu 0, unused col_scale 1."""
    dev = fits[0].kept.device
    P, S, G = (2 if salient else 1), split_groups, len(fits)
    mask = torch.zeros(R, K, dtype=torch.bool, device=dev)
    signs = torch.zeros(P, R, K, dtype=torch.bool, device=dev)
    sal = torch.zeros(K, dtype=torch.bool, device=dev)
    group = torch.zeros(R, K, dtype=torch.uint8, device=dev)
    alpha = torch.zeros(P, 1 + S, R, G, device=dev)
    mu = torch.zeros(1 + S, R, G, device=dev)
    col = torch.ones(1 + S, K, device=dev) if rc else None
    start = 0
    for g, f in enumerate(fits):
        end = start + f.kept.shape[1]
        mask[:, start:end] = f.kept
        signs[0, :, start:end] = f.kept & (f.s0 > 0)
        if salient:
            signs[1, :, start:end] = f.kept & (f.s1 > 0) & f.salient
        sal[start:end] = f.salient
        group[:, start:end] = torch.where(f.kept & ~f.salient, f.region - 1, 0).to(torch.uint8)
        alpha[..., g] = f.alpha
        mu[..., g] = f.mu
        if rc:
            col[:, start:end] = f.col
        start = end
    return LayerResult(mask=mask, signs=signs, salient=sal, group=group, alpha=alpha, mu=mu,
                       col_scale=col, n=n, m=m, group_size=group_size, loss=loss)
