import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pbs2p_edge.algo.cfs import allocate_n, block_importance, cfs_mask, obs_scores
from pbs2p_edge.errors import ConfigError


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.5, 20.0), min_size=1, max_size=40), st.integers(1, 8), st.integers(0, 3),
       st.integers(0, 3))
def test_allocate_n_invariants_equal_params(imp, n, low, high):
    N = allocate_n(imp, [1000] * len(imp), n, 8, low, high)
    assert all(max(1, n - low) <= k <= min(8, n + high) for k in N)
    assert sum(N) == n * len(imp)  # parameter-weighted mean is exactly n
    for a in range(len(imp)):
        for b in range(len(imp)):
            if imp[a] > imp[b]:
                assert N[a] >= N[b]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 20.0), st.integers(1, 5)), min_size=1, max_size=20), st.integers(2, 7))
def test_allocate_n_unequal_params_is_exact(layers, n):
    imp = [i for i, _ in layers]
    params = [p * 1024 for _, p in layers]
    N = allocate_n(imp, params, n, 8)
    assert sum(p * k for p, k in zip(params, N)) == n * sum(params)
    assert all(n - 1 <= k <= n + 1 for k in N)


def test_allocate_n_spreads_over_the_range():
    assert allocate_n([1.0, 1.1, 1.2, 1.3, 1.4], [1] * 5, 6, 8) == [5, 5, 6, 7, 7]
    assert allocate_n([2.0, 2.0, 2.0], [7, 7, 7], 4, 8) == [4, 4, 4]
    assert allocate_n([1.0, 3.0], [1, 1], 8, 8) == [8, 8]  # n + high clipped at M, budget forces M
    with pytest.raises(ConfigError):
        allocate_n([1.0], [1, 2], 4, 8)
    with pytest.raises(ConfigError):
        allocate_n([0.0], [1], 4, 8)


def test_block_importance():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 32)
    assert math.isclose(block_importance(x, 3 * x), 1.0, rel_tol=1e-6)
    y = x + torch.randn(2, 16, 32)
    cos = torch.nn.functional.cosine_similarity(x, y, dim=-1).mean()
    assert math.isclose(block_importance(x, y), 1 / float(cos), rel_tol=1e-5)
    assert math.isclose(block_importance([x[0], x[1]], [y[0], y[1]]), 1 / float(cos), rel_tol=1e-5)
    assert block_importance(x, -x) == 1000.0  # clamped, not negative
    with pytest.raises(ConfigError):
        block_importance(x, y[:, :3])


def test_cfs_mask_keeps_highest_obs_scores():
    torch.manual_seed(0)
    W, d = torch.randn(4, 16), torch.rand(16) + 0.1
    mask = cfs_mask(W, d, 3, 8)
    s = obs_scores(W, d).reshape(4, 2, 8)
    g = mask.reshape(4, 2, 8)
    assert (g.sum(-1) == 3).all()
    assert (torch.where(g, s, torch.inf).amin(-1) >= torch.where(g, -torch.inf, s).amax(-1)).all()
