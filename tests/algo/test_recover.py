"""recover_block: fitted scales, means and norm weights lower a quantized block's error; codes move only when told."""

import dataclasses

import torch

from pbs2p_edge.algo.compress_layer import compress_layer
from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.algo.gptq_grid import gptq_grid, round_f16
from pbs2p_edge.algo.recover import recover_block
from pbs2p_edge.pack.tiers import tier

D, F, WINDOWS, T = 64, 128, 6, 16


def _setup(seed=0):
    """A two-linear 'block' y = down(relu(up(x * g))) in full precision, its inputs and targets."""
    gen = torch.Generator().manual_seed(seed)
    up = torch.randn(F, D, generator=gen) / D ** 0.5
    down = torch.randn(D, F, generator=gen) / F ** 0.5
    g = 1 + 0.1 * torch.randn(D, generator=gen)
    x = torch.randn(WINDOWS, T, D, generator=gen)

    def run(overrides, xb, W_up=up, W_down=down, norm=g):
        W_up = overrides.get("up.weight", W_up)
        W_down = overrides.get("down.weight", W_down)
        norm = overrides.get("norm.weight", norm)
        return torch.relu((xb * norm) @ W_up.T) @ W_down.T

    target = run({}, x)
    return up, down, g, x, target, run


def _hessian(a: torch.Tensor) -> torch.Tensor:
    a = a.reshape(-1, a.shape[-1])
    return 2 * a.T @ a / a.shape[0]


def _grid_block(cfg_tier="q2_g64"):
    up, down, g, x, target, run = _setup()
    t = tier(cfg_tier)
    r_up = gptq_grid(up, _hessian(x * g), t)
    r_down = gptq_grid(down, _hessian(torch.relu((x * g) @ up.T)), t)
    return {"up": r_up, "down": r_down}, g, x, target, run


def test_recovery_lowers_the_error_and_keeps_every_code():
    results, g, x, target, run = _grid_block()
    cfg = CompressConfig(method="rtn", recover_steps=60, recover_lr=3e-3, recover_batch=2, recover_codes=False)
    fit = recover_block(run, results, {"norm.weight": g}, x, target, cfg)
    assert fit.kept
    assert fit.mse_after < 0.9 * fit.mse_before  # measured: about 0.6x on this block
    for name, r in results.items():
        new = fit.results[name]
        assert torch.equal(new.q, r.q)  # codes frozen
        assert not torch.equal(new.d, r.d)
        for v in (new.d, new.m):  # what the file stores: float16 values
            assert torch.equal(v, v.half().float())
    assert not torch.equal(fit.block_params["norm.weight"], g)
    # the reported error is the error of exactly what is returned
    o = {f"{n}.weight": r.dequantize() for n, r in fit.results.items()} | fit.block_params
    assert abs(float((run(o, x) - target).square().mean()) - fit.mse_after) <= 1e-6 * fit.mse_after


def test_recovery_is_deterministic_and_off_at_zero_steps():
    results, g, x, target, run = _grid_block()
    cfg = CompressConfig(method="rtn", recover_steps=10, recover_batch=3, seed=5)
    a = recover_block(run, results, {"norm.weight": g}, x, target, cfg)
    b = recover_block(run, results, {"norm.weight": g}, x, target, cfg)
    for name in results:
        assert torch.equal(a.results[name].d, b.results[name].d)
    assert torch.equal(a.block_params["norm.weight"], b.block_params["norm.weight"])
    off = recover_block(run, results, {"norm.weight": g}, x, target, dataclasses.replace(cfg, recover_steps=0))
    assert not off.kept and off.mse_after == off.mse_before
    assert all(off.results[n] is results[n] for n in results)
    assert off.block_params["norm.weight"] is g


def test_a_fit_that_does_not_help_is_not_kept():
    results, g, x, target, run = _grid_block("q8_0")
    # a learning rate far too large: every step overshoots, and the quantized values stand
    cfg = CompressConfig(method="rtn", recover_steps=5, recover_lr=10.0)
    fit = recover_block(run, results, {"norm.weight": g}, x, target, cfg)
    assert not fit.kept
    assert fit.mse_after == fit.mse_before
    assert all(fit.results[n] is results[n] for n in results)


def _binary_block(cfg):
    up, down, g, x, target, run = _setup()
    r_up = compress_layer(up, _hessian(x * g), cfg, cfg.n)
    r_down = round_f16(down)  # an f16 linear: nothing of it is trained
    return {"up": r_up, "down": r_down}, g, x, target, run


