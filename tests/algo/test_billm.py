import torch

from pbs2p_edge.algo.binarize import fit_first, fit_residual
from pbs2p_edge.algo.billm import billm_init, search_salient, search_split
from pbs2p_edge.algo.hessian_prep import prepare_hessian

from .conftest import make_layer


def test_first_and_residual_closed_forms():
    torch.manual_seed(0)
    W = torch.randn(5, 12)
    member = torch.rand(5, 12) > 0.3
    a, mu, B = fit_first(W, member, True)
    for i in range(5):
        w = W[i][member[i]]
        assert torch.isclose(mu[i], w.mean()) and torch.isclose(a[i], (w - w.mean()).abs().mean())
    a0, a1, mu2, B0, B1 = fit_residual(W, member, True)
    e1 = ((W - (a[:, None] * B + mu[:, None])).square() * member).sum()
    e2 = ((W - (a0[:, None] * B0 + a1[:, None] * B1 + mu2[:, None])).square() * member).sum()
    assert e2 < e1
    a, mu, _ = fit_first(W, torch.zeros_like(member), True)
    assert (a == 0).all() and (mu == 0).all()


def test_salient_search_and_split_reduce_error():
    W, H = make_layer(64, 128, seed=1)
    p = prepare_hessian(W, H, 0.01)
    W, d = p.W, torch.diagonal(p.U)
    kept = torch.ones_like(W, dtype=torch.bool)
    sal = search_salient(W, kept, d, 20, True)
    assert 1 <= int(sal.sum()) <= 20
    grp = search_split(W, kept & ~sal[None], 3, True)
    assert set(grp[:, ~sal].unique().tolist()) == {0, 1, 2} and (grp[:, sal] == 0).all()
    errs = []
    for s, g in [(False, 1), (False, 2), (True, 2), (True, 3)]:
        f = billm_init(W, kept, d, s, 20, g, True)
        errs.append(float((W - f.dequant()).square().sum()))
    # the salient k is searched with one non-salient group, so salient + 2 groups need not beat
    # 2 groups without salient columns; each addition to the same structure must help
    assert errs[0] > errs[1] and errs[0] > errs[2] > errs[3]


def test_pruned_entries_stay_zero():
    W, H = make_layer(16, 64, seed=2)
    kept = torch.rand(16, 64, generator=torch.Generator().manual_seed(0)) > 0.5
    f = billm_init(W, kept, None, True, 5, 3, True)
    assert (f.dequant()[~kept] == 0).all() and (f.dequant()[kept] != 0).all()
