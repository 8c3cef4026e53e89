"""Block-wise recovery: after a block's linears are quantized, fit their parameters by reconstruction.

EfficientQAT's Block-AP. The trained tensors are the ones a file stores as numbers:
  grid tiers     d (R, G) and, where the tier has one, m (R, G)
  binary tier    alpha (P, 1+S, R, G) and, when the method has a mean, mu (1+S, R, G)
  the block      every parameter that is not a linear's weight: the norm weights (and biases where a model has them)
and, with cfg.recover_codes, the codes too:
  grid tiers     each code q moves to clamp(round(q + v), 0, qmax), v a real offset per weight
  binary tier    each kept sign s (+-1) becomes sign(s + v)
trained through the rounding by the straight-through estimator (the gradient of round and sign taken as 1), at
cfg.recover_code_lr in code units, so a code moves once its offset has been pushed half a step (a sign: one) the
same way. F16 linears and every N:M mask stay as quantized. The objective is the mean squared error between the
quantized block's output on its own inputs (the already-quantized model's activations) and the full-precision
block's output on the full-precision model's activations, so each block also absorbs the error that reaches it.

[choice] Every tensor is trained relative to its quantized value, so one learning rate suits tensors of any
magnitude: a scale s becomes s0 * (1 + u), a mean or min m0 + step0 * u (step0: the matching scale), u starting at 0.
[choice] The result is kept only if, rounded to float16 as the file stores it, it lowers the error on all windows;
otherwise the quantized values stand. So recovery never makes a block worse on the calibration data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch

from .config import CompressConfig
from .gptq_grid import FloatResult, GridResult
from .result import LayerResult


@dataclass(frozen=True)
class Recovered:
    """results: the block's linears (name inside the block -> result) with the fitted values, float16-valued;
    block_params: fitted block parameters (name -> tensor); both hold the quantized values when `kept` is False.
    mse_before / mse_after: the error on all windows before and after (after = before when not kept)."""
    results: dict
    block_params: dict[str, torch.Tensor]
    mse_before: float
    mse_after: float
    kept: bool
    codes: bool = False  # the kept fit moved codes and signs (cfg.recover_codes, unless it fell back to scales alone)


def _f16(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-65504.0, 65504.0).to(torch.float16).float()


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, the identity's gradient backward (straight-through)."""
    return x + (torch.round(x) - x).detach()


