"""LayerResult: the exact compressed representation of one linear layer, as the math produces it.

Dense, easy-to-check tensors; `pbs2p_edge.pack` turns them into the compact on-disk format
(docs/FORMAT.md) and back, bit-exactly.

Shapes (R = out rows, K = in columns, G = ceil(K / group_size), S = split groups, P = planes):
  mask    bool (R, K)        True = kept. Every row x M-group holds exactly `n` True.
  signs   bool (P, R, K)     True = +1. P = 2 iff the layer has salient columns; plane 1 is read
                             only in salient columns. Canonical: False wherever mask is False, and
                             plane 1 is False outside salient columns.
  salient bool (K,)          columns with 2nd-order residual binarization (region 0).
  group   uint8 (R, K)       split-group index 0..S-1 of each kept non-salient element; 0 elsewhere.
  alpha   float32 (P, 1+S, R, G)  scale of plane p in region r (r = 0 salient, r = 1+k group k).
  mu      float32 (1+S, R, G)     mean term per region (all 0 when the method has no mean).
  col_scale float32 (1+S, K) or None   ARB-RC column scales per region.
alpha, mu and col_scale hold float16-representable values (the math rounds them before computing
its error, so the file loses nothing).

Dequantization, fixed order in float32 (mirrored by pack and by libpbs2p's reference):
  r = 0 if salient[j] else 1 + group[i, j];  g = j // group_size;  s_p = +1 if signs[p,i,j] else -1
  v = alpha[0,r,i,g] * s_0
  if salient[j]: v = v + alpha[1,0,i,g] * s_1
  v = v + mu[r,i,g]
  if col_scale is not None: v = v * col_scale[r, j]
  W_hat[i, j] = v if mask[i, j] else 0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEQUANT_ROWS_ELEMENTS = 1 << 22  # [choice] weights dequantized at a time: 4 Mi (its index tensors about 100 MB)


def in_row_chunks(shape: tuple[int, int], rows, out: torch.Tensor | None, device) -> torch.Tensor:
    """An (R, K) float32 (`out` when given) filled DEQUANT_ROWS_ELEMENTS at a time by rows(r0, r1), which gives rows
    r0 .. r1 - 1: a dequantization's temporaries stay a few MB whatever the layer's size."""
    R, K = shape
    out = torch.empty(R, K, dtype=torch.float32, device=device) if out is None else out
    step = max(1, DEQUANT_ROWS_ELEMENTS // K)
    for r0 in range(0, R, step):
        out[r0: r0 + step] = rows(r0, min(R, r0 + step))
    return out


@dataclass(frozen=True)
class LayerResult:
    mask: torch.Tensor
    signs: torch.Tensor
    salient: torch.Tensor
    group: torch.Tensor
    alpha: torch.Tensor
    mu: torch.Tensor
    col_scale: torch.Tensor | None
    n: int  # kept per M-group in this layer (N_l)
    m: int
    group_size: int
    loss: float  # sum over blocks of the GPTQ objective ||(W - Q) / diag(U)||^2 (0 for Hessian-free methods)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mask.shape)

    @property
    def split_groups(self) -> int:
        return self.alpha.shape[1] - 1

    def dequantize(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """W_hat (R, K) float32, in the fixed order of the module docstring; computed DEQUANT_ROWS_ELEMENTS at a time
        (the index tensors of the whole layer would take 5x its float32 size: 0.9 GB for a 7B model's MLP).
        out: a float32 (R, K) to write it in (the module's weight: no second R x K), else a new tensor."""
        return in_row_chunks(self.shape, self._rows, out, self.mask.device)

    def _rows(self, r0: int, r1: int) -> torch.Tensor:
        """Rows r0 .. r1 - 1 of W_hat (elementwise: any cut of the rows gives the same bits)."""
        K = self.mask.shape[1]
        R = r1 - r0
        cols = torch.arange(K, device=self.mask.device)
        g = (cols // self.group_size).expand(R, K)
        region = torch.where(self.salient.expand(R, K), 0, 1 + self.group[r0:r1].long())
        rows = torch.arange(r0, r1, device=self.mask.device)[:, None].expand(R, K)
        s0 = self.signs[0, r0:r1].float() * 2 - 1
        v = self.alpha[0][region, rows, g] * s0
        if self.signs.shape[0] > 1:
            s1 = self.signs[1, r0:r1].float() * 2 - 1
            v = torch.where(self.salient.expand(R, K), v + self.alpha[1, 0][rows, g] * s1, v)
        v = v + self.mu[region, rows, g]
        if self.col_scale is not None:
            v = v * self.col_scale[region, cols.expand(R, K)]
        return torch.where(self.mask[r0:r1], v, torch.zeros((), dtype=v.dtype, device=v.device))
