"""N:M semi-structured mask: keep the n highest-scoring of every m consecutive input columns, per row."""

from __future__ import annotations

import torch


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """(R, K) scores -> (R, K) bool, True = kept; every row x M-group holds exactly n True.

    K must be a multiple of m (checked by the caller, which names the layer). Ties are broken by
    topk's deterministic order for a given device.
    """
    R, K = scores.shape
    if n == m:
        return torch.ones(R, K, dtype=torch.bool, device=scores.device)
    idx = scores.reshape(R, K // m, m).topk(n, dim=-1).indices  # (R, K/m, n)
    mask = torch.zeros(R, K // m, m, dtype=torch.bool, device=scores.device)
    return mask.scatter_(-1, idx, True).reshape(R, K)
