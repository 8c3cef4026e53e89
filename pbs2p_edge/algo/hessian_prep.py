"""GPTQ Hessian preparation: dead columns, damping, and U = upper Cholesky factor of H^-1.

Memory: at a 7B model's MLP width one K x K is 0.5 GB, so U is factored in place, in the buffer of the damped H
(the caller's own H with overwrite_h, else one copy), and nothing else of that size is made: LAPACK works on
column-major matrices, so the three factorizations (Cholesky, inverse, Cholesky again) run on the buffer's
transposed view, which torch hands to LAPACK without the column-major copy it makes of a row-major matrix; the buffer
is made exactly symmetric first (lower triangle mirrored, which is the triangle torch's own call reads) and ends
holding U^T, transposed in place block by block. U is bit for bit the out-of-place calls' (a test holds it). What the
fits need of the damped H, its diagonal and its diagonal blocks (ARB-X's Gram matrices), is copied out first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class PreparedHessian:
    W: torch.Tensor  # (R, K) float32 copy of the weight, dead columns set to 0
    U: torch.Tensor  # (K, K) float32 upper triangular, U^T U = H^-1 (H: dead diagonal set to 1, damped)
    diag: torch.Tensor  # (K,) diagonal of the damped H
    blocks: tuple[torch.Tensor, ...]  # the damped H's diagonal blocks [s:s+b, s:s+b], s = 0, b, 2b, ... (b = block);
    # empty when none were asked for
    block: int

    def S(self, s: int, e: int) -> torch.Tensor:
        """The damped H's block [s:e, s:e] for a column block of the loop (s a multiple of `block`)."""
        blk = self.blocks[s // self.block]
        assert s % self.block == 0 and blk.shape[0] == e - s, (s, e, self.block)
        return blk


def prepare_hessian(W: torch.Tensor, H: torch.Tensor, percdamp: float, overwrite_h: bool = False,
                    block: int | None = None, overwrite_w: bool = False) -> PreparedHessian:
    """Copies W and H (the caller's tensors are never modified, unless overwrite_h / overwrite_w) and factors the
    damped H.

    Dead column j (H_jj = 0: the input feature was always zero) gets H_jj = 1 and W[:, j] = 0, as in
    GPTQ. Damping adds percdamp * mean(diag H) to the diagonal. U is the upper Cholesky factor of
    H^-1: row j of U, divided by U_jj, is the OBS update that column j's error applies to later columns.
    overwrite_h: the caller's float32 H is the buffer U is factored in (it holds U afterwards, not H).
    overwrite_w: the caller's float32 W is the working copy (the GPTQ loop then updates it in place): the caller's
    last use of it, one R x K fewer (180 MB for a 7B model's MLP linear).
    block: width of the column blocks whose diagonal blocks of the damped H are kept (0 = one block of all K;
    None = none: a caller that needs only the diagonal keeps no K x K copy).
    """
    W = working_copy(W, overwrite_w)
    A = H.detach() if overwrite_h and H.dtype == torch.float32 else H.detach().to(torch.float32, copy=True)
    K = A.shape[0]
    dead = torch.diagonal(A) == 0
    A[dead, dead] = 1.0
    W[:, dead] = 0.0
    damp = percdamp * torch.diagonal(A).mean()
    A.diagonal().add_(damp)
    b = block or K
    blocks = () if block is None else tuple(A[s:s + b, s:s + b].clone() for s in range(0, K, b))
    diag = torch.diagonal(A).clone()
    _square_blocks(A, mirror=True)  # symmetric: the column-major view below is then the same matrix
    F = A.mT  # column-major: LAPACK's own layout, factored with no copy
    info = torch.empty((), dtype=torch.int32, device=A.device)
    torch.linalg.cholesky_ex(F, out=(F, info))  # F = L, lower
    if int(info) == 0:
        torch.cholesky_inverse(F, out=F)  # F = H^-1
        torch.linalg.cholesky_ex(F, upper=True, out=(F, info))  # F = U, so A = U^T
    if int(info) != 0:
        raise ConfigError(
            f"the Hessian of a {W.shape[0]}x{W.shape[1]} layer is not positive definite with "
            f"percdamp={percdamp}; use a larger percdamp or more calibration samples"
        )
    _square_blocks(A, mirror=False)  # A = U, row-major
    return PreparedHessian(W=W, U=A, diag=diag, blocks=blocks, block=b)


def working_copy(W: torch.Tensor, overwrite: bool) -> torch.Tensor:
    """W as a float32 tensor the caller may modify: W itself when `overwrite` and it already is one (contiguous),
    else a copy."""
    W = W.detach()
    return W if overwrite and W.dtype == torch.float32 and W.is_contiguous() else W.to(torch.float32, copy=True)


def _square_blocks(A: torch.Tensor, mirror: bool, step: int = 1024) -> None:
    """In place, `step` x `step` tiles at a time: mirror, A's upper triangle := its lower one's transpose;
    else A := A^T."""
    K = A.shape[0]
    for i in range(0, K, step):
        ie = min(i + step, K)
        d = A[i:ie, i:ie]
        d.copy_(torch.tril(d) + torch.tril(d, -1).T if mirror else d.T.clone())
        for j in range(ie, K, step):
            je = min(j + step, K)
            low = A[j:je, i:ie].T.clone()
            if not mirror:
                A[j:je, i:ie] = A[i:ie, j:je].T
            A[i:ie, j:je] = low
