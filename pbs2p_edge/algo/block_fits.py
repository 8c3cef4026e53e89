"""The block fit of each compression method (algo/methods.py names them): one column block -> BlockFit.

Each is a small composition of the shared pieces (nm_mask, billm_init, arb_refine, spbo, cfs), applied inside the
GPTQ loop by compress_layer. Choices (see each piece's docstring for its own):
- "arb" is ARB-X: refinement in the norm of the block of the damped H (proportional to X^T X);
  "arb-rc" refines row x column scales in the plain norm (ARB-LLM's RC has no X term).
- "pbs2p": OBS scores w^2 / U_jj^2 on the compensated block -> CFS N_l:M mask; the structure (salient columns /
  split groups, per cfg.resolved(): default salient + 2 groups as in ARB-LLM) is searched on the UNPRUNED block,
  fitted with ARB-X (arb_iters), then SPBO prunes progressively in the same norm (spbo_steps, spbo_iters). With
  n == M it is exactly "arb" with the same structure.
- "stbllm": mask by |W| * sqrt(diag H) of the caller's (undamped) H, computed on the compensated block; BiLLM
  structure searched over the kept entries only.
- Salient saliency is W^2 / U_jj^2 when a Hessian is used, |W| otherwise (rtn/magnitude with salient=True).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .arb import arb_refine
from .billm import billm_init
from .block_fit import BlockFit
from .cfs import cfs_mask, obs_scores
from .config import CompressConfig
from .nm_mask import nm_mask
from .spbo import spbo
from .stbllm import stbllm_mask


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


def rtn(blk: Block) -> BlockFit:
    return _init(blk, _all(blk))


def magnitude(blk: Block) -> BlockFit:
    return _init(blk, nm_mask(blk.W.abs(), blk.n, blk.cfg.m))


def billm(blk: Block) -> BlockFit:
    return _init(blk, _all(blk))


def arb(blk: Block) -> BlockFit:
    return arb_refine(_init(blk, _all(blk)), blk.W, blk.cfg.arb_iters, blk.cfg.use_mean, blk.S)


def arb_rc(blk: Block) -> BlockFit:
    return arb_refine(_init(blk, _all(blk), rc=True), blk.W, blk.cfg.arb_iters, blk.cfg.use_mean)


def stbllm(blk: Block) -> BlockFit:
    return _init(blk, stbllm_mask(blk.W, blk.x_norm, blk.n, blk.cfg.m))


def pbs2p(blk: Block) -> BlockFit:
    c = blk.cfg
    scores = obs_scores(blk.W, blk.d)
    kept = cfs_mask(blk.W, blk.d, blk.n, c.m)
    fit = arb_refine(_init(blk, _all(blk)), blk.W, c.arb_iters, c.use_mean, blk.S)
    steps = c.m - blk.n if c.spbo_steps is None else c.spbo_steps
    return spbo(fit, blk.W, kept, scores, c.m, steps, c.spbo_iters, c.use_mean, blk.S)
