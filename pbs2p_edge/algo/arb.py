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

ARB-X without column scales (ARB-X itself, and PBS2P's refits) runs the same iteration in per-row
coordinates (`_refine_x`): W_hat = sum_k theta_k e_k over the P parameters theta (mu, alpha_0,
alpha_1 per region) and their bases e_k, which change only where a B step flips a sign (or SPBO
prunes). With G[k, j] = <e_k, e_j>_S and WSe_k = <W, e_k>_S kept per row (recomputed for the rows
whose signs changed), <E, e_k>_S = WSe_k - (G theta)_k, the scale pass is P scalar coordinate
updates per row, delta_k = (<e_k, E>_S - sum_{j<k} delta_j G[k, j]) / G[k, k] (one batched
triangular solve; the same minimisers in the same order as updating E after every parameter), and
a row's error ||W||_S^2 - 2 theta.WSe + theta' G theta needs no (R, b) pass. Only the B step and its
guard touch every element: the new signs' error is computed directly, and only rows that flipped a
kept sign can fail the guard. Same iterates up to float32 rounding (a rounding-tipped near-tie can
send one row its own way; tests/algo/test_arb.py pins both). On SmolLM2-shaped layers ARB-X and
PBS2P's compress_layer run 1.2-1.3x faster than with the previous form, which kept E and reverted
rows elementwise (bench/results/compress_speed.md), itself 1.2x faster than the direct form that the
plain norm and ARB-RC (whose column step changes every basis each iteration) still use.

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
    near = fit.nearest(W)
    E = W - near.W_hat  # W_hat equals fit.dequant() with the new signs
    worse = ((E @ S) * E).sum(1)[:, None] > before[:, None]  # (R, 1)
    fit.s0 = torch.where(worse, fit.s0, near.s0)
    if near.s1 is not None:
        fit.s1 = torch.where(worse, fit.s1, near.s1)


class _XState:
    """ARB-X bookkeeping for one arb_refine call, all per row: the bases e_k (R, P, b), their Gram
    G[k, j] = <e_k, e_j>_S and WSe[k] = <W, e_k>_S, from which the scale pass and the row errors follow.

    Bases are stored mu bases first (they depend on the mask only), then the sign bases, so a sign
    change refreshes one contiguous slice; `order` lists the storage slots in descent order.
    """

    def __init__(self, fit: BlockFit, W: torch.Tensor, use_mean: bool, S: torch.Tensor):
        self.S = S
        self.params: list[tuple[str, int, int]] = []  # descent order: per region mu, alpha_0, alpha_1
        for r in fit.regions:
            if use_mean:
                self.params.append(("mu", 0, r))
            self.params.append(("alpha", 0, r))
            if r == 0 and fit.s1 is not None:
                self.params.append(("alpha", 1, r))
        stored = sorted(range(len(self.params)), key=lambda k: self.params[k][0] != "mu")  # stable
        self.signed = [self.params[k] for k in stored if self.params[k][0] == "alpha"]
        self.n_mu = len(self.params) - len(self.signed)
        self.order = torch.tensor([stored.index(k) for k in range(len(self.params))], device=S.device)
        R, b = fit.kept.shape
        P = len(self.params)
        self.WS = W @ S  # (R, b)
        self.w2 = (self.WS * W).sum(1).double()  # (R,) ||W||_S^2
        self.e = fit.s0.new_empty(R, P, b)  # (R, P, b), row-major for per-row updates
        self.G = fit.s0.new_empty(R, P, P)  # descent order, like WSe
        self.WSe = fit.s0.new_empty(R, P)
        self.g = {r: (fit.kept & (fit.region == r)).to(fit.s0.dtype) for r in fit.regions}  # (R, b)
        for i, k in enumerate(k for k in stored if self.params[k][0] == "mu"):
            self.e[:, i] = self.g[self.params[k][2]]
        self.Se_mu = self.e[:, :self.n_mu] @ S  # (R, n_mu, b)
        self.refresh(fit, slice(None))

    def refresh(self, fit: BlockFit, rows) -> None:
        """Recomputes the sign bases, G and WSe of `rows` (a slice or an index tensor)."""
        signed = self.e.new_empty(self.e[rows].shape[0], len(self.signed), self.e.shape[2])
        for i, (_, p, r) in enumerate(self.signed):
            signed[:, i] = (fit.s0 if p == 0 else fit.s1)[rows] * self.g[r][rows]
        self.e[rows, self.n_mu:] = signed
        e = self.e[rows]
        Se = torch.cat([self.Se_mu[rows], signed @ self.S], 1)
        o = self.order
        self.G[rows] = (Se @ e.transpose(1, 2))[:, o][:, :, o]
        self.WSe[rows] = (self.WS[rows][:, None, :] @ e.transpose(1, 2)).squeeze(1)[:, o]

    def theta(self, fit: BlockFit) -> torch.Tensor:
        """(R, P) float64: the parameters in descent order."""
        return torch.stack([(fit.mu[r] if name == "mu" else fit.alpha[p, r]) for name, p, r in self.params], 1).double()

    def descent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """WSe (R, P) and G (R, P, P) in descent order, float64."""
        return self.WSe.double(), self.G.double()


def _take_rows(rows: torch.Tensor, take: torch.Tensor, new: tuple, old: tuple) -> tuple:
    """Tensors equal to `new` in the taken rows (index `rows`, mask `take`) and to `old` elsewhere,
    copying whichever side has fewer rows into the other (both sides are this call's to overwrite)."""
    if 2 * rows.numel() <= take.numel():
        for n, o in zip(new, old):
            o[rows] = n[rows]
        return old
    keep = (~take).nonzero().squeeze(1)
    for n, o in zip(new, old):
        n[keep] = o[keep]
    return new


def _refine_x(fit: BlockFit, W: torch.Tensor, iters: int, use_mean: bool, S: torch.Tensor) -> None:
    st = _XState(fit, W, use_mean, S)
    fit.s0 = fit.s0.clone()  # updated in place below
    if fit.s1 is not None:
        fit.s1 = fit.s1.clone()
    pos0 = fit.s0 > 0
    pos1 = None if fit.s1 is None else fit.s1 > 0
    for _ in range(iters):
        # scale pass: coordinate descent in the (R, P) coordinates. With theta the parameters and
        # W_hat = sum_k theta_k e_k, <e_k, E>_S = WSe_k - (G theta)_k; the descent's
        # delta_k = (num_k - sum_{j<k} delta_j G[k, j]) / G[k, k] for k = 0, 1, ... is the forward
        # substitution of tril(G) delta = num; an empty basis (G[k, k] = 0, its row of G and num_k 0)
        # gets a unit diagonal, hence delta_k = 0
        WSe, G = st.descent()
        theta = st.theta(fit)
        num = WSe - (G @ theta[:, :, None]).squeeze(2)
        L = G.tril()
        diag = L.diagonal(dim1=1, dim2=2)
        diag.copy_(torch.where(diag > 0, diag, 1.0))
        delta = torch.linalg.solve_triangular(L, num[:, :, None], upper=False).squeeze(2)
        for k, (name, p, r) in enumerate(st.params):
            if name == "mu":
                fit.mu[r] += delta[:, k].float()
            else:
                fit.alpha[p, r] += delta[:, k].float()
        # the row errors after the scale pass: ||W - sum_k theta_k e_k||_S^2
        theta = st.theta(fit)
        before = st.w2 - 2 * (theta * WSe).sum(1) + (theta[:, None, :] @ G @ theta[:, :, None]).reshape(-1)
        # B step, kept per row only when it does not raise the row's error
        near = fit.nearest(W)
        E1 = W - near.W_hat
        err1 = ((E1 @ S) * E1).sum(1).double()
        flip = near.pos0 ^ pos0 if pos1 is None else (near.pos0 ^ pos0) | (near.pos1 ^ pos1)
        flipped = (flip & fit.kept).view(torch.uint8).amax(1).bool()  # any(1), without its slow path
        take = flipped & (err1 <= before)  # only flipped rows' W_hat, and error, can have changed
        rows = take.nonzero().squeeze(1)
        if not rows.numel():
            continue
        pos0, fit.s0 = _take_rows(rows, take, (near.pos0, near.s0), (pos0, fit.s0))
        if pos1 is not None:
            pos1, fit.s1 = _take_rows(rows, take, (near.pos1, near.s1), (pos1, fit.s1))
        st.refresh(fit, slice(None) if 2 * rows.numel() > W.shape[0] else rows)


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
