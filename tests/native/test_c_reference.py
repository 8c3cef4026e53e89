"""The C format reference (pbs2p_layer_dequantize_ref) agrees bit for bit with the numpy one (pack.unpack_layer)."""

from __future__ import annotations

import numpy as np
import pytest
from layer_arrays import random_layer_arrays

from pbs2p_edge.errors import NativeError
from pbs2p_edge.pack import PackedLayer, pack_layer, unpack_layer
from pbs2p_edge.runtime import dequantize

CASES = [  # R, K, n, m, split, n_salient, mu, col_scale, group_size
    (1, 8, 4, 8, 1, 0, True, False, 128),
    (7, 136, 5, 8, 2, 3, True, False, 100),
    (129, 576, 6, 8, 3, 17, True, True, 64),
    (127, 1024, 4, 8, 1, 0, False, False, 128),
    (33, 64, 2, 4, 2, 5, False, True, 7),
    (16, 32, 1, 2, 1, 1, True, False, 16),
    (9, 96, 11, 16, 4, 0, True, True, 48),
    (5, 40, 8, 8, 1, 0, True, False, 8),  # N = M: no mask stream
    (3, 64, 3, 8, 5, 64, True, True, 32),  # every column salient
]


@pytest.mark.parametrize("R,K,n,m,split,n_sal,mu,cs,gs", CASES)
def test_c_dequantize_equals_numpy_bit_for_bit(R, K, n, m, split, n_sal, mu, cs, gs):
    rng = np.random.default_rng(R * 1000 + K + n)
    packed = pack_layer(**random_layer_arrays(rng, R, K, n, m, split=split, n_salient=n_sal, use_mu=mu,
                                              use_col_scale=cs, group_size=gs))
    want = unpack_layer(packed)
    got = dequantize(packed)
    assert got.dtype == np.float32 and got.shape == (R, K)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_float16_subnormals_and_extremes_are_converted_exactly():
    rng = np.random.default_rng(1)
    kw = random_layer_arrays(rng, 4, 16, 4, 8, group_size=4)
    halves = np.array([0x0001, 0x03FF, 0x0400, 0x7BFF, 0x3C01, 0x8001, 0x0200, 0x1234], dtype=np.uint16)
    kw["alpha"] = halves.view(np.float16).astype(np.float32).reshape(1, 2, 4, 1).repeat(4, axis=3)
    kw["mu"] = np.zeros_like(kw["mu"])
    packed = pack_layer(**kw)
    assert np.array_equal(dequantize(packed).view(np.uint32), unpack_layer(packed).view(np.uint32))


def _corrupt(packed: PackedLayer, name: str, value: np.ndarray) -> PackedLayer:
    return PackedLayer(packed.meta, {**packed.arrays, name: value})


def test_corrupt_streams_raise_native_error():
    rng = np.random.default_rng(2)
    packed = pack_layer(**random_layer_arrays(rng, 4, 16, 4, 8, split=3, n_salient=2))
    bad_mask = packed.arrays["mask"].copy()
    bad_mask[0, 0] = 0x7F  # code 127 >= C(8, 4) = 70
    with pytest.raises(NativeError, match="mask code 127") as e:
        dequantize(_corrupt(packed, "mask", bad_mask))
    assert e.value.status == 3  # PBS2P_ERR_FORMAT
    bad_salient = packed.arrays["salient"].copy()
    bad_salient[0] ^= 0xFF  # the salient count no longer matches n_salient
    with pytest.raises(NativeError, match="n_salient"):
        dequantize(_corrupt(packed, "salient", bad_salient))
