import torch

from pbs2p_edge.algo.hessian_prep import prepare_hessian
from pbs2p_edge.errors import ConfigError

from .conftest import make_layer


def test_dead_columns_damping_and_factor():
    W, H = make_layer(8, 32)
    H[5, :] = 0
    H[:, 5] = 0
    W0, H0 = W.clone(), H.clone()
    p = prepare_hessian(W, H, 0.01)
    assert torch.equal(W, W0) and torch.equal(H, H0)  # caller's tensors untouched
    assert (p.W[:, 5] == 0).all() and torch.equal(p.W[:, :5], W[:, :5])
    Hfix = H.clone()
    Hfix[5, 5] = 1
    damp = 0.01 * torch.diagonal(Hfix).mean()
    assert torch.allclose(p.H, Hfix + damp * torch.eye(32))
    assert torch.equal(p.U, torch.triu(p.U))
    assert torch.allclose(p.U.T @ p.U, torch.linalg.inv(p.H.double()).float(), rtol=1e-3, atol=1e-5)


def test_not_positive_definite_is_a_config_error():
    H = -torch.eye(8)
    try:
        prepare_hessian(torch.ones(2, 8), H, 0.0)
    except ConfigError as e:
        assert "percdamp" in str(e)
    else:
        raise AssertionError("expected ConfigError")


def test_overwrite_h_damps_the_callers_h_in_place_and_factors_the_same():
    from pbs2p_edge.algo.compress_layer import compress_layer
    from pbs2p_edge.algo.config import CompressConfig

    W, H = make_layer(16, 64)
    H[3, :] = 0
    H[:, 3] = 0
    copy = prepare_hessian(W, H, 0.01)
    mine = H.clone()
    owned = prepare_hessian(W, mine, 0.01, overwrite_h=True)
    assert owned.H.data_ptr() == mine.data_ptr()  # no copy: the caller's tensor is the working one
    assert torch.equal(owned.H, copy.H) and torch.equal(owned.U, copy.U) and torch.equal(owned.W, copy.W)
    cfg = CompressConfig(method="pbs2p", n=4, m=8, seed=0)
    a = compress_layer(W, H, cfg, 4)
    b = compress_layer(W, H.clone(), cfg, 4, overwrite_h=True)  # the column norms come from the undamped H
    assert torch.equal(a.dequantize(), b.dequantize()) and a.loss == b.loss
