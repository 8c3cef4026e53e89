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
