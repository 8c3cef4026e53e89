"""GPTQ onto grid tiers: codes the file can hold, exactly what it decodes, and the compensation earning its keep."""

import numpy as np
import pytest
import torch

from pbs2p_edge.algo.gptq_grid import CLIP, fit_scales, fit_sub_codes, gptq_grid, quantize, round_f16, row_scales
from pbs2p_edge.errors import ConfigError
from pbs2p_edge.pack import tiers


def _layer(R=48, K=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(K, K, generator=g) / K**0.5 + torch.eye(K)  # correlated input features
    X = torch.randn(1024, K, generator=g) @ mix * torch.rand(K, generator=g).add(0.2)
    return torch.randn(R, K, generator=g) * 0.05, 2 * X.T @ X / X.shape[0]


def _h_error(W, Q, H):
    E = W - Q
    return float((E @ H * E).sum())


@pytest.mark.parametrize("name", tiers.GRID_TIERS)
def test_result_is_what_the_file_decodes(name):
    W, H = _layer()
    t = tiers.TIERS[name]
    r = gptq_grid(W, H, t)
    assert r.q.dtype == torch.uint8 and int(r.q.max()) <= t.qmax
    np_ = lambda a: None if a is None else a.numpy()  # noqa: E731
    blocks = tiers.pack(name, r.q.numpy(), r.d.numpy(), np_(r.m), np_(r.sc), np_(r.mc))
    np.testing.assert_array_equal(r.dequantize().numpy(), tiers.decode(name, blocks, W.shape[1]))


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_two_level_tiers_beat_the_blocks_of_64_at_the_same_bits(bits):
    """Sub-blocks of 16 with 4-bit scale and min codes (bits + 0.5 per weight and a row's D, M) against float16 d, m per
    64 (q2/q3_g64) or d per 32 (q4_0) at the same bits per block: a lower H-weighted output error on correlated
    inputs, by a margin (SmolLM2's layers: about half the GPTQ loss, docs/FORMAT.md §10)."""
    W, H = _layer(R=64, K=512, seed=6)
    W = W * (1 + 3 * torch.rand(1, 512, generator=torch.Generator().manual_seed(7)))  # columns of unequal scale
    old = {2: "q2_g64", 3: "q3_g64", 4: "q4_0"}[bits]
    new = gptq_grid(W, H, tiers.tier(f"q{bits}_s16"))
    assert tiers.tier(f"q{bits}_s16").bits == tiers.tier(old).bits
    assert _h_error(W, new.dequantize(), H) < 0.8 * _h_error(W, gptq_grid(W, H, tiers.tier(old)).dequantize(), H)


def test_two_level_codes_and_row_scales():
    """D and M are float16, every sub-block's codes are in range and d = D * sc, m = -(M * mc) per sub-block."""
    W, H = _layer(R=8, K=128, seed=8)
    r = gptq_grid(W, H, tiers.tier("q3_s16"))
    assert r.d.shape == r.m.shape == (8, 1) and r.sc.shape == r.mc.shape == (8, 8)
    assert torch.equal(r.d.half().float(), r.d) and torch.equal(r.m.half().float(), r.m) and bool((r.m >= 0).all())
    assert int(r.sc.min()) >= 1 and int(r.sc.max()) <= 15 and int(r.mc.max()) <= 15
    d, m = r.scales()
    assert torch.equal(d, r.d * r.sc.float()) and torch.equal(m, -(r.m * r.mc.float()))


@pytest.mark.parametrize("name", ["q4_0", "q3_g64", "q2_g64"])
def test_compensation_beats_rounding_to_nearest(name):
    """On correlated inputs GPTQ's H-weighted output error is well below the same grid fitted to nearest."""
    W, H = _layer(seed=1)
    t = tiers.TIERS[name]
    r = gptq_grid(W, H, t)
    R, K = W.shape
    Wb = W.reshape(R * K // t.block, t.block)
    hb = torch.diagonal(H).reshape(1, K // t.block, t.block).expand(R, -1, -1).reshape(Wb.shape)
    d, m = fit_scales(Wb, hb, t)
    rtn = quantize(Wb, d, m, t)[1].reshape(R, K)
    assert _h_error(W, r.dequantize(), H) < 0.8 * _h_error(W, rtn, H)


def test_diagonal_hessian_means_no_compensation():
    """With a diagonal H no column's error moves another: GPTQ is the searched grid, rounded to nearest."""
    W, _ = _layer(R=8, K=128, seed=2)
    h = torch.rand(128) + 0.5
    t = tiers.TIERS["q3_g64"]
    r = gptq_grid(W, torch.diag(h), t, percdamp=0.0)
    Wb = W.reshape(-1, 64)
    d, m = fit_scales(Wb, h.reshape(1, 2, 64).expand(8, -1, -1).reshape(Wb.shape), t)
    q, _ = quantize(Wb, d, m, t)
    np.testing.assert_array_equal(r.q.numpy(), q.reshape(8, 128).numpy())


def test_scale_search_never_worse_than_the_extremes():
    W, H = _layer(R=16, K=64, seed=3)
    h = torch.diagonal(H)
    for name in tiers.GRID_TIERS:
        t = tiers.TIERS[name]
        d, m = fit_scales(W, h, t)
        searched = ((W - quantize(W, d, m, t)[1]).square() * h).sum(1)
        d1, m1 = fit_scales(W, h, t, clip=CLIP[:1])
        extremes = ((W - quantize(W, d1, m1, t)[1]).square() * h).sum(1)
        assert bool((searched <= extremes).all())


@pytest.mark.parametrize("name", ["q2_s16", "q3_s16", "q4_s16"])
def test_sub_code_search_never_worse_than_the_rounded_codes(name):
    """fit_sub_codes tries each shrink factor's rounded scale and min codes and the codes a step either side
    (SUB_CODE_STEPS): per row, its weighted error is no larger than that of any factor's rounded pair, and lower on
    many rows."""
    t = tiers.TIERS[name]
    W, H = _layer(R=64, K=64, seed=5)
    h = torch.diagonal(H)
    D, M = row_scales(W, t)
    for s in range(0, 64, t.sub):
        Wb, hb = W[:, s:s + t.sub], h[s:s + t.sub]
        sc, mc = fit_sub_codes(Wb, hb, t, D, M)
        assert bool(((sc >= 1) & (sc <= 15) & (mc >= 0) & (mc <= 15)).all())
        err = ((Wb - quantize(Wb, D * sc, -(M * mc), t)[1]).square() * hb).sum(1)
        rounded = []
        for c in CLIP:
            lo = torch.clamp(Wb.min(1, keepdim=True).values, max=0) * c
            hi = torch.clamp(Wb.max(1, keepdim=True).values, min=0) * c
            sc1 = torch.clamp(torch.round((hi - lo) / t.qmax / D), 1, 15)
            mc1 = torch.clamp(torch.round(-lo / M), 0, 15)
            rounded.append(((Wb - quantize(Wb, D * sc1, -(M * mc1), t)[1]).square() * hb).sum(1))
        best_rounded = torch.stack(rounded).min(0).values
        assert bool((err <= best_rounded).all())
        assert float((err < best_rounded * 0.999).float().mean()) > 0.1


def test_scales_are_float16_and_constant_blocks_are_exact():
    W = torch.full((2, 64), 0.3)
    W[1] = -2.0
    r = gptq_grid(W, torch.eye(64), tiers.TIERS["q2_g64"])
    assert torch.equal(r.d.half().float(), r.d) and torch.equal(r.m.half().float(), r.m)
    np.testing.assert_allclose(r.dequantize().numpy(), W.half().float().numpy(), rtol=0, atol=1e-3)


def test_width_must_fit_the_block_and_f16_rounds():
    with pytest.raises(ConfigError, match="divisible by 64"):
        gptq_grid(torch.randn(4, 96), torch.eye(96), tiers.TIERS["q3_g64"])
    W = torch.randn(3, 8)
    assert torch.equal(round_f16(W).dequantize(), W.half().float())


def test_overwrite_h_gives_the_same_codes():
    W, H = _layer(seed=3)
    a = gptq_grid(W, H, tiers.tier("q4_0"))
    mine = H.clone()
    b = gptq_grid(W, mine, tiers.tier("q4_0"), overwrite_h=True)
    assert torch.equal(a.q, b.q) and torch.equal(a.d, b.d) and a.loss == b.loss
    assert not torch.equal(mine, H)  # the caller's buffer now holds the factor


def test_overwrite_w_gives_the_same_codes():
    W, H = _layer(seed=4)
    a = gptq_grid(W, H, tiers.tier("q3_g64"))
    mine = W.clone()
    b = gptq_grid(mine, H, tiers.tier("q3_g64"), overwrite_w=True)
    assert torch.equal(a.q, b.q) and torch.equal(a.d, b.d) and torch.equal(a.m, b.m) and a.loss == b.loss
    assert not torch.equal(mine, W)  # the loop's compensation went into the caller's W


@pytest.mark.parametrize("name", ["q4_0", "q3_g64", "q3_s16"])
def test_dequantize_in_row_chunks_and_into_a_given_tensor(name, monkeypatch):
    import pbs2p_edge.algo.result as res

    W, H = _layer(seed=5)
    r = gptq_grid(W, H, tiers.tier(name))
    b = r.tier.scale_block
    d, m = r.scales()
    whole = d.repeat_interleave(b, dim=1) * (r.q.float() - r.tier.offset)
    if m is not None:
        whole = whole + m.repeat_interleave(b, dim=1)
    monkeypatch.setattr(res, "DEQUANT_ROWS_ELEMENTS", 5 * W.shape[1])  # 48 rows: chunks of 5, a short last one
    out = torch.full_like(W, float("nan"))
    assert r.dequantize(out=out) is out and torch.equal(out, whole) and torch.equal(r.dequantize(), whole)
