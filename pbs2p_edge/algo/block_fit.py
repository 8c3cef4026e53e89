"""BlockFit: the working binarized form of one column block, its exact dequantization, and assembly.

A BlockFit is what every binarizer produces and refines for the columns [start, end) of a layer;
`Assembly` writes the blocks into one LayerResult as they are finished. `dequant` evaluates the same float32 operations
in the same order as LayerResult.dequantize, so the Q the GPTQ loop compensates for is exactly what
the packed file reproduces (equal values; a zero's sign may differ).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .result import LayerResult


class Terms(NamedTuple):
    """BlockFit._terms(): the per-element factors of W_hat for the present scales, each (R, b)."""
    a0: torch.Tensor  # alpha_0 of the element's region
    a1: torch.Tensor | None  # alpha_1 in salient columns, 0 elsewhere; None without salient columns
    mu: torch.Tensor  # mu of the element's region
    col: torch.Tensor | None  # ARB-RC column scale of the element's region; None without


class Nearest(NamedTuple):
    """BlockFit.nearest(): the B step's signs and W_hat."""
    s0: torch.Tensor  # (R, b) float32 in {-1, +1}
    s1: torch.Tensor | None
    W_hat: torch.Tensor  # (R, b) float32, equal to dequant() with these signs


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

    def rows(self, idx: torch.Tensor) -> "BlockFit":
        """The fit of the rows `idx` (an index tensor) alone: copies, the column data shared."""
        return dataclasses.replace(
            self, kept=self.kept[idx], region=self.region[idx], s0=self.s0[idx],
            s1=None if self.s1 is None else self.s1[idx], alpha=self.alpha[:, :, idx], mu=self.mu[:, idx])

    def dequant(self, s0: torch.Tensor | None = None, s1: torch.Tensor | None = None,
                use_col: bool = True) -> torch.Tensor:
        """W_hat (R, b) float32 in LayerResult.dequantize's order; s0/s1 override the signs.

        Equal in value to LayerResult.dequantize (only the sign of a zero may differ): the two
        selects of the canonical order are evaluated as exact arithmetic instead, because a select
        over an irregular mask is several times slower on CPU than a multiply; adding
        alpha_1 * s_1 * 0 outside salient columns adds a zero, and a kept entry times 1 is itself.
        """
        s0 = self.s0 if s0 is None else s0
        s1 = self.s1 if s1 is None else s1
        a0, a1, mu, col = self._terms()
        return _compose(a0, a1, mu, col if use_col else None, s0, s1, self.kept)

    def _terms(self) -> Terms:
        """Per element: alpha_0 of its region, alpha_1 (0 outside salient columns; None without
        them), mu of its region and its column scale (None without), each (R, b)."""
        a0 = self.alpha[0].T.gather(1, self.region)  # alpha[0][region[i, j], i]
        a1 = None if self.s1 is None else self.alpha[1, 0][:, None] * self.salient.to(self.alpha.dtype)[None]
        mu = self.mu.T.gather(1, self.region)
        col = None if self.col is None else self.col.gather(0, self.region)  # col[region[i, j], j]
        return Terms(a0, a1, mu, col)

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

    def nearest(self, W: torch.Tensor) -> Nearest:
        """B step without applying it: every element's nearest reachable level (see Nearest).

        The levels of an element are c (mu + s0 a0 + s1 a1), symmetric about c mu. With A = c a0 the
        larger step (|a0| >= |a1|, always true outside salient columns, where a1 = 0), the nearest
        level has s0 A on the side of t = w - c mu, and then s1 c a1 on the side of t - s0 A;
        rows whose salient plane 1 has the larger step decide s1 first. An exact tie of a side goes to
        +1. This is argmin over level_table except where two levels are
        equally near up to float32 rounding (then either may be taken), in about a third of the
        elementwise passes of comparing four distances. W_hat equals dequant with the returned
        signs, bit for bit. Pruned entries get arbitrary signs (consumers mask them with `kept`).
        """
        terms = self._terms()
        a0, a1, mu, col = terms
        if col is not None:
            a0, a1, mu = a0 * col, None if a1 is None else a1 * col, mu * col
        t = W - mu

        def side(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:  # True: +step is nearer x
            return (x * step) >= 0

        def sign(pos: torch.Tensor) -> torch.Tensor:  # exactly +-1
            return pos.to(W.dtype) * 2 - 1

        pos0 = side(t, a0)
        s0 = sign(pos0)
        pos1 = s1 = None
        if a1 is not None:
            pos1 = side(t - s0 * a0, a1)
            swap = (self.alpha[1, 0].abs() > self.alpha[0, 0].abs()).nonzero().squeeze(1)  # (rows,)
            if swap.numel():
                t_, a0_, a1_ = t[swap], a0[swap], a1[swap]
                p1 = side(t_, a1_)
                pos0[swap] = side(t_ - sign(p1) * a1_, a0_)
                pos1[swap] = p1
                s0[swap] = sign(pos0[swap])
            s1 = sign(pos1)
        return Nearest(s0, s1, _compose(*terms, s0, s1, self.kept))

    def resign(self, W: torch.Tensor) -> None:
        """B step: every element takes its nearest reachable level (for first order with alpha >= 0
        this is sign(w - mu); for 2nd order the nearest of the four levels, as ARB prescribes)."""
        near = self.nearest(W)
        self.s0 = near.s0
        if self.s1 is not None:
            self.s1 = near.s1

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


class Assembly:
    """One LayerResult written block by block as the GPTQ loop emits each fit (in column order), in canonical form:
    signs False where pruned, plane 1 False outside salient columns, group 0 for salient or pruned elements, unused
    regions' alpha/mu 0, unused col_scale 1. It holds the result's 4 bytes per weight, never a list of fits."""

    def __init__(self, R: int, K: int, group_size: int, split_groups: int, salient: bool, rc: bool,
                 device: torch.device):
        P, S, G = (2 if salient else 1), split_groups, -(-K // group_size)
        self.salient_planes, self.group_size = salient, group_size
        self.mask = torch.zeros(R, K, dtype=torch.bool, device=device)
        self.signs = torch.zeros(P, R, K, dtype=torch.bool, device=device)
        self.sal = torch.zeros(K, dtype=torch.bool, device=device)
        self.group = torch.zeros(R, K, dtype=torch.uint8, device=device)
        self.alpha = torch.zeros(P, 1 + S, R, G, device=device)
        self.mu = torch.zeros(1 + S, R, G, device=device)
        self.col = torch.ones(1 + S, K, device=device) if rc else None

    def add(self, start: int, end: int, f: BlockFit) -> None:
        """Writes the fit of columns [start, end), a whole scale group (start a multiple of group_size)."""
        g = start // self.group_size
        self.mask[:, start:end] = f.kept
        self.signs[0, :, start:end] = f.kept & (f.s0 > 0)
        if self.salient_planes:
            self.signs[1, :, start:end] = f.kept & (f.s1 > 0) & f.salient
        self.sal[start:end] = f.salient
        self.group[:, start:end] = torch.where(f.kept & ~f.salient, f.region - 1, 0).to(torch.uint8)
        self.alpha[..., g] = f.alpha
        self.mu[..., g] = f.mu
        if self.col is not None:
            self.col[:, start:end] = f.col

    def result(self, n: int, m: int, loss: float) -> LayerResult:
        return LayerResult(mask=self.mask, signs=self.signs, salient=self.sal, group=self.group, alpha=self.alpha,
                           mu=self.mu, col_scale=self.col, n=n, m=m, group_size=self.group_size, loss=loss)
