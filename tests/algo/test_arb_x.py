import dataclasses

import torch

from pbs2p_edge.algo.arb import row_error
from pbs2p_edge.algo.arb_x import XRefiner
from pbs2p_edge.algo.billm import billm_init
from pbs2p_edge.algo.hessian_prep import prepare_hessian

from .conftest import make_layer


def _block(seed=0, b=128, R=64):
    W, H = make_layer(R, b, seed=seed)
    p = prepare_hessian(W, H, 0.01, block=0)
    return p.W, p.blocks[0], torch.diagonal(p.U)


def _bases(fit, use_mean=True):
    """(R, P, b) float64 bases of the fit's parameters, built through dequant with one-hot scales."""
    out = []
    for r in fit.regions:
        for name, p in ([("mu", 0)] if use_mean else []) + [("alpha", 0)] + ([("alpha", 1)] if r == 0 else []):
            f = dataclasses.replace(fit, alpha=torch.zeros_like(fit.alpha), mu=torch.zeros_like(fit.mu))
            (f.mu[r] if name == "mu" else f.alpha[p, r]).fill_(1.0)
            out.append(f.dequant().double())
    return torch.stack(out, 1)


def _best_error(W, fit, S):
    """(R,) the least ||W - sum_k theta_k e_k||_S^2 over every theta, per row (float64 least squares)."""
    E = _bases(fit)
    L = torch.linalg.cholesky(S.double())  # S = L L^T: ||v||_S = ||v L||
    A = (E @ L).transpose(1, 2)  # (R, b, P)
    y = (W.double() @ L)[:, :, None]
    theta = torch.linalg.lstsq(A, y, driver="gelsd").solution
    return ((A @ theta - y).squeeze(2).square()).sum(1)


def test_scale_pass_is_the_exact_least_squares():
    """One refine: the scales written are the per-row least-squares optimum for the signs the
    iteration started from (its B step changes only signs). max_salient=1 makes the salient region
    one element per row, where mu, alpha_0 and alpha_1 are collinear: G is singular there."""
    W, S, d = _block(0)
    for max_salient, kept in [(1, torch.ones_like(W, dtype=torch.bool)),
                              (10, torch.rand(W.shape, generator=torch.Generator().manual_seed(1)) < 0.6)]:
        fit = billm_init(W, kept, d, True, max_salient, 2, True)
        start = dataclasses.replace(fit)
        XRefiner(fit, W, True, S).refine(1)
        at_start_signs = dataclasses.replace(start, alpha=fit.alpha, mu=fit.mu)
        best = _best_error(W, start, S)
        got = row_error(W, at_start_signs, S).double()
        assert torch.isfinite(fit.alpha).all() and torch.isfinite(fit.mu).all()
        assert (got <= best * (1 + 1e-4) + 1e-12).all()
        assert float(got.sum()) < float(row_error(W, start, S).sum())  # the init's scales were not optimal


def _reference(fit, W, S, iters):
    """Every row every iteration, in float64 from the dense bases: the exact scales, then the nearest
    signs if they do not raise the row's error, else the flips that each lower it if together they
    do not raise it either. No active set, no incremental state."""
    Sd = S.double()

    def err(Wh):
        E = W.double() - Wh
        return ((E @ Sd) * E).sum(1)

    for _ in range(iters):
        B = _bases(fit)
        L = torch.linalg.cholesky(Sd)
        theta = torch.linalg.lstsq((B @ L).transpose(1, 2), (W.double() @ L)[:, :, None], driver="gelsd").solution
        k = 0
        for r in fit.regions:
            for name, p in [("mu", 0), ("alpha", 0)] + ([("alpha", 1)] if r == 0 else []):
                (fit.mu[r] if name == "mu" else fit.alpha[p, r]).copy_(theta[:, k, 0].float())
                k += 1
        Wh = fit.dequant().double()
        near = fit.nearest(W)
        flip = ((near.s0 != fit.s0) | (near.s1 != fit.s1)) & fit.kept
        before = err(Wh)
        whole = flip.any(1) & (err(near.W_hat.double()) <= before)
        dW = (near.W_hat.double() - Wh) * flip
        lone = dW * (dW * Sd.diagonal() - 2 * ((W.double() - Wh) @ Sd))
        part = flip & (lone < 0)
        partial = ~whole & part.any(1) & (err(Wh + dW * part) <= before)
        use = torch.where(whole[:, None], flip, part & partial[:, None])
        fit.s0 = torch.where(use, near.s0, fit.s0)
        fit.s1 = torch.where(use, near.s1, fit.s1)
    return fit


def test_active_set_gives_the_iterates_of_refining_every_row():
    """Rows that keep their signs are at a fixed point and skipped; the result equals refining every
    row every iteration, up to float32 rounding (which can tip a near-tie of one row)."""
    W, S, d = _block(3)
    for kept in [torch.ones_like(W, dtype=torch.bool), torch.rand(W.shape, generator=torch.Generator().manual_seed(5)) < 0.6]:
        a = billm_init(W, kept, d, True, 10, 2, True)
        b = billm_init(W, kept, d, True, 10, 2, True)
        XRefiner(a, W, True, S).refine(8)
        _reference(b, W, S, 8)
        rows_apart = ((a.dequant() - b.dequant()).abs() > 1e-5).any(1)  # W ~ 0.02
        assert rows_apart.float().mean() <= 0.05
        ea, eb = float(row_error(W, a, S).sum()), float(row_error(W, b, S).sum())
        assert abs(ea - eb) <= 1e-3 * eb


def test_refine_is_monotone_and_ends_at_a_fixed_point():
    W, S, d = _block(4)
    fit = billm_init(W, torch.ones_like(W, dtype=torch.bool), d, True, 10, 2, True)
    x = XRefiner(fit, W, True, S)
    errs = [row_error(W, fit, S)]
    for _ in range(30):
        x.refine(1)
        errs.append(row_error(W, fit, S))
    for a, b in zip(errs, errs[1:]):
        assert (b <= a * (1 + 1e-5) + 1e-9).all()  # per row
    assert float(errs[-1].sum()) < 0.9 * float(errs[0].sum())
    s0, s1, alpha, mu = fit.s0.clone(), fit.s1.clone(), fit.alpha.clone(), fit.mu.clone()
    x.refine(5)  # converged after 30: nothing moves
    assert torch.equal(fit.s0, s0) and torch.equal(fit.s1, s1)
    assert torch.allclose(fit.alpha, alpha, rtol=1e-6, atol=0) and torch.allclose(fit.mu, mu, rtol=1e-6, atol=1e-9)


def test_prune_updates_the_state_of_a_fresh_refiner():
    """After prune, the kept bases, G and WSe equal those of a refiner built on the pruned fit."""
    W, S, d = _block(5)
    fit = billm_init(W, torch.ones_like(W, dtype=torch.bool), d, True, 10, 2, True)
    x = XRefiner(fit, W, True, S)
    x.refine(3)
    drop = torch.rand(W.shape, generator=torch.Generator().manual_seed(6)) < 0.3
    x.prune(drop)
    assert torch.equal(fit.kept, ~drop)
    fresh = XRefiner(dataclasses.replace(fit), W, True, S)
    assert torch.equal(x.e, fresh.e)
    assert torch.allclose(x.G, fresh.G, rtol=1e-5, atol=1e-6) and torch.allclose(x.WSe, fresh.WSe, rtol=1e-5, atol=1e-7)
    x.refine(3)
    assert not (fit.dequant()[drop] != 0).any()  # pruned entries stay zero
