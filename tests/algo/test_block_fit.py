"""BlockFit.nearest: the fast B step equals argmin over level_table and dequant, bit for bit."""

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
def test_nearest_equals_argmin_over_level_table(salient, rc, pruned, seed):
    fit, W = _fit(salient, rc, pruned, seed)
    signs, levels = fit.level_table()
    choice = (W[None] - levels).abs().argmin(0)  # the reference B step
    s0, s1, W_hat = fit.nearest(W)
    kept = fit.kept
    assert torch.equal(s0[kept], signs[choice, 0][kept])  # pruned entries' signs are free
    if salient:
        cols = kept & fit.salient[None]
        assert torch.equal(s1[cols], signs[choice, 1][cols])
    else:
        assert s1 is None
    assert torch.equal(W_hat, fit.dequant(s0, s1))
    assert torch.equal(W_hat, levels.gather(0, choice[None])[0])


@pytest.mark.parametrize("salient", [False, True])
@pytest.mark.parametrize("rc", [False, True])
def test_dequant_of_some_rows_equals_those_rows(salient, rc):
    fit, W = _fit(salient, rc, True, 3)
    rows = torch.tensor([0, 5, 6, 36])
    assert torch.equal(fit.dequant(rows=rows), fit.dequant()[rows])
    assert torch.equal(fit.dequant()[~fit.kept], torch.zeros(int((~fit.kept).sum())))
