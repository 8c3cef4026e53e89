"""ARB: alternating refined binarization of a BlockFit (ARB-LLM arXiv 2410.03129), plain, -X and -RC.

One coordinate-descent step per parameter, in the norm ||E||_S^2 = sum_rows E S E^T
(S = I: plain ARB; S = the block of H, proportional to X^T X: ARB-X). For a parameter theta with
basis e (the tensor it multiplies: mu -> region indicator, alpha_p -> plane-p signs on the region,
both times the column scale) the exact minimiser given the rest is
    theta += <E, e>_S / <e, e>_S,            E = W - W_hat,
which is METHOD.md's closed forms mu = (r - alpha b)^T S g / g^T S g and
alpha = b^T S (r - mu g) / b^T S b (and, with S = I, mu = mean(w - alpha B), alpha = mean(B (w - mu))).
Order per iteration: for each region mu -> alpha_0 -> alpha_1; ARB-RC then the column scales
(least squares per column, plain norm only); then the B step (nearest level).

ARB-X without column scales (ARB-X itself, and PBS2P's refits) runs an incremental form of the same
iteration (`_refine_x`): the bases e_k change only where a B step flips a sign, so S e_k and the
per-row Gram matrix G[k, j] = <e_k, e_j>_S are kept and recomputed for the rows that changed; the
scale pass is then P scalar coordinate updates per row, delta_k = (<e_k, E>_S - sum_{j<k} delta_j
G[k, j]) / G[k, k] (one batched triangular solve), the same minimisers in the same order as updating
E after every parameter, and the B-step guard's "before" error follows from the same (R, P)
quantities. E is recomputed exactly (W - W_hat) after every B step, and only rows that flipped a
kept sign can fail the guard. Same iterates up to float32 rounding (a rounding-tipped near-tie can
send one row its own way; tests/algo/test_arb.py pins both); on SmolLM2-shaped layers ARB-X and
PBS2P compress_layer run 1.2x faster than with the direct form (bench/results/compress_speed.md),
which the plain norm and ARB-RC (whose column step changes every basis each iteration) still use.

[choice] In the S-norm the elementwise B step is not a minimiser, so it is kept per row only when
it does not increase that row's error; this makes every iteration monotone (in the plain norm the
B step is exact and the guard never fires). Empty regions keep alpha = mu = 0 and column scale 1.
"""

from __future__ import annotations

import torch

from .block_fit import BlockFit


