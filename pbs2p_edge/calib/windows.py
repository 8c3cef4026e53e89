"""Cut a token stream into calibration windows (random, seeded) and evaluation windows (non-overlapping)."""

from __future__ import annotations

import torch

from ..errors import ConfigError, DataError


def _check_ids(ids: torch.Tensor) -> None:
    if ids.dim() != 1:
        raise DataError(f"token ids must be 1-D, got shape {tuple(ids.shape)}")


def calibration_windows(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int = 0) -> torch.Tensor:
    """(nsamples, seqlen) int64 windows of ids starting at uniform random offsets (GPTQ's sampling).

    Offsets are drawn from a torch.Generator seeded with `seed`, so the same (ids, nsamples, seqlen,
    seed) always gives the same windows; windows may overlap each other.
    """
    _check_ids(ids)
    if nsamples < 1:
        raise ConfigError(f"nsamples must be >= 1, got {nsamples}")
    if seqlen < 1:
        raise ConfigError(f"seqlen must be >= 1, got {seqlen}")
    if ids.numel() < seqlen:
        raise DataError(f"text too short for one calibration window: needs {seqlen} tokens, has {ids.numel()}")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen + 1, (nsamples,), generator=gen)
    offsets = starts[:, None] + torch.arange(seqlen)[None, :]
    return ids.long().cpu()[offsets]


def eval_windows(ids: torch.Tensor, seqlen: int, max_windows: int | None = None) -> torch.Tensor:
    """(n, seqlen) int64 consecutive non-overlapping windows from the start; the tail shorter than
    seqlen is dropped; n = min(len // seqlen, max_windows)."""
    _check_ids(ids)
    if seqlen < 2:
        raise ConfigError(f"evaluation seqlen must be >= 2 (a window predicts seqlen-1 tokens), got {seqlen}")
    if max_windows is not None and max_windows < 1:
        raise ConfigError(f"max_windows must be >= 1, got {max_windows}")
    n = ids.numel() // seqlen
    if n == 0:
        raise DataError(f"text too short for one evaluation window: needs {seqlen} tokens, has {ids.numel()}")
    if max_windows is not None:
        n = min(n, max_windows)
    return ids.long().cpu()[: n * seqlen].reshape(n, seqlen)
