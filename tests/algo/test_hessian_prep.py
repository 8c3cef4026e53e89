import torch

from pbs2p_edge.algo.compress_layer import compress_layer
from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.algo.hessian_prep import prepare_hessian
from pbs2p_edge.errors import ConfigError

from .conftest import make_layer


def test_dead_columns_damping_and_factor():
    W, H = make_layer(8, 32)
    H[5, :] = 0
    H[:, 5] = 0
    W0, H0 = W.clone(), H.clone()
    p = prepare_hessian(W, H, 0.01, block=0)
    assert torch.equal(W, W0) and torch.equal(H, H0)  # caller's tensors untouched
    assert (p.W[:, 5] == 0).all() and torch.equal(p.W[:, :5], W[:, :5])
    Hfix = H.clone()
    Hfix[5, 5] = 1
    damp = 0.01 * torch.diagonal(Hfix).mean()
    Hd = Hfix + damp * torch.eye(32)
    assert torch.allclose(p.blocks[0], Hd) and torch.equal(p.diag, torch.diagonal(p.blocks[0]))
    assert torch.equal(p.U, torch.triu(p.U))
    assert torch.allclose(p.U.T @ p.U, torch.linalg.inv(Hd.double()).float(), rtol=1e-3, atol=1e-5)
    # factored in place, U is the out-of-place factorization's, bit for bit
    L = torch.linalg.cholesky(p.blocks[0])
    assert torch.equal(p.U, torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True))


def test_diagonal_blocks_of_the_damped_h():
    W, H = make_layer(8, 200)  # 64 x 3 + 8: a short last block
    whole, blocked = prepare_hessian(W, H, 0.01, block=0), prepare_hessian(W, H, 0.01, block=64)
    assert prepare_hessian(W, H, 0.01).blocks == ()  # none asked for: no K x K copy (gptq_grid's case)
    assert [b.shape[0] for b in blocked.blocks] == [64, 64, 64, 8] and torch.equal(whole.U, blocked.U)
    for s, e in ((0, 64), (64, 128), (128, 192), (192, 200)):
        assert torch.equal(blocked.S(s, e), whole.blocks[0][s:e, s:e])


def test_not_positive_definite_is_a_config_error():
    H = -torch.eye(8)
    try:
        prepare_hessian(torch.ones(2, 8), H, 0.0)
    except ConfigError as e:
        assert "percdamp" in str(e)
    else:
        raise AssertionError("expected ConfigError")


def _dead_column_layer():
    """A 16 x 64 layer whose input feature 3 is always zero (a dead column)."""
    W, H = make_layer(16, 64)
    H[3, :] = 0
    H[:, 3] = 0
    return W, H


def test_overwrite_h_factors_in_the_callers_h_and_gives_the_same():
    W, H = _dead_column_layer()
    copy = prepare_hessian(W, H, 0.01, block=0)
    mine = H.clone()
    owned = prepare_hessian(W, mine, 0.01, overwrite_h=True, block=0)
    assert owned.U.data_ptr() == mine.data_ptr()  # no copy: the caller's tensor is the one U is factored in
    assert torch.equal(owned.blocks[0], copy.blocks[0]) and torch.equal(owned.U, copy.U) and torch.equal(owned.W, copy.W)
    cfg = CompressConfig(method="pbs2p", n=4, m=8, seed=0)
    a = compress_layer(W, H, cfg, 4)
    b = compress_layer(W, H.clone(), cfg, 4, overwrite_h=True)  # the column norms come from the undamped H
    assert torch.equal(a.dequantize(), b.dequantize()) and a.loss == b.loss


def test_factor_in_place_reads_the_lower_triangle_as_torch_does():
    """U from an H whose triangles differ in the last bits (as X^T X can) equals the out-of-place factorization,
    which reads H's lower triangle; both tile passes at a width that leaves a short last tile."""
    from pbs2p_edge.algo import hessian_prep

    W, H = make_layer(8, 200)
    H = H + torch.triu(torch.rand(200, 200, generator=torch.Generator().manual_seed(1)), 1) * 1e-6
    damped = H.clone()
    damped.diagonal().add_(0.01 * torch.diagonal(H).mean())
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(damped)), upper=True)
    assert torch.equal(prepare_hessian(W, H, 0.01).U, U)
    A = torch.randn(200, 200)
    sym, t = A.clone(), A.clone()
    hessian_prep._square_blocks(sym, mirror=True, step=64)
    hessian_prep._square_blocks(t, mirror=False, step=64)
    assert torch.equal(sym, torch.tril(A) + torch.tril(A, -1).T) and torch.equal(t, A.T)


def test_overwrite_w_works_in_the_callers_w_and_gives_the_same():
    W, H = _dead_column_layer()
    copy = prepare_hessian(W, H, 0.01, block=0)
    mine = W.clone()
    owned = prepare_hessian(mine, H, 0.01, block=0, overwrite_w=True)
    assert owned.W.data_ptr() == mine.data_ptr() and torch.equal(owned.W, copy.W)  # dead column zeroed in place
    half = W.half()
    assert prepare_hessian(half, H, 0.01, overwrite_w=True).W.dtype == torch.float32  # not float32: a copy
    assert torch.equal(half, W.half())
    for method in ("pbs2p", "rtn"):  # with and without the Hessian
        cfg = CompressConfig(method=method, n=4 if method == "pbs2p" else 8, m=8, seed=0)
        a = compress_layer(W, H, cfg, cfg.n)
        mine = W.clone()
        b = compress_layer(mine, H, cfg, cfg.n, overwrite_w=True)
        assert torch.equal(a.dequantize(), b.dequantize()) and a.loss == b.loss
        assert method == "rtn" or not torch.equal(mine, W)  # the GPTQ loop updated the caller's W
        assert b.dequantize(out=mine) is mine and torch.equal(mine, a.dequantize())  # written into a given tensor