def _sign_ste(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0 else -1 forward, the identity's gradient backward (straight-through)."""
    return x + (torch.where(x >= 0, 1.0, -1.0) - x).detach()


def _canonical_signs(plus: torch.Tensor, r: LayerResult) -> torch.Tensor:
    """Sign planes (P, R, K) in result.py's canonical form: False where the mask drops a weight, and plane 1 False
    outside the salient columns."""
    plus = plus & r.mask
    if plus.shape[0] > 1:
        plus[1] &= r.salient
    return plus


class _Offsets:
    """The trainable offsets of one linear (u: scales and means; v: codes and signs) and how they turn back into its
    result."""

    def __init__(self, result, train_mean: bool, train_codes: bool):
        self.result = result
        self.u: dict[str, torch.Tensor] = {}  # scales and means, relative
        self.v: dict[str, torch.Tensor] = {}  # codes and signs, in code units
        if isinstance(result, GridResult):
            self.u["d"] = torch.zeros_like(result.d)
            if result.m is not None:
                self.u["m"] = torch.zeros_like(result.m)
            if train_codes:
                self.v["q"] = torch.zeros(result.q.shape, device=result.q.device)
        elif isinstance(result, LayerResult):
            self.u["alpha"] = torch.zeros_like(result.alpha)
            if train_mean:
                self.u["mu"] = torch.zeros_like(result.mu)
            if train_codes:
                self.v["signs"] = torch.zeros(result.signs.shape, device=result.signs.device)
        for t in [*self.u.values(), *self.v.values()]:
            t.requires_grad_(True)

    def values(self, round_f16: bool = False) -> dict[str, torch.Tensor]:
        """The result's fitted tensors (differentiable in u unless rounded)."""
        r, u, v, out = self.result, self.u, self.v, {}
        if isinstance(r, GridResult):
            out["d"] = r.d * (1 + u["d"])
            if "m" in u:
                out["m"] = r.m + r.d * u["m"]
        elif isinstance(r, LayerResult):
            out["alpha"] = r.alpha * (1 + u["alpha"])
            if "mu" in u:
                out["mu"] = r.mu + r.alpha[0].abs() * u["mu"]
        if round_f16:
            out = {k: _f16(t.detach()) for k, t in out.items()}
        if "q" in v:  # float codes while training (dequantize reads q.float()), uint8 codes when done
            q = _round_ste(r.q.float() + v["q"]).clamp(0, r.tier.qmax)
            out["q"] = q.detach().to(torch.uint8) if round_f16 else q
        if "signs" in v:  # float 0/1 while training (dequantize reads signs.float()), canonical bools when done
            s = _sign_ste(r.signs.float() * 2 - 1 + v["signs"])
            out["signs"] = _canonical_signs(s.detach() > 0, r) if round_f16 else (s + 1) / 2
        return out

    def result_with(self, values: dict[str, torch.Tensor]):
        return dataclasses.replace(self.result, **values) if values else self.result


def recover_block(
    run: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor],
    results: dict[str, LayerResult | GridResult | FloatResult],
    block_params: dict[str, torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    cfg: CompressConfig,
) -> Recovered:
    """Fit the continuous parameters of one quantized block.

    run(overrides, xb): the block's output on inputs xb (B, T, D) with parameters replaced by `overrides`
    ("<linear>.weight" -> W_hat, or a block parameter's name -> value); it must let gradients through.
    results: the block's linears by name inside the block; block_params: the block's other parameters (name ->
    current value), trained as scales (norm weights, relative) or shifts (biases, by their own magnitude).
    x (n, T, D): the quantized model's inputs to this block; target (n, T, D): the full-precision block's outputs.
    cfg: recover_steps, recover_lr, recover_batch and seed; a binary linear's mu is fitted only when cfg.use_mean
    (a method without a mean keeps mu = 0).
    """
    offsets = {name: _Offsets(r, bool(cfg.use_mean), cfg.recover_codes) for name, r in results.items()}
    base = {k: v.detach().float() for k, v in block_params.items()}
    u_block = {k: torch.zeros_like(v, requires_grad=True) for k, v in base.items()}

    def block_values(u: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # norm weights scale relatively; a bias may be all zero, so it shifts absolutely
        return {k: (base[k] * (1 + u[k]) if k.endswith("weight") else base[k] + u[k]) for k in base}

    def overrides(round_f16: bool) -> dict[str, torch.Tensor]:
        o = {}
        for name, off in offsets.items():
            vals = off.values(round_f16)
            if vals:
                o[f"{name}.weight"] = off.result_with(vals).dequantize()
        bv = block_values(u_block)
        o.update({k: v.detach() if round_f16 else v for k, v in bv.items()})
        return o

    @torch.no_grad()
    def mse(o: dict[str, torch.Tensor]) -> float:
        total = 0.0
        for j in range(x.shape[0]):
            total += float((run(o, x[j : j + 1]) - target[j : j + 1]).float().square().mean())
        return total / x.shape[0]

    with torch.no_grad():
        start = {k: v.detach() for k, v in overrides(round_f16=False).items()}
    before = mse(start)
    scales = [t for off in offsets.values() for t in off.u.values()] + list(u_block.values())
    codes = [t for off in offsets.values() for t in off.v.values()]  # the second learning rate's tensors
    if cfg.recover_steps == 0 or not scales + codes:
        return Recovered(dict(results), dict(block_params), before, before, False)

    gen = torch.Generator().manual_seed(cfg.seed)
    groups = [{"params": scales, "lr": cfg.recover_lr}]
    groups += [{"params": codes, "lr": cfg.recover_code_lr}] if codes else []
    opt = torch.optim.Adam(groups)
    # [choice] with codes, a cosine decay to 0 over the steps (EfficientQAT's schedule): late steps are small, so codes
    # settle; scales alone keep a constant rate (the rate their measured results were made with)
    decay = (lambda k: 0.5 * (1 + math.cos(math.pi * k / cfg.recover_steps))) if codes else (lambda k: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, decay)
    order = torch.empty(0, dtype=torch.long)
    with torch.enable_grad():
        for _ in range(cfg.recover_steps):
            if order.numel() < cfg.recover_batch:  # a fresh seeded permutation of the windows each epoch
                order = torch.cat([order, torch.randperm(x.shape[0], generator=gen)])
            idx, order = order[: cfg.recover_batch], order[cfg.recover_batch :]
            loss = (run(overrides(round_f16=False), x[idx]) - target[idx]).float().square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()

    with torch.no_grad():
        final = overrides(round_f16=True)
    after = mse(final)
    if not after < before:
        if codes:  # [choice] moving codes too fast can leave a block worse; then the scales alone are fitted again
            return recover_block(run, results, block_params, x, target, dataclasses.replace(cfg, recover_codes=False))
        return Recovered(dict(results), dict(block_params), before, before, False)
    fitted = {name: off.result_with(off.values(round_f16=True)) for name, off in offsets.items()}
    bv = {k: v.detach() for k, v in block_values(u_block).items()}
    return Recovered(fitted, bv, before, after, True, bool(codes))
