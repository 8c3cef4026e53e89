"""Random arrays that satisfy the LayerResult contract (pbs2p_edge/algo/result.py), for packing tests."""

from __future__ import annotations

import numpy as np


def random_layer_arrays(rng: np.random.Generator, R: int, K: int, n: int, m: int, split: int = 1,
                        n_salient: int = 0, use_mu: bool = True, use_col_scale: bool = False,
                        group_size: int = 128) -> dict:
    """Keyword arguments for pack_layer: a valid N:M mask, canonical signs/groups, float16-exact scales."""
    G = -(-K // group_size)
    order = rng.random((R, K // m, m)).argsort(axis=2).argsort(axis=2)
    mask = (order < n).reshape(R, K)
    salient = np.zeros(K, dtype=bool)
    salient[rng.choice(K, size=n_salient, replace=False)] = True
    P = 2 if n_salient else 1
    signs = rng.random((P, R, K)) < 0.5
    signs &= mask
    if P == 2:
        signs[1] &= salient
    group = np.where(mask & ~salient, rng.integers(0, split, size=(R, K)), 0).astype(np.uint8)

    def f16(shape, low=0.01):
        return (low + rng.random(shape)).astype(np.float16).astype(np.float32)

    alpha = f16((P, 1 + split, R, G))
    mu = (f16((1 + split, R, G)) - np.float32(0.5)).astype(np.float16).astype(np.float32) if use_mu \
        else np.zeros((1 + split, R, G), np.float32)
    col_scale = f16((1 + split, K), low=0.5) if use_col_scale else None
    return dict(mask=mask, signs=signs, salient=salient, group=group, alpha=alpha, mu=mu,
                col_scale=col_scale, n=n, m=m, group_size=group_size)
