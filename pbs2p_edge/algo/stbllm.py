"""STBLLM's N:M pruning metric: |W| * ||x_j|| (Wanda-style), kept entries then BiLLM-binarized.

STBLLM's public code re-binarizes pruned weights back to non-zero values; here pruned entries are
outside every region (BlockFit.kept), so they stay exactly zero.
"""

from __future__ import annotations

import torch

from .nm_mask import nm_mask


def input_norms(H: torch.Tensor) -> torch.Tensor:
    """(K,) ||x_j|| up to a constant factor: sqrt(diag H), H = 2/n X^T X (undamped, caller's H)."""
    return torch.diagonal(H).clamp_min(0).sqrt()


def stbllm_mask(W: torch.Tensor, x_norm: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """(R, b) bool N:M mask keeping the n largest |W_ij| * ||x_j|| of every M-group."""
    return nm_mask(W.abs() * x_norm[None], n, m)
