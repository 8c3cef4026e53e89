"""compress_layer: one linear layer (W, H) -> LayerResult, for every method, through one dispatch table.

Each method is a small composition of the shared pieces (nm_mask, billm_init, arb_refine, spbo, cfs)
applied to one column block inside the GPTQ loop; the methods that use no Hessian (rtn, magnitude)
run the same block loop without compensation. Scales are rounded to float16 values before a block's
Q is formed, so the GPTQ compensation sees exactly what the packed file will reproduce.

Choices (see each piece's docstring for its own):
- "arb" is ARB-X: refinement in the norm of the block of the damped H (proportional to X^T X);
  "arb-rc" refines row x column scales in the plain norm (ARB-LLM's RC has no X term).
- "pbs2p" per block: OBS scores w^2 / U_jj^2 on the compensated block -> CFS N_l:M mask; the
  structure (salient columns / split groups, per cfg.resolved(): default salient + 2 groups as in
  ARB-LLM) is searched
  on the UNPRUNED block, fitted with ARB-X (arb_iters), then SPBO prunes progressively in the same
  norm (spbo_steps, spbo_iters). With n == M it is exactly "arb" with the same structure.
- "stbllm": mask by |W| * sqrt(diag H) of the caller's (undamped) H, computed on the compensated
  block; BiLLM structure searched over the kept entries only.
- Salient saliency is W^2 / U_jj^2 when a Hessian is used, |W| otherwise (rtn/magnitude with
  salient=True).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .arb import arb_refine
from .billm import billm_init
from .block_fit import BlockFit, assemble
from .cfs import cfs_mask, obs_scores
from .config import METHODS, CompressConfig
from .gptq_loop import gptq_loop
from .hessian_prep import prepare_hessian
from .nm_mask import nm_mask
from .result import LayerResult
from .spbo import spbo
from .stbllm import input_norms, stbllm_mask


@dataclass(frozen=True)
class Block:
    """What a method sees of one column block."""
    W: torch.Tensor  # (R, b) current (compensated) weights of the block
    S: torch.Tensor | None  # (b, b) block of the damped H (ARB-X's Gram matrix); None without Hessian
    d: torch.Tensor | None  # (b,) diagonal of U's block (OBS / BiLLM saliency); None without Hessian
    x_norm: torch.Tensor  # (b,) sqrt(diag H) of the caller's H, ||x_j|| up to a constant
    cfg: CompressConfig  # resolved
    n: int  # this layer's N_l


def _init(blk: Block, kept: torch.Tensor, rc: bool = False) -> BlockFit:
    c = blk.cfg
    return billm_init(blk.W, kept, blk.d, c.salient, c.max_salient, c.split_groups, c.use_mean, rc)


def _all(blk: Block) -> torch.Tensor:
    return torch.ones_like(blk.W, dtype=torch.bool)


def _rtn(blk: Block) -> BlockFit:
    return _init(blk, _all(blk))


def _magnitude(blk: Block) -> BlockFit:
    return _init(blk, nm_mask(blk.W.abs(), blk.n, blk.cfg.m))


def _billm(blk: Block) -> BlockFit:
    return _init(blk, _all(blk))


def _arb(blk: Block) -> BlockFit:
    return arb_refine(_init(blk, _all(blk)), blk.W, blk.cfg.arb_iters, blk.cfg.use_mean, blk.S)


def _arb_rc(blk: Block) -> BlockFit:
    return arb_refine(_init(blk, _all(blk), rc=True), blk.W, blk.cfg.arb_iters, blk.cfg.use_mean)


def _stbllm(blk: Block) -> BlockFit:
    return _init(blk, stbllm_mask(blk.W, blk.x_norm, blk.n, blk.cfg.m))


def _pbs2p(blk: Block) -> BlockFit:
    c = blk.cfg
    scores = obs_scores(blk.W, blk.d)
    kept = cfs_mask(blk.W, blk.d, blk.n, c.m)
    fit = arb_refine(_init(blk, _all(blk)), blk.W, c.arb_iters, c.use_mean, blk.S)
    steps = c.m - blk.n if c.spbo_steps is None else c.spbo_steps
    return spbo(fit, blk.W, kept, scores, c.m, steps, c.spbo_iters, c.use_mean, blk.S)


@dataclass(frozen=True)
class Method:
    fit_block: Callable[[Block], BlockFit]
    uses_hessian: bool  # False: no GPTQ compensation, H unused
    col_scale: bool  # ARB-RC row x column scales


METHOD_TABLE: dict[str, Method] = {
    "rtn": Method(_rtn, uses_hessian=False, col_scale=False),
    "magnitude": Method(_magnitude, uses_hessian=False, col_scale=False),
    "billm": Method(_billm, uses_hessian=True, col_scale=False),
    "arb": Method(_arb, uses_hessian=True, col_scale=False),
    "arb-rc": Method(_arb_rc, uses_hessian=True, col_scale=True),
    "stbllm": Method(_stbllm, uses_hessian=True, col_scale=False),
    "pbs2p": Method(_pbs2p, uses_hessian=True, col_scale=False),
}
assert set(METHOD_TABLE) == set(METHODS)


def _check(W: torch.Tensor, H: torch.Tensor, cfg: CompressConfig, n: int) -> None:
    if W.dim() != 2:
        raise ConfigError(f"a linear weight must be 2-D (out x in), got shape {tuple(W.shape)}")
    R, K = W.shape
    if K % cfg.m:
        raise ConfigError(f"layer input width {K} is not a multiple of M={cfg.m}")
    if tuple(H.shape) != (K, K):
        raise ConfigError(f"Hessian shape {tuple(H.shape)} does not match layer input width {K}")
    if not 1 <= n <= cfg.m:
        raise ConfigError(f"layer N must be in 1..M={cfg.m}, got {n}")
    if not METHODS[cfg.method] and n != cfg.m:
        raise ConfigError(f"method {cfg.method} does not prune: its layer N must equal M={cfg.m}, got {n}")


def compress_layer_with_q(W: torch.Tensor, H: torch.Tensor, cfg: CompressConfig, n: int,
                          overwrite_h: bool = False) -> tuple[LayerResult, torch.Tensor]:
    """compress_layer, also returning the (R, K) Q the GPTQ loop compensated for
    (equal, bit for bit, to the result's dequantize())."""
    _check(W, H, cfg, n)
    H = H.to(W.device)  # all math runs on W's device
    cfg = cfg.resolved()
    method = METHOD_TABLE[cfg.method]
    R, K = W.shape
    x_norm = input_norms(H.detach().to(torch.float32))  # of the undamped H: before prepare_hessian may damp it
    if method.uses_hessian:
        prep = prepare_hessian(W, H, cfg.percdamp, overwrite_h)
        Wc, Hd, U = prep.W, prep.H, prep.U
    else:
        Wc, Hd, U = W.detach().to(torch.float32, copy=True), None, None

    def fit_block(s: int, e: int) -> BlockFit:
        blk = Block(W=Wc[:, s:e], S=None if Hd is None else Hd[s:e, s:e],
                    d=None if U is None else torch.diagonal(U)[s:e], x_norm=x_norm[s:e], cfg=cfg, n=n)
        return method.fit_block(blk).rounded()

    bs = cfg.block_size or K  # 0 = one block (and one scale group) per whole row
    out = gptq_loop(Wc, U, fit_block, bs, cfg.intra_block_update and U is not None)
    result = assemble(out.fits, R, K, n, cfg.m, bs, cfg.split_groups, cfg.salient,
                      method.col_scale, out.loss)
    return result, out.Q


def compress_layer(W: torch.Tensor, H: torch.Tensor, cfg: CompressConfig, n: int,
                   overwrite_h: bool = False) -> LayerResult:
    """Compresses one linear layer on W's device. W (R, K) and H (K, K) are read, never modified (but with
    overwrite_h, a float32 H on W's device is used as the working copy, damped in place: the caller's last use).

    n is this layer's N_l (from the CFS coarse stage for pbs2p, cfg.n otherwise; M for the methods
    that do not prune). Raises ConfigError when K is not a multiple of M or n is out of range.
    """
    return compress_layer_with_q(W, H, cfg, n, overwrite_h)[0]
