import torch

from pbs2p_edge.algo.nm_mask import nm_mask


def test_keeps_exactly_n_of_every_m_highest():
    torch.manual_seed(0)
    scores = torch.randn(7, 64)
    for m in (2, 4, 8, 16):
        for n in range(1, m + 1):
            mask = nm_mask(scores, n, m)
            groups = mask.reshape(7, -1, m)
            assert (groups.sum(-1) == n).all()
            s = scores.reshape(7, -1, m)
            kept_min = torch.where(groups, s, torch.inf).amin(-1)
            pruned_max = torch.where(groups, -torch.inf, s).amax(-1)
            assert (kept_min > pruned_max).all()
