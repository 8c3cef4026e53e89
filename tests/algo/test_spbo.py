import torch

from pbs2p_edge.algo.arb import arb_refine, row_error
from pbs2p_edge.algo.billm import billm_init
from pbs2p_edge.algo.cfs import cfs_mask, obs_scores
from pbs2p_edge.algo.hessian_prep import prepare_hessian
from pbs2p_edge.algo.spbo import prune_steps, spbo

from .conftest import make_layer


def _block(seed):
    W, H = make_layer(64, 128, seed=seed)
    p = prepare_hessian(W, H, 0.01, block=0)
    return p.W, p.blocks[0], torch.diagonal(p.U)


def test_prune_steps_one_per_group_lowest_first():
    torch.manual_seed(0)
    scores = torch.randn(3, 16)
    kept = cfs_mask(scores, torch.ones(16), 5, 8)  # d = 1: scores^2
    st = prune_steps(scores.square(), kept, 8, 3)
    g = st.reshape(3, 2, 8)
    assert ((g == -1) == kept.reshape(3, 2, 8)).all()
    for t in range(3):
        assert ((g == t).sum(-1) == 1).all()
    s = scores.square().reshape(3, 2, 8)
    s0 = torch.where(g == 0, s, -torch.inf).amax(-1)
    s2 = torch.where(g == 2, s, torch.inf).amin(-1)
    assert (s0 <= s2).all()
    st2 = prune_steps(scores.square(), kept, 8, 1)
    assert set(st2.unique().tolist()) == {-1, 0}


def test_spbo_vs_one_shot_prune_then_binarize():
    """SPBO (progressive, from the unpruned ARB-X fit) against one-shot pruning of the same mask
    followed by ARB-X with the same iteration budget, in the H-norm both optimise.

    Measured on these random correlated layers (3 seeds x 6:8, 5:8, 4:8) SPBO / one-shot ranges
    0.958 .. 1.017: lower on average and in 7 of 9 cases, not always. So this asserts: SPBO always
    beats the one-shot closed-form binarization, is within 2 % of one-shot ARB in every case, and
    lower on average.
    """
    ratios = []
    for seed in range(3):
        W, S, d = _block(seed)
        ones = torch.ones_like(W, dtype=torch.bool)
        for n in (6, 5, 4):
            kept = cfs_mask(W, d, n, 8)
            init = billm_init(W, kept, d, False, 1, 1, True)
            one_shot_init = float(row_error(W, init, S).sum())
            one_shot_arb = float(row_error(W, arb_refine(init, W, 15, True, S), S).sum())
            fit = arb_refine(billm_init(W, ones, d, False, 1, 1, True), W, 15, True, S)
            fit = spbo(fit, W, kept, obs_scores(W, d), 8, 8 - n, 3, True, S)
            assert torch.equal(fit.kept, kept)
            e = float(row_error(W, fit, S).sum())
            assert e < one_shot_init
            ratios.append(e / one_shot_arb)
    assert max(ratios) < 1.02 and sum(ratios) / len(ratios) < 1.0


def test_tau_equals_one_is_arb_on_the_kept_entries():
    W, S, d = _block(4)
    ones = torch.ones_like(W, dtype=torch.bool)
    kept = cfs_mask(W, d, 4, 8)
    a = spbo(arb_refine(billm_init(W, ones, d, False, 1, 1, True), W, 5, True, S), W, kept,
             obs_scores(W, d), 8, 1, 3, True, S)
    b = arb_refine(billm_init(W, ones, d, False, 1, 1, True), W, 5, True, S)
    b.kept = kept.clone()
    b = arb_refine(b, W, 3, True, S)
    assert torch.equal(a.dequant(), b.dequant())
