"""Tests of the format definition: mask-code tables, field widths, expected array shapes."""

import math

import numpy as np
import pytest

from pbs2p_edge.errors import ConfigError, FormatError
from pbs2p_edge.pack.layout import CODE_OF, MS, VALUE_OF, LayerMeta, expected_arrays, group_width, mask_width


@pytest.mark.parametrize("m", MS)
def test_mask_code_tables_are_ascending_bijections(m):
    for n in range(0, m + 1):
        values = VALUE_OF[(n, m)].astype(np.int64)
        assert values.size == math.comb(m, n)
        assert np.all(np.diff(values) > 0)  # ascending numeric order
        assert np.all(np.bitwise_count(values) == n)
        assert np.array_equal(CODE_OF[m][values], np.arange(values.size))  # code(value(c)) == c
        assert values.size == 0 or values.max() < (1 << m)
    # every m-bit value has exactly one (popcount, code) pair
    seen = sum(VALUE_OF[(n, m)].size for n in range(m + 1))
    assert seen == 1 << m


def test_documented_examples():
    assert CODE_OF[8][0x0F] == 0 and CODE_OF[8][0xF0] == 69
    assert [mask_width(n, 8) for n in range(1, 9)] == [3, 5, 6, 7, 6, 5, 3, 0]
    assert mask_width(1, 2) == 1 and mask_width(2, 4) == 3 and mask_width(8, 16) == 14
    assert [group_width(s) for s in (1, 2, 3, 4, 5)] == [0, 1, 2, 2, 3]


def test_expected_arrays_shapes():
    meta = LayerMeta(rows=7, cols=136, n=5, m=8, group_size=128, split=3, has_salient=True, n_salient=9,
                     has_mu=True, has_col_scale=True)
    want = expected_arrays(meta)
    assert list(want) == ["mask", "signs", "signs2", "salient", "groups", "alpha", "alpha2", "mu", "col_scale"]
    assert want["mask"][0] == (7, math.ceil(17 * 6 / 8))
    assert want["signs"][0] == (7, math.ceil(85 / 8))
    assert want["signs2"][0] == (7, 2)
    assert want["salient"][0] == (17,)
    assert want["groups"][0] == (7, math.ceil(85 * 2 / 8))
    assert want["alpha"][0] == (4, 7, 2) and want["mu"][0] == (4, 7, 2) and want["alpha2"][0] == (7, 2)
    assert want["col_scale"][0] == (4, 136)
    plain = LayerMeta(rows=2, cols=16, n=8, m=8, group_size=128, split=1, has_salient=False, n_salient=0,
                      has_mu=False, has_col_scale=False)
    assert list(expected_arrays(plain)) == ["signs", "alpha"]


def test_meta_validation():
    ok = dict(rows=2, cols=16, n=4, m=8, group_size=128, split=1, has_salient=False, n_salient=0,
              has_mu=False, has_col_scale=False)
    LayerMeta(**ok)
    with pytest.raises(ConfigError):
        LayerMeta(**{**ok, "cols": 12})
    with pytest.raises(ConfigError):
        LayerMeta(**{**ok, "m": 6})
    with pytest.raises(FormatError):
        LayerMeta(**{**ok, "version": 2})
    with pytest.raises(FormatError):
        LayerMeta(**{**ok, "n_salient": 3})
    with pytest.raises(FormatError):
        LayerMeta.from_dict({k: v for k, v in ok.items() if k != "rows"})
    assert LayerMeta.from_dict(LayerMeta(**ok).to_dict()) == LayerMeta(**ok)
