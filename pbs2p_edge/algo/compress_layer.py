"""compress_layer: one linear layer (W, H) -> LayerResult, for every method of algo/methods.py.

The method's block fit (algo/block_fits.py) is applied to each column block inside the GPTQ loop; the methods that
use no Hessian (rtn, magnitude) run the same block loop without compensation. Scales are rounded to float16 values
before a block's Q is formed, so the GPTQ compensation sees exactly what the packed file will reproduce.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ConfigError
from . import block_fits
from .block_fit import Assembly, BlockFit
from .block_fits import Block
from .config import CompressConfig
from .gptq_loop import gptq_loop
from .hessian_prep import prepare_hessian, working_copy
from .methods import METHODS
from .result import LayerResult
from .stbllm import input_norms

# each method's block fit, resolved once: a record naming a missing function fails at import, not mid-run
FITS: dict[str, Callable[[Block], BlockFit]] = {name: getattr(block_fits, m.fit) for name, m in METHODS.items()}


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
    if not METHODS[cfg.method].prunes and n != cfg.m:
        raise ConfigError(f"method {cfg.method} does not prune: its layer N must equal M={cfg.m}, got {n}")


def _compress(W: torch.Tensor, H: torch.Tensor, cfg: CompressConfig, n: int, overwrite_h: bool,
              keep_q: bool, overwrite_w: bool = False) -> tuple[LayerResult, torch.Tensor | None]:
    _check(W, H, cfg, n)
    H = H.to(W.device)  # all math runs on W's device
    cfg = cfg.resolved()
    method = METHODS[cfg.method]
    fit = FITS[cfg.method]
    R, K = W.shape
    bs = cfg.block_size or K  # 0 = one block (and one scale group) per whole row
    x_norm = input_norms(H.detach().to(torch.float32))  # of the undamped H: before prepare_hessian may damp it
    if method.uses_hessian:
        prep = prepare_hessian(W, H, cfg.percdamp, overwrite_h, bs, overwrite_w)
        Wc, U = prep.W, prep.U
    else:
        prep, Wc, U = None, working_copy(W, overwrite_w), None

    def fit_block(s: int, e: int) -> BlockFit:
        blk = Block(W=Wc[:, s:e], S=None if prep is None else prep.S(s, e),
                    d=None if U is None else torch.diagonal(U)[s:e], x_norm=x_norm[s:e], cfg=cfg, n=n)
        return fit(blk).rounded()

    asm = Assembly(R, K, bs, cfg.split_groups, cfg.salient, method.col_scale, Wc.device)
    out = gptq_loop(Wc, U, fit_block, bs, asm.add, cfg.intra_block_update and U is not None, keep_q)
    return asm.result(n, cfg.m, out.loss), out.Q


def compress_layer_with_q(W: torch.Tensor, H: torch.Tensor, cfg: CompressConfig, n: int,
                          overwrite_h: bool = False) -> tuple[LayerResult, torch.Tensor]:
    """compress_layer, also returning the (R, K) Q the GPTQ loop compensated for
    (equal, bit for bit, to the result's dequantize())."""
    return _compress(W, H, cfg, n, overwrite_h, keep_q=True)


def compress_layer(W: torch.Tensor, H: torch.Tensor, cfg: CompressConfig, n: int,
                   overwrite_h: bool = False, overwrite_w: bool = False) -> LayerResult:
    """Compresses one linear layer on W's device. W (R, K) and H (K, K) are read, never modified (but with
    overwrite_h, a float32 H on W's device is the buffer U is factored in, and with overwrite_w a float32 W is the
    working copy the loop updates: the caller's last use of them).

    n is this layer's N_l (from the CFS coarse stage for pbs2p, cfg.n otherwise; M for the methods
    that do not prune). Raises ConfigError when K is not a multiple of M or n is out of range.
    """
    return _compress(W, H, cfg, n, overwrite_h, keep_q=False, overwrite_w=overwrite_w)[0]
