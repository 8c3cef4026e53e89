"""BlockFit.nearest: the fast B step takes a nearest level of level_table (up to rounding ties), and W_hat
equals dequant with its signs, bit for bit."""

import pytest
import torch

from pbs2p_edge.algo.block_fit import BlockFit


def _fit(salient: bool, rc: bool, pruned: bool, seed: int) -> tuple[BlockFit, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    R, b, S = 37, 24, 2
    W = torch.randn(R, b, generator=g)
    sal = torch.rand(b, generator=g) < 0.3
    kept = torch.rand(R, b, generator=g) < 0.75 if pruned else torch.ones(R, b, dtype=torch.bool)
    group = torch.randint(0, S, (R, b), generator=g)
    region = torch.where(sal[None], 0, 1 + group)
    sign = lambda: torch.where(torch.rand(R, b, generator=g) < 0.5, 1.0, -1.0)  # noqa: E731
    alpha = torch.rand(2 if salient else 1, 1 + S, R, generator=g)
    mu = torch.randn(1 + S, R, generator=g) * 0.3
    # exact ties: some elements sit on a level or halfway between two
    W[0, :] = (alpha[0].T.gather(1, region) + mu.T.gather(1, region))[0]
    W[1, :] = mu.T.gather(1, region)[1]
    col = 0.5 + torch.rand(1 + S, b, generator=g) if rc else None
    fit = BlockFit(kept=kept, region=region, salient=sal if salient else torch.zeros(b, dtype=torch.bool),
                   s0=sign(), s1=sign() if salient else None, alpha=alpha, mu=mu, col=col)
    if not salient:
        fit.region = 1 + group
    return fit, W


@pytest.mark.parametrize("salient", [False, True])
@pytest.mark.parametrize("rc", [False, True])
@pytest.mark.parametrize("pruned", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_nearest_takes_a_nearest_level(salient, rc, pruned, seed):
    fit, W = _fit(salient, rc, pruned, seed)
    signs, levels = fit.level_table()
    dist = (W[None] - levels).abs()
    best = dist.min(0).values
    choice = dist.argmin(0)  # the reference B step
    s0, s1, W_hat = fit.nearest(W)
    kept = fit.kept
    assert torch.equal(W_hat, fit.dequant(s0, s1))
    # every kept element's level is the nearest, up to float32 rounding of the levels (~1e-7 here)
    assert ((W - W_hat).abs() <= best + 1e-6)[kept].all()
    # and it is the argmin's level wherever the two nearest levels are not a rounding tie
    second = dist.sort(0).values[1]
    clear = kept & (second - best > 1e-6)
    assert torch.equal(W_hat[clear], levels.gather(0, choice[None])[0][clear])
    if salient:
        cols = clear & fit.salient[None]
        assert torch.equal(s1[cols], signs[choice, 1][cols])
    else:
        assert s1 is None
    assert torch.equal(s0[clear], signs[choice, 0][clear])
    if not rc:  # exactly at mu, halfway between levels: a tie goes to +1 (first-order columns)
        at_mu = kept & ~fit.salient[None] & (W == fit.mu.T.gather(1, fit.region))
        assert at_mu.sum() >= 8 and (s0[at_mu] == 1).all()
    if salient:  # the rule's second order: some rows step plane 1 first
        assert (fit.alpha[1, 0].abs() > fit.alpha[0, 0].abs()).any()


@pytest.mark.parametrize("salient", [False, True])
@pytest.mark.parametrize("rc", [False, True])
def test_dequant_zeros_pruned_entries(salient, rc):
    fit, W = _fit(salient, rc, True, 3)
    assert torch.equal(fit.dequant()[~fit.kept], torch.zeros(int((~fit.kept).sum())))
