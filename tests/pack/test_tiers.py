"""The tier table's block layouts: the ggml types byte for byte as gguf-py reads them, ours pinned by hand."""

import gguf
import numpy as np
import pytest

from pbs2p_edge.errors import ConfigError, FormatError
from pbs2p_edge.pack import tiers


def _random_layer(name, R=5, K=192, seed=0):
    t = tiers.TIERS[name]
    rng = np.random.default_rng(seed)
    q = rng.integers(0, t.qmax + 1, (R, K))
    if t.sub:  # the row's D and M, then the sub-block codes
        D, M = rng.normal(size=(2, R, 1)).astype(np.float16).astype(np.float32)
        return q, D, M, rng.integers(0, 16, (R, K // t.sub)), rng.integers(0, 16, (R, K // t.sub))
    d = rng.normal(size=(R, K // t.block)).astype(np.float16).astype(np.float32)
    m = rng.normal(size=d.shape).astype(np.float16).astype(np.float32) if t.has_min else None
    return q, d, m


def test_honest_bits_of_every_tier():
    assert {n: t.bits for n, t in tiers.TIERS.items()} == {"f16": 16, "q8_0": 8.5, "q4_0": 4.5, "q3_g64": 3.5,
                                                          "q2_g64": 2.5, "q4_s16": 4.5, "q3_s16": 3.5, "q2_s16": 2.5}
    # a two-level row adds its float16 D and M: 32 bits per row
    assert {n: tiers.TIERS[n].bits_for(576) for n in ("q4_0", "q4_s16", "q2_s16")} == {
        "q4_0": 4.5, "q4_s16": 4.5 + 32 / 576, "q2_s16": 2.5 + 32 / 576}


@pytest.mark.parametrize("name", ["q8_0", "q4_0"])
def test_standard_tiers_are_ggml_types(name):
    q, d, _ = _random_layer(name)
    blocks = tiers.pack(name, q, d)
    qtype = gguf.GGMLQuantizationType[tiers.TIERS[name].ggml_type]
    assert blocks.shape[1] == 192 // 32 * gguf.GGML_QUANT_SIZES[qtype][1]
    np.testing.assert_array_equal(tiers.decode(name, blocks, 192), gguf.quants.dequantize(blocks, qtype))


@pytest.mark.parametrize("name", [n for n in tiers.GRID_TIERS if not tiers.TIERS[n].sub])
def test_codes_invert_pack(name):
    q, d, m = _random_layer(name, seed=1)
    q2, d2, m2 = tiers.codes(name, tiers.pack(name, q, d, m), 192)
    np.testing.assert_array_equal(q2, q)
    np.testing.assert_array_equal(d2, d)
    if m is not None:
        np.testing.assert_array_equal(m2, m)


@pytest.mark.parametrize("name", ["q4_s16", "q3_s16", "q2_s16"])
def test_two_level_codes_invert_pack(name):
    q, D, M, sc, mc = _random_layer(name, seed=1)
    blocks = tiers.pack(name, q, D, M, sc, mc)
    assert blocks.shape == (5, 4 + 3 * tiers.TIERS[name].block_bytes)
    D2, M2, sc2, mc2 = tiers.sub_codes(name, blocks, 192)
    q2, d2, m2 = tiers.codes(name, blocks, 192)
    for a, b in ((D2, D), (M2, M), (sc2, sc), (mc2, mc), (q2, q), (d2, D * sc), (m2, -(M * mc))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FormatError, match="0..15"):
        tiers.pack(name, q, D, M, sc + 1, mc)


def test_q4_s16_layout_pinned():
    # row: float16 D, M; block: sc[4] (scale code low nibble, min code high nibble), then two Q4_0 halves' qs[16]
    row = np.zeros(4 + 36, np.uint8)
    row[0:4] = np.array([0.5, 0.25], np.float16).view(np.uint8)
    row[4:8] = [0x43, 0x00, 0x00, 0x01]  # sub-block 0: sc 3, mc 4 (d 1.5, m -1); sub-block 3: sc 1, mc 0
    row[8 + 0] = 0x2F  # q[0] = 15, q[16] = 2
    row[8 + 31] = 0x70  # q[47] = 0, q[63] = 7
    v = tiers.decode("q4_s16", row[None], 64)[0]
    assert (v[0], v[1], v[16], v[47], v[63]) == (21.5, -1.0, 0.0, 0.0, 3.5)


def _block(d, m, body):
    return np.concatenate([np.array([d, m], np.float16).view(np.uint8), np.array(body, np.uint8)])[None]


def test_q2_g64_layout_pinned():
    # qs[i] holds q[i], q[16 + i], q[32 + i], q[48 + i] at bits 0, 2, 4, 6
    body = [0] * 16
    body[0] = 0b11_10_01_00  # q[0] = 0, q[16] = 1, q[32] = 2, q[48] = 3
    body[15] = 0b00_00_00_11  # q[15] = 3
    v = tiers.decode("q2_g64", _block(0.5, -1.0, body), 64)[0]
    expect = np.full(64, -1.0, np.float32)
    expect[[16, 32, 48, 15]] = [-0.5, 0.0, 0.5, 0.5]
    np.testing.assert_array_equal(v, expect)


def test_q3_g64_layout_pinned():
    # low two bits as q2_g64; the high bit of q[j] is bit j % 8 of qh[j / 8]
    body = [0] * 24
    body[1] = 0b01  # q[1] low = 1
    body[16 + 0] = 0b0000_0010  # q[1] high bit -> q[1] = 5
    body[16 + 7] = 0b1000_0000  # q[63] high bit -> 4
    v = tiers.decode("q3_g64", _block(0.25, 1.0, body), 64)[0]
    expect = np.full(64, 1.0, np.float32)
    expect[1], expect[63] = 1.0 + 5 * 0.25, 1.0 + 4 * 0.25
    np.testing.assert_array_equal(v, expect)


def test_grid_layer_checks_shape_and_decodes():
    q, d, m = _random_layer("q3_g64", R=3, K=128)
    layer = tiers.GridLayer("q3_g64", 3, 128, tiers.pack("q3_g64", q, d, m))
    assert layer.honest_bits == 3 * 128 * 3.5
    np.testing.assert_array_equal(layer.decode(), d.repeat(64, 1) * q + m.repeat(64, 1))
    with pytest.raises(FormatError):
        tiers.GridLayer("q3_g64", 3, 64, layer.blocks)


def test_pack_refuses_what_the_file_cannot_hold():
    q, d, m = _random_layer("q2_g64", K=128)
    with pytest.raises(FormatError, match="0..3"):
        tiers.pack("q2_g64", q + 1, d, m)
    with pytest.raises(FormatError, match="float16"):
        tiers.pack("q2_g64", q, d + 1e-4, m)
    with pytest.raises(ConfigError, match="divisible by 64"):
        tiers.pack("q2_g64", q[:, :96], d, m)
    with pytest.raises(ConfigError, match="unknown tier"):
        tiers.tier("q1_g64")


def test_f16_tier_and_round_trip():
    W = np.random.default_rng(2).normal(size=(4, 64)).astype(np.float32)
    blocks = tiers.pack_float(W.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(tiers.decode("f16", blocks, 64), W.astype(np.float16).astype(np.float32))
    qtype = gguf.GGMLQuantizationType.Q4_0
    np.testing.assert_array_equal(tiers.round_trip("q4_0", W), gguf.quants.dequantize(gguf.quants.quantize(W, qtype), qtype))
    assert np.abs(tiers.round_trip("q8_0", W) - W).max() < np.abs(W).max() / 127


@pytest.mark.parametrize("name", ["q3_g64", "q2_g64"])
def test_quantize_nearest_fits_each_block(name):
    """Our blocks without a Hessian (the embedding): codes to nearest on the best of the CLIP ranges, each block's
    squared error no larger than the full range's, and round_trip decodes exactly those blocks."""
    t = tiers.TIERS[name]
    rng = np.random.default_rng(4)
    W = (rng.standard_normal((9, 192)) * np.array([0.02, 1.0, 300.0])[:, None].repeat(3, 0)).astype(np.float32)
    W[0, :64] = 0  # an all-zero block: d = m = 0, stored exactly
    W[1, 64:128] = np.abs(W[1, 64:128])  # a block of one sign: its range still holds 0
    blocks = tiers.quantize_nearest(name, W)
    assert blocks.shape == (9, t.row_bytes(192)) and blocks.dtype == np.uint8
    q, d, m = tiers.codes(name, blocks, 192)
    got = tiers.decode(name, blocks, 192)
    np.testing.assert_array_equal(got, tiers.round_trip(name, W))
    assert (got[0, :64] == 0).all()
    Wb, qb = W.reshape(9, 3, 64), q.reshape(9, 3, 64).astype(np.float32)
    # every code is the nearest on its block's grid (up to float rounding at a midpoint)
    inv = np.divide(1, d, out=np.zeros_like(d), where=d != 0)[..., None]
    nearest = np.clip(np.rint((Wb - m[..., None]) * inv), 0, t.qmax)
    assert np.abs(nearest - qb).max() <= 1 and (nearest == qb).mean() > 0.999
    # the search keeps a range no worse than the block's full one (CLIP's first factor)
    lo, hi = np.minimum(Wb.min(-1), 0), np.maximum(Wb.max(-1), 0)
    d1 = ((hi - lo) / t.qmax).astype(np.float16).astype(np.float32)
    m1 = lo.astype(np.float16).astype(np.float32)
    inv1 = np.divide(1, d1, out=np.zeros_like(d1), where=d1 != 0)[..., None]
    full = d1[..., None] * np.clip(np.rint((Wb - m1[..., None]) * inv1), 0, t.qmax) + m1[..., None]
    err = np.square(Wb - got.reshape(9, 3, 64)).sum(-1)
    assert (err <= np.square(Wb - full).sum(-1) * (1 + 1e-6)).all()
    assert (err < np.square(Wb - full).sum(-1) * 0.999).any()  # and the shrink factors do find better ranges
    # same input, same bytes
    np.testing.assert_array_equal(tiers.quantize_nearest(name, W.copy()), blocks)


@pytest.mark.parametrize("name", ["q2_s16", "q3_s16", "q4_s16"])
def test_quantize_nearest_two_level_steps_around_the_rounded_codes(name, monkeypatch):
    """A two-level embedding's sub-block codes: trying the scale and min codes a step either side of the rounded ones
    (SUB_CODE_STEPS) leaves no sub-block's squared error larger than the rounded codes alone give, and lowers many."""
    rng = np.random.default_rng(6)
    W = (rng.standard_normal((12, 192)) * np.geomspace(0.01, 10, 12)[:, None]).astype(np.float32)
    got = tiers.decode(name, tiers.quantize_nearest(name, W), 192)
    monkeypatch.setattr(tiers, "SUB_CODE_STEPS", ((0, 0),))
    rounded = tiers.decode(name, tiers.quantize_nearest(name, W), 192)
    err = np.square(W - got).reshape(12, -1, 16).sum(-1)
    err0 = np.square(W - rounded).reshape(12, -1, 16).sum(-1)
    assert (err <= err0 * (1 + 1e-6)).all()
    assert (err < err0 * 0.999).mean() > 0.1


def test_quantize_nearest_refuses_other_tiers():
    W = np.zeros((2, 64), dtype=np.float32)
    for name in ("q4_0", "q8_0", "f16"):
        with pytest.raises(ConfigError, match="asymmetric"):
            tiers.quantize_nearest(name, W)
    with pytest.raises(ConfigError, match="divisible by 64"):
        tiers.quantize_nearest("q2_g64", np.zeros((2, 96), dtype=np.float32))
