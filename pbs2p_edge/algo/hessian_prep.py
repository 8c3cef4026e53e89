"""GPTQ Hessian preparation: dead columns, damping, and U = upper Cholesky factor of H^-1."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class PreparedHessian:
    W: torch.Tensor  # (R, K) float32 copy of the weight, dead columns set to 0
    H: torch.Tensor  # (K, K) float32, dead diagonal set to 1, damped
    U: torch.Tensor  # (K, K) float32 upper triangular, U^T U = H^-1


def prepare_hessian(W: torch.Tensor, H: torch.Tensor, percdamp: float, overwrite_h: bool = False) -> PreparedHessian:
    """Copies W and H (the caller's tensors are never modified, unless overwrite_h) and factors the damped H.

    Dead column j (H_jj = 0: the input feature was always zero) gets H_jj = 1 and W[:, j] = 0, as in
    GPTQ. Damping adds percdamp * mean(diag H) to the diagonal. U is the upper Cholesky factor of
    H^-1: row j of U, divided by U_jj, is the OBS update that column j's error applies to later columns.
    overwrite_h: the caller's float32 H becomes the damped H (no copy: one K x K fewer in memory, 0.5 GB at a
    7B model's MLP width); each factor is freed as soon as the next is made, so at most three K x K live at once.
    """
    W = W.detach().to(torch.float32, copy=True)
    H = H.detach() if overwrite_h and H.dtype == torch.float32 else H.detach().to(torch.float32, copy=True)
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    damp = percdamp * torch.diagonal(H).mean()
    H.diagonal().add_(damp)
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) == 0:
        Hinv = torch.cholesky_inverse(L)
        del L
        U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
        del Hinv
    if int(info) != 0:
        raise ConfigError(
            f"the Hessian of a {W.shape[0]}x{W.shape[1]} layer is not positive definite with "
            f"percdamp={percdamp}; use a larger percdamp or more calibration samples"
        )
    return PreparedHessian(W=W, H=H, U=U)
