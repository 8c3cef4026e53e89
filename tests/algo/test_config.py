import pytest

from pbs2p_edge.algo.config import CompressConfig, parse_nm
from pbs2p_edge.errors import ConfigError


def test_parse_nm_and_its_errors():
    assert parse_nm("4:8") == (4, 8) and parse_nm("2:4") == (2, 4)
    for bad in ["0:8", "9:8", "4:7", "4-8", "a:b", ""]:
        with pytest.raises(ConfigError):
            parse_nm(bad)


@pytest.mark.parametrize("field, value, message", [
    ("method", "gptq", "unknown method"),
    ("block_size", 12, "block_size"),
    ("percdamp", 1.0, "percdamp"),
    ("split_groups", 4, "split_groups"),
    ("arb_iters", -1, "arb_iters"),
    ("spbo_steps", 0, "spbo_steps"),
    ("cfs_low", -1, "cfs_low"),
    ("cfs_windows", 0, "cfs_windows"),
])
def test_each_bad_field_gets_a_config_error(field, value, message):
    with pytest.raises(ConfigError, match=message):
        CompressConfig(**{field: value})


def test_round_trip_resolution_and_unknown_keys():
    cfg = CompressConfig(method="pbs2p", n=5, cfs_windows=None)
    assert CompressConfig.from_dict(cfg.to_dict()) == cfg
    r = CompressConfig(method="arb-rc", n=5).resolved()
    assert (r.n, r.salient, r.split_groups, r.use_mean) == (8, True, 2, False)  # arb-rc does not prune
    with pytest.raises(ConfigError, match="unknown config keys"):
        CompressConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_each_method_record_gives_its_defaults_and_its_block_fit():
    from pbs2p_edge.algo import block_fits
    from pbs2p_edge.algo.compress_layer import FITS
    from pbs2p_edge.algo.methods import METHODS

    assert list(METHODS) == ["rtn", "magnitude", "billm", "arb", "arb-rc", "stbllm", "pbs2p"]
    for name, m in METHODS.items():
        r = CompressConfig(method=name, n=4, m=8).resolved()
        assert (r.salient, r.split_groups, r.use_mean) == (m.salient, m.split_groups, m.use_mean)
        assert r.n == (4 if m.prunes else 8)
        assert CompressConfig(method=name, n=4, m=8).prunes == m.prunes
        assert FITS[name] is getattr(block_fits, m.fit)
        assert not m.uses_cfs or (m.prunes and m.uses_hessian)  # CFS chooses N from OBS scores
    # the defaults a user can still override
    assert CompressConfig(method="pbs2p", salient=False, split_groups=1, use_mean=False).resolved().salient is False
