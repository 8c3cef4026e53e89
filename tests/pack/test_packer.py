"""Tests of the reference packer: bit-exact round trips against LayerResult.dequantize, validation, honest size."""

import itertools
import math

import numpy as np
import pytest
import torch

from .layer_arrays import random_layer_arrays
from pbs2p_edge.algo.result import LayerResult
from pbs2p_edge.errors import ConfigError, FormatError
from pbs2p_edge.pack import expected_arrays, honest_bits, pack_layer, unpack_layer
from pbs2p_edge.pack.packer import row_slice, unpack_planes

NM = [(n, m) for m in (2, 4, 8, 16) for n in range(1, m + 1)]
SHAPES = [(1, 8), (7, 136), (129, 576)]


def reference(kw) -> np.ndarray:
    """LayerResult.dequantize() of the same arrays (the math's own definition)."""
    t = {k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    r = LayerResult(mask=t["mask"], signs=t["signs"], salient=t["salient"], group=t["group"], alpha=t["alpha"],
                    mu=t["mu"], col_scale=t["col_scale"], n=kw["n"], m=kw["m"], group_size=kw["group_size"], loss=0.0)
    return r.dequantize().numpy()


def cases():
    variants = itertools.cycle(itertools.product((0, 5), (1, 2, 3), (True, False), (False, True)))
    for i, (n, m) in enumerate(NM):
        for R, K in SHAPES:
            if K % m:
                K = 16 * (K // 16 + 1)  # 8 -> 16, 136 -> 144 for M = 16
            n_sal, split, mu, cs = next(variants)
            gs = (128, 64, 8)[i % 3]
            yield pytest.param(R, K, n, m, split, n_sal, mu, cs, gs, id=f"{n}:{m}-{R}x{K}-sal{n_sal}-S{split}-mu{int(mu)}-cs{int(cs)}-g{gs}")


@pytest.mark.parametrize("R,K,n,m,split,n_sal,mu,cs,gs", list(cases()))
def test_round_trip_bit_exact(R, K, n, m, split, n_sal, mu, cs, gs):
    rng = np.random.default_rng(R * 1000 + K + 17 * n + m)
    kw = random_layer_arrays(rng, R, K, n, m, split=split, n_salient=n_sal, use_mu=mu, use_col_scale=cs, group_size=gs)
    packed = pack_layer(**kw)
    meta = packed.meta
    assert (meta.rows, meta.cols, meta.n, meta.m, meta.split, meta.n_salient) == (R, K, n, m, split, n_sal)
    assert meta.has_mu == mu and meta.has_col_scale == cs and meta.has_salient == (n_sal > 0)
    assert set(packed.arrays) == set(expected_arrays(meta))
    planes = unpack_planes(packed)
    assert np.array_equal(planes["mask"], kw["mask"])
    assert np.array_equal(planes["s0"], kw["signs"][0])
    W = unpack_layer(packed)
    ref = reference(kw)
    assert W.dtype == np.float32 and W.shape == (R, K)
    assert np.array_equal(W.view(np.uint32), ref.view(np.uint32))  # bit-exact, signed zeros included


@pytest.mark.parametrize("R,K,n,m,split,n_sal,mu,cs,gs", [c for c in cases() if c.values[0] > 1][::7])
def test_a_row_slice_unpacks_to_those_rows(R, K, n, m, split, n_sal, mu, cs, gs):
    """row_slice (StoredResult.dequantize's pieces): every cut of every layout unpacks to the whole layer's rows."""
    rng = np.random.default_rng(R * 1000 + K + 17 * n + m)
    packed = pack_layer(**random_layer_arrays(rng, R, K, n, m, split=split, n_salient=n_sal, use_mu=mu,
                                              use_col_scale=cs, group_size=gs))
    W = unpack_layer(packed)
    for r0, r1 in ((0, 1), (1, R), (R // 3, R // 3 + 2), (R - 1, R), (0, R)):
        assert np.array_equal(unpack_layer(row_slice(packed, r0, r1)).view(np.uint32), W[r0:r1].view(np.uint32))
    for r0, r1 in ((0, 0), (-1, 2), (2, R + 1)):
        with pytest.raises(ConfigError, match="not inside"):
            row_slice(packed, r0, r1)


def test_full_4_8_billm_structure_bit_exact():
    rng = np.random.default_rng(3)
    kw = random_layer_arrays(rng, 64, 576, 4, 8, split=2, n_salient=30, use_mu=True, group_size=128)
    assert np.array_equal(unpack_layer(pack_layer(**kw)), reference(kw))


def test_drops_unused_regions_and_zero_mu():
    rng = np.random.default_rng(4)
    kw = random_layer_arrays(rng, 3, 16, 2, 4, split=1, n_salient=0, use_mu=False)
    kw["alpha"][0, 0] = 123.0  # region 0 scales are not used without salient columns
    kw["mu"][0] = 0.5
    packed = pack_layer(**kw)
    assert not packed.meta.has_mu and not packed.meta.has_salient
    assert set(packed.arrays) == {"mask", "signs", "alpha"}
    assert packed.arrays["alpha"].shape == (1, 3, 1)


def test_honest_bits_4_8_by_hand():
    rng = np.random.default_rng(5)
    R, K = 10, 512
    kw = random_layer_arrays(rng, R, K, 4, 8, split=1, n_salient=0, use_mu=True, group_size=128)
    bits = honest_bits(pack_layer(**kw))
    # mask 7 bits per 8 columns, 1 sign per kept weight, alpha + mu float16 per row per 128 columns
    assert bits == R * (K // 8 * 7 + K // 2 + 2 * 16 * K // 128)
    assert bits / (R * K) == 1.625
    # BiLLM structure: salient columns (plane-2 signs), 2 split groups (1 bit per kept weight)
    kw = random_layer_arrays(rng, R, K, 4, 8, split=2, n_salient=13, use_mu=True, group_size=128)
    packed = pack_layer(**kw)
    G = 4
    want = (R * (K // 8 * 7) + R * K // 2 + R * 8 * math.ceil(13 / 8) + K + R * K // 2
            + 16 * (3 * R * G + R * G + 3 * R * G))
    assert honest_bits(packed) == want


@pytest.mark.parametrize("R,K,n,m,split,n_sal,mu,cs,gs", [c for c in cases() if c.values[0] > 1][::5])
def test_packing_a_few_rows_at_a_time_makes_the_whole_layers_arrays(monkeypatch, R, K, n, m, split, n_sal, mu, cs,
                                                                     gs):
    """pack_layer packs PACK_ROWS_ELEMENTS weights at a time (a 7B MLP's bit fields widened whole took over 0.5 GB):
    cut into row ranges of every size, the same arrays, in the same order, and an error names the layer's row."""
    from pbs2p_edge.pack import packer

    rng = np.random.default_rng(R * 1000 + K + 17 * n + m)
    kw = random_layer_arrays(rng, R, K, n, m, split=split, n_salient=n_sal, use_mu=mu, use_col_scale=cs, group_size=gs)
    whole = pack_layer(**kw)
    for rows in (1, 2, R // 3 + 1, R - 1):
        monkeypatch.setattr(packer, "PACK_ROWS_ELEMENTS", rows * K)
        cut = pack_layer(**kw)
        assert cut.meta == whole.meta and list(cut.arrays) == list(whole.arrays)
        assert all(a.dtype == whole.arrays[k].dtype and np.array_equal(a, whole.arrays[k])
                   for k, a in cut.arrays.items())
    if n < m:
        kw["mask"][R - 1, :m] = True
        with pytest.raises(FormatError, match=f"row {R - 1}, M-group 0 keeps {m} of {m}"):
            pack_layer(**kw)


def test_validation_errors():
    rng = np.random.default_rng(6)
    good = random_layer_arrays(rng, 4, 24, 2, 4, split=2, n_salient=3)
    pack_layer(**good)

    def bad(**changes):
        return {**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in good.items()}, **changes}

    with pytest.raises(ConfigError):
        pack_layer(**bad(m=3))
    with pytest.raises(ConfigError):
        pack_layer(**bad(n=5))
    with pytest.raises(ConfigError):
        pack_layer(**bad(m=16))  # K = 24 is not a multiple of 16
    kw = bad()
    kw["mask"][0, :4] = [True, True, True, False]
    with pytest.raises(FormatError, match="keeps 3"):
        pack_layer(**kw)
    kw = bad()
    kw["signs"][0] |= ~kw["mask"]
    with pytest.raises(FormatError, match="canonical"):
        pack_layer(**kw)
    kw = bad()
    kw["signs"][1] |= kw["mask"] & ~kw["salient"]
    with pytest.raises(FormatError, match="plane 1"):
        pack_layer(**kw)
    kw = bad()
    kw["group"][kw["mask"] & ~kw["salient"]] = 2
    with pytest.raises(FormatError, match="out of range"):
        pack_layer(**kw)
    kw = bad()
    kw["alpha"][0, 1, 0, 0] = 0.1  # not a float16 value
    with pytest.raises(FormatError, match="float16"):
        pack_layer(**kw)
    kw = bad()
    kw["mu"][1, 0, 0] = np.inf
    with pytest.raises(FormatError, match="float16"):
        pack_layer(**kw)
    with pytest.raises(FormatError, match="two sign planes"):
        pack_layer(**bad(signs=good["signs"][:1].copy(), alpha=good["alpha"][:1].copy()))
    with pytest.raises(FormatError, match="keeps 4"):
        pack_layer(**bad(m=8))  # K = 24 divides by 8, but the 2:4 mask keeps 4 per 8
    with pytest.raises(FormatError, match="shape"):
        pack_layer(**bad(mu=good["mu"][:, :2]))


@pytest.mark.parametrize("method", ["rtn", "magnitude", "billm", "arb", "arb-rc", "stbllm", "pbs2p"])
def test_packs_every_method_of_compress_layer(method):
    """The real math's LayerResults (every method, so every structure: salient, S=3, col_scale) pack exactly."""
    from pbs2p_edge.algo.compress_layer import compress_layer
    from pbs2p_edge.algo.config import CompressConfig
    from pbs2p_edge.checkpoint import pack_result

    g = torch.Generator().manual_seed(0)
    K = 136  # a partial last scale block (128 + 8)
    X = torch.randn(256, K, generator=g) * (0.2 + 2 * torch.rand(K, generator=g))
    H = 2 / 256 * X.T @ X
    W = torch.randn(24, K, generator=g) * 0.02
    cfg = CompressConfig(method=method, n=5, m=8, arb_iters=3, spbo_iters=1, max_salient=8)
    r = compress_layer(W, H, cfg, cfg.resolved().n)
    packed = pack_result(r)
    assert packed.meta.has_col_scale == (method == "arb-rc")
    assert packed.meta.split == cfg.resolved().split_groups
    assert np.array_equal(unpack_layer(packed).view(np.uint32), r.dequantize().numpy().view(np.uint32))
