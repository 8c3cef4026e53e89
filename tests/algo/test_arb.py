import torch

from pbs2p_edge.algo.arb import arb_refine, row_error
from pbs2p_edge.algo.billm import billm_init
from pbs2p_edge.algo.hessian_prep import prepare_hessian

from .conftest import make_layer


def _block(seed=0, b=128):
    W, H = make_layer(64, b, seed=seed)
    p = prepare_hessian(W, H, 0.01, block=0)
    return p.W, p.blocks[0], torch.diagonal(p.U)


def test_refinement_decreases_error_from_billm_init():
    W, S, d = _block()
    kept = torch.ones_like(W, dtype=torch.bool)
    for sal, split, mean, rc, norm in [(True, 2, True, False, S), (False, 1, True, False, S),
                                       (True, 2, True, False, None), (True, 2, False, True, None)]:
        fit = billm_init(W, kept, d, sal, 10, split, mean, rc)
        errs = [float(row_error(W, fit, norm).sum())]
        for _ in range(4):
            arb_refine(fit, W, 1, mean, norm)
            errs.append(float(row_error(W, fit, norm).sum()))
        assert all(b <= a * (1 + 1e-6) for a, b in zip(errs, errs[1:]))  # monotone
        assert errs[-1] < 0.99 * errs[0]


def test_plain_first_order_closed_forms():
    """One plain iteration = METHOD.md's mu <- mean(W - aB), a <- mean(B(W - mu)), B <- sign(W - mu)."""
    W, _, d = _block(1, 16)
    kept = torch.ones_like(W, dtype=torch.bool)
    fit = billm_init(W, kept, d, False, 1, 1, True)
    a, mu, B = fit.alpha[0, 1].clone(), fit.mu[1].clone(), fit.s0.clone()
    arb_refine(fit, W, 1, True)
    mu = (W - a[:, None] * B).mean(1)
    a = (B * (W - mu[:, None])).mean(1)
    assert torch.allclose(fit.mu[1], mu, atol=1e-7) and torch.allclose(fit.alpha[0, 1], a, atol=1e-7)
    assert torch.equal(fit.s0, torch.where(W - mu[:, None] >= 0, 1.0, -1.0))


def test_rc_column_scales_and_empty_regions():
    W, _, d = _block(2, 32)
    kept = torch.ones_like(W, dtype=torch.bool)
    fit = arb_refine(billm_init(W, kept, d, True, 4, 2, False, rc=True), W, 3, False)
    assert (fit.mu == 0).all()
    assert (fit.col[0][~fit.salient] == 1).all()  # region 0 only lives in salient columns
    assert not torch.equal(fit.col[1][~fit.salient], torch.ones_like(fit.col[1][~fit.salient]))
