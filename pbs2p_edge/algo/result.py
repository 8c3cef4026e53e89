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

    def dequantize(self) -> torch.Tensor:
        """W_hat (R, K) float32, in the fixed order of the module docstring."""
        R, K = self.mask.shape
        cols = torch.arange(K, device=self.mask.device)
        g = (cols // self.group_size).expand(R, K)
        region = torch.where(self.salient.expand(R, K), 0, 1 + self.group.long())
        rows = torch.arange(R, device=self.mask.device)[:, None].expand(R, K)
        s0 = self.signs[0].float() * 2 - 1
        v = self.alpha[0][region, rows, g] * s0
        if self.signs.shape[0] > 1:
            s1 = self.signs[1].float() * 2 - 1
            v = torch.where(self.salient.expand(R, K), v + self.alpha[1, 0][rows, g] * s1, v)
        v = v + self.mu[region, rows, g]
        if self.col_scale is not None:
            v = v * self.col_scale[region, cols.expand(R, K)]
        return torch.where(self.mask, v, torch.zeros((), dtype=v.dtype, device=v.device))