def _apply(S: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return x if S is None else x @ S


def row_error(W: torch.Tensor, fit: BlockFit, S: torch.Tensor | None = None) -> torch.Tensor:
    """(R,) per-row ||W - W_hat||_S^2 of the block (pruned entries count with W_hat = 0)."""
    E = W - fit.dequant()
    return (_apply(S, E) * E).sum(1)


def _fit_scales_direct(fit: BlockFit, W: torch.Tensor, use_mean: bool, S: torch.Tensor | None) -> None:
    E = W - fit.dequant()
    SE = _apply(S, E)
    for r in fit.regions:
        g = (fit.kept & (fit.region == r)).to(W.dtype)
        if fit.col is not None:
            g = g * fit.col[r][None]
        params = ([("mu", None, g)] if use_mean else []) + [("alpha", 0, fit.s0 * g)]
        if r == 0 and fit.s1 is not None:
            params.append(("alpha", 1, fit.s1 * g))
        for name, p, e in params:
            Se = _apply(S, e)
            den = (Se * e).sum(1)
            delta = torch.where(den > 0, (SE * e).sum(1) / den.clamp_min(1e-30), 0.0)  # (R,)
            if name == "mu":
                fit.mu[r] += delta
            else:
                fit.alpha[p, r] += delta
            E -= delta[:, None] * e
            if S is not None:
                SE -= delta[:, None] * Se


def _fit_columns(fit: BlockFit, W: torch.Tensor) -> None:
    """ARB-RC column step: col[r, j] = sum_i u w / sum_i u^2 over region r's kept entries of column j,
    u = the row-scaled value without its column scale (plain norm)."""
    u = fit.dequant(use_col=False)
    for r in fit.regions:
        g = fit.kept & (fit.region == r)
        den = (u.square() * g).sum(0)
        fit.col[r] = torch.where(den > 0, (u * W * g).sum(0) / den.clamp_min(1e-30), 1.0)


def _sign_step_direct(fit: BlockFit, W: torch.Tensor, S: torch.Tensor | None) -> None:
    if S is None:  # plain norm: each element's nearest level cannot raise the row error, no guard
        fit.resign(W)
        return
    before = row_error(W, fit, S)
    s0, s1, W_hat = fit.nearest(W)
    E = W - W_hat  # W_hat equals fit.dequant() with the new signs
    worse = ((E @ S) * E).sum(1)[:, None] > before[:, None]  # (R, 1)
    fit.s0 = torch.where(worse, fit.s0, s0)
    if s1 is not None:
        fit.s1 = torch.where(worse, fit.s1, s1)


class _XState:
    """ARB-X bookkeeping for one arb_refine call: the bases, S times them and their per-row Gram."""

    def __init__(self, fit: BlockFit, use_mean: bool, S: torch.Tensor):
        self.S = S
        self.params: list[tuple[str, int, int]] = []
        for r in fit.regions:
            if use_mean:
                self.params.append(("mu", 0, r))
            self.params.append(("alpha", 0, r))
            if r == 0 and fit.s1 is not None:
                self.params.append(("alpha", 1, r))
        regions = torch.tensor(fit.regions, device=fit.region.device)
        self.g = (fit.kept[None] & (fit.region[None] == regions[:, None, None])).to(fit.s0.dtype)  # (regions, R, b)
        self.slot = {r: i for i, r in enumerate(fit.regions)}
        R, b = fit.kept.shape
        self.e = fit.s0.new_empty(R, len(self.params), b)  # (R, P, b), row-major for per-row updates
        self.Se = torch.empty_like(self.e)
        self.G = fit.s0.new_empty(R, len(self.params), len(self.params))
        self.refresh(fit, slice(None))

    def refresh(self, fit: BlockFit, rows) -> None:
        """Recomputes the bases, S e and G of `rows` (a slice or an index tensor) from fit's signs."""
        for k, (name, p, r) in enumerate(self.params):
            g = self.g[self.slot[r]][rows]
            self.e[rows, k] = g if name == "mu" else (fit.s0 if p == 0 else fit.s1)[rows] * g
        e = self.e[rows]
        Se = e @ self.S
        self.Se[rows] = Se
        self.G[rows] = Se @ e.transpose(1, 2)


def _refine_x(fit: BlockFit, W: torch.Tensor, iters: int, use_mean: bool, S: torch.Tensor) -> None:
    st = _XState(fit, use_mean, S)
    R = W.shape[0]
    E = W - fit.dequant()
    err = ((E @ S) * E).sum(1)  # (R,) ||E||_S^2 of the current fit
    pos0 = fit.s0 > 0
    pos1 = None if fit.s1 is None else fit.s1 > 0
    for _ in range(iters):
        # scale pass: coordinate descent in the (R, P) coordinates
        # delta_k = (num_k - sum_{j<k} delta_j G[k, j]) / G[k, k] for k = 0, 1, ... is the forward
        # substitution of tril(G) delta = num; an empty basis (G[k, k] = 0, its row of G and num_k 0)
        # gets a unit diagonal, hence delta_k = 0
        num = (E[:, None, :] @ st.Se.transpose(1, 2)).squeeze(1)  # (R, P): <e_k, E>_S
        L = st.G.tril()
        diag = L.diagonal(dim1=1, dim2=2)
        diag.copy_(torch.where(diag > 0, diag, 1.0))
        delta = torch.linalg.solve_triangular(L, num[:, :, None], upper=False).squeeze(2)
        for k, (name, p, r) in enumerate(st.params):
            if name == "mu":
                fit.mu[r] += delta[:, k]
            else:
                fit.alpha[p, r] += delta[:, k]
        # the row errors after the scale pass, from the (R, P) quantities: ||E - sum_k delta_k e_k||_S^2
        d64 = delta.double()
        before = (err.double() - 2 * (d64 * num.double()).sum(1)
                  + (d64[:, None, :] @ st.G.double() @ d64[:, :, None]).reshape(-1))
        # B step, kept per row only when it does not raise the row's error
        new0, new1, W_hat = fit.nearest_bits(W)  # W_hat equals fit.dequant() with the new signs
        E1 = W - W_hat
        err1 = ((E1 @ S) * E1).sum(1)
        flip = new0 ^ pos0 if new1 is None else (new0 ^ pos0) | (new1 ^ pos1)
        flipped = (flip & fit.kept).any(1)  # only these rows' W_hat, and error, can have changed
        worse = flipped & (err1.double() > before)
        rows = worse.nonzero().squeeze(1)
        if 4 * rows.numel() > R:  # many rows keep their signs (usual after the first iterations)
            Eo = W - fit.dequant()  # the old signs with the new scales
            wc = worse[:, None]
            new0 = torch.where(wc, pos0, new0)
            new1 = None if new1 is None else torch.where(wc, pos1, new1)
            E1 = torch.where(wc, Eo, E1)
            err1 = torch.where(worse, ((Eo @ S) * Eo).sum(1), err1)
        elif rows.numel():  # a few rows keep their signs
            new0[rows] = pos0[rows]
            if new1 is not None:
                new1[rows] = pos1[rows]
            E1[rows] = W[rows] - fit.dequant(rows=rows)
            err1[rows] = ((E1[rows] @ S) * E1[rows]).sum(1)
        changed = (flipped & ~worse).nonzero().squeeze(1)
        pos0, pos1 = new0, new1
        fit.s0 = pos0.to(W.dtype) * 2 - 1
        if pos1 is not None:
            fit.s1 = pos1.to(W.dtype) * 2 - 1
        E, err = E1, err1
        if changed.numel():
            st.refresh(fit, slice(None) if 2 * changed.numel() > R else changed)


def arb_refine(fit: BlockFit, W: torch.Tensor, iters: int, use_mean: bool,
               S: torch.Tensor | None = None) -> BlockFit:
    """Refines `fit` of W (R, b) in place over its kept entries for `iters` alternations and
    returns it. S (b, b): ARB-X's block Gram matrix; None: plain norm. fit.col present: ARB-RC."""
    if S is not None and fit.col is None:
        if iters > 0:
            _refine_x(fit, W, iters, use_mean, S)
        return fit
    for _ in range(iters):
        _fit_scales_direct(fit, W, use_mean, S)
        if fit.col is not None:
            _fit_columns(fit, W)
        _sign_step_direct(fit, W, S)
    return fit
