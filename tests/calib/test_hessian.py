"""Tests that the Hessian accumulator equals 2/n XᵀX however the tokens arrive, and that hooks feed it."""

import torch
from torch import nn

from pbs2p_edge.calib.hessian import Hessian, accumulate_hessians


def test_running_mean_equals_direct_formula():
    torch.manual_seed(0)
    X = torch.randn(1000, 24, dtype=torch.float64) * 3 + 1
    h = Hessian(24)
    for chunk in [X[:1], X[1:300].reshape(13, 23, 24), X[300:301], X[301:1000]]:
        h.add(chunk.float())
    h.add(torch.empty(0, 24))  # no tokens: no change
    assert h.tokens == 1000
    expected = 2.0 / 1000 * X.T @ X
    torch.testing.assert_close(h.H.double(), expected, rtol=1e-5, atol=1e-4)
    assert h.H.dtype == torch.float32 and torch.equal(h.H, h.H.T)


def test_hooks_collect_each_linears_input_and_are_removed():
    torch.manual_seed(0)
    a, b = nn.Linear(8, 16), nn.Linear(16, 4)
    x = torch.randn(2, 5, 8)
    with accumulate_hessians({"a": a, "b": b}) as hs:
        y = a(x)
        b(torch.relu(y))
    assert a._forward_hooks == {} and b._forward_hooks == {}
    Xa = x.reshape(-1, 8).double()
    Xb = torch.relu(y).detach().reshape(-1, 16).double()
    torch.testing.assert_close(hs["a"].H.double(), 2 / 10 * Xa.T @ Xa, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hs["b"].H.double(), 2 / 10 * Xb.T @ Xb, rtol=1e-5, atol=1e-6)
    assert hs["a"].tokens == hs["b"].tokens == 10


def test_linears_reading_one_tensor_share_one_hessian_with_the_same_values():
    torch.manual_seed(0)
    q, k, o = nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(8, 8)
    xs = [torch.randn(2, 5, 8) for _ in range(3)]
    with accumulate_hessians({"q": q, "k": k, "o": o, "never": nn.Linear(6, 2)}) as hs:
        for x in xs:
            q(x)
            k(x)  # the same tensor: shared
            o(x.clone())  # equal values, another tensor: its own
    assert list(hs) == ["q", "k", "o", "never"]
    assert hs["q"] is hs["k"] and hs["o"] is not hs["q"]
    assert hs["q"].tokens == hs["o"].tokens == 30  # accumulated once, not twice
    assert torch.equal(hs["q"].H, hs["o"].H)  # what separate accumulators hold, bit for bit
    assert hs["never"].tokens == 0 and not hs["never"].H.any()


def test_a_linear_that_stops_sharing_its_input_is_an_error():
    import pytest

    from pbs2p_edge.errors import ModelError

    q, k = nn.Linear(8, 8), nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with pytest.raises(ModelError, match="cannot be shared"):
        with accumulate_hessians({"q": q, "k": k}):
            q(x), k(x)
            q(x), k(x.clone())
