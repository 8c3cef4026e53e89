"""Tests of runtime.sampling.SamplerParams: the values the C sampler accepts, checked before C sees them."""

import pytest

from pbs2p_edge.errors import ConfigError
from pbs2p_edge.runtime._ffi import ffi, lib
from pbs2p_edge.runtime.sampling import SEED_MAX, SamplerParams


def test_defaults_are_the_c_defaults_greedy():
    p = SamplerParams()
    c = lib.pbs2p_sampler_default_params()
    assert p.greedy and p.as_c_fields() == {"temperature": c.temperature, "top_k": c.top_k, "top_p": c.top_p,
                                            "seed": c.seed}


def test_c_struct_takes_every_valid_extreme():
    p = SamplerParams(temperature=0.7, top_k=2**31 - 1, top_p=1e-6, seed=SEED_MAX)
    c = ffi.new("pbs2p_sampler_params *", p.as_c_fields())
    assert (c.top_k, c.seed) == (2**31 - 1, SEED_MAX) and not p.greedy
    assert c.temperature == pytest.approx(0.7) and c.top_p == pytest.approx(1e-6)


@pytest.mark.parametrize("kw, match", [
    ({"temperature": float("inf")}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": "1"}, "temperature"), ({"top_k": -1}, "top_k"), ({"top_k": 2**31}, "top_k"),
    ({"top_k": 1.5}, "top_k"), ({"top_k": True}, "top_k"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.0001}, "top_p"),
    ({"top_p": float("nan")}, "top_p"), ({"seed": -1}, "seed"), ({"seed": SEED_MAX + 1}, "seed"),
])
def test_invalid_values_are_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        SamplerParams(**kw)


def test_sampler_through_c_is_greedy_at_temperature_zero_and_seeded_otherwise():
    import numpy as np

    logits = np.linspace(-2, 2, 50, dtype=np.float32)[::-1].copy()  # id 0 largest

    def draw(params, n):
        out = ffi.new("pbs2p_sampler **")
        assert lib.pbs2p_sampler_new(ffi.new("pbs2p_sampler_params *", params.as_c_fields()), 50, out) == lib.PBS2P_OK
        s = ffi.gc(out[0], lib.pbs2p_sampler_free)
        tok = ffi.new("int32_t *")
        ids = []
        for _ in range(n):
            assert lib.pbs2p_sampler_sample(s, ffi.cast("float *", ffi.from_buffer(logits)), 50, tok) == lib.PBS2P_OK
            ids.append(tok[0])
        return ids

    assert draw(SamplerParams(), 5) == [0] * 5
    hot = SamplerParams(temperature=2.0, top_k=10, seed=11)
    assert draw(hot, 40) == draw(hot, 40)
    assert set(draw(hot, 40)) <= set(range(10)) and len(set(draw(hot, 40))) > 1
