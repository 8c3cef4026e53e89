import dataclasses

import pytest
import torch

from pbs2p_edge.algo.compress_layer import compress_layer, compress_layer_with_q
from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.algo.methods import METHODS
from pbs2p_edge.errors import ConfigError

from .conftest import h_error, make_layer

PRUNING = [name for name, m in METHODS.items() if m.prunes]


def _n(method: str, n: int, m: int = 8) -> int:
    return n if METHODS[method].prunes else m


def check_canonical(r, cfg):
    """Every canonical-form rule of result.py's docstring."""
    R, K = r.shape
    P = r.signs.shape[0]
    assert (r.mask.reshape(R, -1, r.m).sum(-1) == r.n).all()
    assert not (r.signs & ~r.mask).any()
    assert P == (2 if r.salient.any() else 1) == (2 if cfg.salient else 1)
    if P == 2:
        assert not (r.signs[1] & ~r.salient[None]).any()
    assert (r.group[~r.mask | r.salient[None].expand(R, K)] == 0).all()
    assert int(r.group.max()) < r.split_groups
    for t in (r.alpha, r.mu) + (() if r.col_scale is None else (r.col_scale,)):
        assert t.dtype == torch.float32 and torch.equal(t, t.half().float())
    if not cfg.use_mean:
        assert (r.mu == 0).all()
    assert r.alpha.shape == (P, 1 + cfg.split_groups, R, -(-K // cfg.block_size))
    assert (r.col_scale is not None) == (cfg.method == "arb-rc")


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_canonical_and_dequantize_is_the_loop_q(method):
    W, H = make_layer(32, 576, seed=1)
    cfg = CompressConfig(method=method, n=5, max_salient=8, arb_iters=4)
    W0, H0 = W.clone(), H.clone()
    r, Q = compress_layer_with_q(W, H, cfg, _n(method, 5))
    assert torch.equal(W, W0) and torch.equal(H, H0)
    assert torch.equal(r.dequantize(), Q)
    check_canonical(r, cfg.resolved())
    assert (r.loss == 0) == (not METHODS[method].uses_hessian)


@pytest.mark.parametrize("method", PRUNING)
def test_exactly_n_per_group_for_every_n(method):
    W, H = make_layer(16, 136, seed=2)  # 136 = 128 + a partial block of 8
    for n in range(1, 9):
        cfg = CompressConfig(method=method, n=n, max_salient=4, arb_iters=2, spbo_iters=1)
        r, Q = compress_layer_with_q(W, H, cfg, n)
        assert (r.mask.reshape(16, -1, 8).sum(-1) == n).all()
        assert ((Q != 0) <= r.mask).all()  # pruned entries are exactly zero
        assert torch.equal(r.dequantize(), Q)


@pytest.mark.parametrize("K", [576, 136])
def test_partial_last_block(K):
    W, H = make_layer(16, K, seed=3)
    # one region (no salient columns, one group), so every row of the last block has a fitted alpha
    cfg = CompressConfig(method="pbs2p", n=4, intra_block_update=True, salient=False, split_groups=1)
    r, Q = compress_layer_with_q(W, H, cfg, 4)
    assert r.alpha.shape[-1] == -(-K // 128)
    assert torch.equal(r.dequantize(), Q)
    assert (r.alpha[0, 1, :, -1] > 0).all()  # the partial block was fitted


def test_no_pruning_pbs2p_is_plain_arb():
    W, H = make_layer(32, 256, seed=4)
    for sal, split in ((False, 1), (True, 2)):
        kw = dict(n=8, salient=sal, split_groups=split, max_salient=6)
        a = compress_layer(W, H, CompressConfig(method="arb", **kw), 8)
        p = compress_layer(W, H, CompressConfig(method="pbs2p", **kw), 8)
        for f in dataclasses.fields(a):
            va, vp = getattr(a, f.name), getattr(p, f.name)
            assert torch.equal(va, vp) if isinstance(va, torch.Tensor) else va == vp


def test_deterministic():
    W, H = make_layer(32, 256, seed=5)
    for method in ("pbs2p", "arb-rc", "stbllm"):
        cfg = CompressConfig(method=method, n=5, max_salient=6)
        a = compress_layer(W, H, cfg, _n(method, 5))
        b = compress_layer(W, H, cfg, _n(method, 5))
        assert torch.equal(a.dequantize(), b.dequantize()) and a.loss == b.loss


def test_hessian_methods_beat_rtn_in_h_norm():
    W, H = make_layer(64, 256, seed=6)
    err = {m: h_error(W, compress_layer(W, H, CompressConfig(method=m, max_salient=8), 8).dequantize(), H)
           for m in ("rtn", "billm", "arb", "arb-rc")}
    assert err["billm"] < err["rtn"]
    assert err["arb"] < err["billm"] and err["arb-rc"] < err["rtn"]
    pr = {m: h_error(W, compress_layer(W, H, CompressConfig(method=m, n=4, max_salient=8), 4).dequantize(), H)
          for m in ("magnitude", "stbllm", "pbs2p")}
    assert pr["pbs2p"] < pr["magnitude"] and pr["stbllm"] < pr["magnitude"]


def test_intra_block_update_keeps_the_contract():
    W, H = make_layer(32, 256, seed=7)
    for method in ("pbs2p", "billm"):
        cfg = CompressConfig(method=method, n=4, intra_block_update=True, max_salient=6)
        r, Q = compress_layer_with_q(W, H, cfg, _n(method, 4))
        assert torch.equal(r.dequantize(), Q)
        check_canonical(r, cfg.resolved())


def test_config_errors():
    W, H = make_layer(4, 64)
    with pytest.raises(ConfigError, match="60 is not a multiple of M=8"):
        compress_layer(W[:, :60], H[:60, :60], CompressConfig(method="rtn"), 8)
    with pytest.raises(ConfigError, match="does not prune"):
        compress_layer(W, H, CompressConfig(method="billm"), 4)
    with pytest.raises(ConfigError, match="1..M=8"):
        compress_layer(W, H, CompressConfig(method="pbs2p"), 9)
    with pytest.raises(ConfigError, match="Hessian shape"):
        compress_layer(W, H[:8, :8], CompressConfig(method="pbs2p"), 4)


def test_dequantize_by_rows_gives_the_same_bits_for_any_cut(monkeypatch):
    """LayerResult.dequantize works DEQUANT_ROWS_ELEMENTS at a time (bounded memory at a 7B model's width); the values
    are elementwise, so every cut of the rows, one row included, gives the bits of the whole layer at once."""
    from pbs2p_edge.algo import result as res
    from pbs2p_edge.algo.result import LayerResult

    g = torch.Generator().manual_seed(1)
    for R, K, gs, col_scale in [(37, 64, 16, True), (300, 128, 32, False)]:
        rand = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
        r = LayerResult(mask=rand(R, K) < 0.5, signs=rand(2, R, K) < 0.5, salient=rand(K) < 0.2,
                        group=(rand(R, K) < 0.5).to(torch.uint8), alpha=rand(2, 3, R, K // gs) - 0.5,
                        mu=rand(3, R, K // gs) - 0.5, col_scale=rand(3, K) + 0.5 if col_scale else None, n=4, m=8,
                        group_size=gs, loss=0.0)
        whole = r._rows(0, R)
        for elements in (1, 7 * K, 64 * K + 5, 1 << 22):
            monkeypatch.setattr(res, "DEQUANT_ROWS_ELEMENTS", elements)
            assert torch.equal(r.dequantize(), whole), (R, K, elements)