def test_binary_scales_and_means_are_fitted_mean_only_where_the_method_has_one():
    with_mean = CompressConfig(method="pbs2p", n=4, m=8, cfs=False, block_size=0, salient=False, split_groups=1,
                               intra_block_update=True, recover_steps=30, recover_lr=3e-3, recover_codes=False).resolved()
    results, g, x, target, run = _binary_block(with_mean)
    fit = recover_block(run, results, {"norm.weight": g}, x, target, with_mean)
    assert fit.kept and fit.mse_after < fit.mse_before
    new, old = fit.results["up"], results["up"]
    assert torch.equal(new.signs, old.signs) and torch.equal(new.mask, old.mask)
    assert not torch.equal(new.alpha, old.alpha) and not torch.equal(new.mu, old.mu)
    assert fit.results["down"] is results["down"]

    no_mean = dataclasses.replace(with_mean, method="rtn", use_mean=False).resolved()
    assert not no_mean.use_mean
    results, g, x, target, run = _binary_block(no_mean)
    fit = recover_block(run, results, {"norm.weight": g}, x, target, no_mean)
    assert fit.kept
    assert torch.count_nonzero(fit.results["up"].mu) == 0


def test_trained_codes_lower_the_error_more_and_stay_valid_codes():
    results, g, x, target, run = _grid_block()
    scales = CompressConfig(method="rtn", recover_steps=60, recover_lr=3e-3, recover_batch=2, recover_codes=False)
    codes = dataclasses.replace(scales, recover_codes=True)
    a = recover_block(run, results, {"norm.weight": g}, x, target, scales)
    b = recover_block(run, results, {"norm.weight": g}, x, target, codes)
    assert b.kept and b.mse_after < 0.9 * a.mse_after  # measured: about 0.6x the scales-only fit's error
    moved = 0
    for name, r in results.items():
        q = b.results[name].q
        assert q.dtype == torch.uint8 and q.shape == r.q.shape and int(q.max()) <= r.tier.qmax
        moved += int((q != r.q).sum())
    assert moved > 0
    o = {f"{n}.weight": r.dequantize() for n, r in b.results.items()} | b.block_params
    assert abs(float((run(o, x) - target).square().mean()) - b.mse_after) <= 1e-6 * b.mse_after
    again = recover_block(run, results, {"norm.weight": g}, x, target, codes)
    assert all(torch.equal(again.results[n].q, b.results[n].q) for n in results)


def test_trained_signs_flip_inside_the_mask_only_and_stay_canonical():
    cfg = CompressConfig(method="pbs2p", n=4, m=8, cfs=False, block_size=0, salient=True, split_groups=1,
                         intra_block_update=True, recover_steps=120, recover_lr=3e-3, recover_codes=True).resolved()
    results, g, x, target, run = _binary_block(cfg)
    fit = recover_block(run, results, {"norm.weight": g}, x, target, cfg)
    frozen = recover_block(run, results, {"norm.weight": g}, x, target, dataclasses.replace(cfg, recover_codes=False))
    assert fit.kept and fit.codes and fit.mse_after < frozen.mse_after  # measured: 0.054 vs 0.057
    new, old = fit.results["up"], results["up"]
    assert torch.equal(new.mask, old.mask)
    assert new.signs.dtype == torch.bool and not torch.equal(new.signs, old.signs)
    assert not (new.signs & ~new.mask).any()  # canonical: no sign where the mask drops the weight
    if new.signs.shape[0] > 1:
        assert not (new.signs[1] & ~new.salient).any()


def test_codes_moved_too_fast_fall_back_to_the_scales_alone():
    results, g, x, target, run = _grid_block()
    scales = CompressConfig(method="rtn", recover_steps=60, recover_lr=3e-3, recover_batch=2, recover_codes=False)
    wild = dataclasses.replace(scales, recover_codes=True, recover_code_lr=50.0)  # every code jumps each step
    a = recover_block(run, results, {"norm.weight": g}, x, target, scales)
    b = recover_block(run, results, {"norm.weight": g}, x, target, wild)
    assert a.kept and b.kept and not b.codes and not a.codes
    assert b.mse_after == a.mse_after
    assert all(torch.equal(b.results[n].q, results[n].q) for n in results)
