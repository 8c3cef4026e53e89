"""ARB-X in per-row coordinates: the refinement of one block in the norm of its Gram matrix S, kept
across SPBO's prune-and-refit steps.

W_hat = sum_k theta_k e_k over a row's P parameters theta (mu per region, alpha_0 per region, alpha_1
of the salient region) and their bases e_k (region indicator on the kept entries; plane signs there).
Per row the refiner keeps e (R, P, b), S e, G[k, j] = <e_k, e_j>_S and WSe_k = <W, e_k>_S. Then:

- Scale pass: [choice] all of a row's scales at once, exactly: G theta = WSe (a P x P solve per row).
  This is what repeating ARB's sequential closed forms mu -> alpha_0 -> alpha_1 (METHOD.md) converges
  to; one sweep of them, as the paper runs, stops short of it. Each scale pass therefore lands on the
  best scales for the present signs.
- B step: every element's nearest level (BlockFit.nearest). In the S-norm that is not a minimiser, so
  a row takes its new signs only when they do not raise its error; [choice] a row where they would
  takes only the flips that each lower the error on their own, when together they do not raise it
  either. Every iteration is monotone.
- Fixed points: a row that keeps its signs gets the same scales from the next solve, hence the same
  B step: it is done, and leaves the active set. On SmolLM2's layers about a fifth of the rows is
  still active at the third iteration (a tenth after an SPBO step), so most of the work is in the
  first two.
- Cost per iteration on n active rows: the solve, the nearest levels, one (n, b) x (b, b) product for
  the error change of the move d of W_hat, -2 d.S E + d S d (S E comes from the stored S e), one more
  for the rows that get the second chance, and fresh bases, S e and G for the rows that changed. (A B
  step flips 3-7 of 128 signs per row; updating S e from gathered rows of S at those entries only was
  measured slower on CPU than the dense product at b = 128.) An SPBO step recomputes every basis once.

[choice] Empty regions keep alpha = mu = 0. Collinear bases (a region whose kept signs agree, a
salient region of one element) make G singular; a relative ridge picks the smaller scales among
equal W_hat.
"""

from __future__ import annotations

import torch

from .block_fit import BlockFit

RIDGE = 1e-6  # relative to G[k, k]: above float32 rounding of G, far below any real scale difference


def _solve(G: torch.Tensor, WSe: torch.Tensor) -> torch.Tensor:
    """(n, P) float64 theta with G theta = WSe per row; an empty basis (G[k, k] = 0) gets theta_k = 0."""
    G = G.double()
    d = G.diagonal(dim1=1, dim2=2)
    A = G + torch.diag_embed(torch.where(d > 0, d * RIDGE, 1.0))
    L, info = torch.linalg.cholesky_ex(A)
    theta = torch.cholesky_solve(WSe.double()[:, :, None], L).squeeze(2)
    bad = (info != 0).nonzero().squeeze(1)
    if bad.numel():  # not positive definite even with the ridge (not seen in practice): least squares
        sol = torch.linalg.lstsq(A[bad].cpu(), WSe[bad, :, None].double().cpu(), driver="gelsd").solution
        theta[bad] = sol.squeeze(2).to(theta)
    return theta


def _error_change(d: torch.Tensor, SE: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """(n,) float64 change of ||E||_S^2 per row when W_hat moves by d (n, b): (d S - 2 S E).d"""
    return ((d @ S - 2 * SE) * d).sum(1, dtype=torch.float64)


def refines_in_x(fit: BlockFit, S: torch.Tensor | None) -> bool:
    """Whether XRefiner serves this fit: an S-norm refinement of row scales (no ARB-RC column scales)."""
    return S is not None and fit.col is None


class XRefiner:
    """ARB-X refinement of one fit of W (R, b) in the norm of S (b, b); refines `fit` in place.

    The fit's signs, alpha and mu are replaced by copies on construction; its other tensors are read.
    """

    def __init__(self, fit: BlockFit, W: torch.Tensor, use_mean: bool, S: torch.Tensor):
        if not refines_in_x(fit, S):
            raise ValueError("XRefiner refines row scales in an S-norm; the plain norm and ARB-RC's column "
                             "scales use arb_refine's direct form")
        self.fit, self.W, self.S = fit, W, S
        fit.s0 = fit.s0.clone()
        fit.s1 = None if fit.s1 is None else fit.s1.clone()
        fit.alpha, fit.mu = fit.alpha.clone(), fit.mu.clone()
        regions = fit.regions
        # (name, plane, region) per parameter, mu bases first (they depend on the mask only)
        self.params = [("mu", 0, r) for r in regions if use_mean] + [("alpha", 0, r) for r in regions]
        if fit.s1 is not None:
            self.params.append(("alpha", 1, 0))
        self.n_mu = len(regions) if use_mean else 0
        self.WS = W @ S  # (R, b)
        R, b, P = *W.shape, len(self.params)
        self.g = {r: (fit.kept & (fit.region == r)).to(W.dtype) for r in regions}  # (R, b) region indicators
        self.e, self.Se = W.new_empty(R, P, b), W.new_empty(R, P, b)
        self.G, self.WSe = W.new_empty(R, P, P), W.new_empty(R, P)
        self._set_bases(slice(None), 0)

    def _basis(self, k: int, rows) -> torch.Tensor:
        """(n, b) basis k of `rows` from the fit's present mask, regions and signs."""
        name, p, r = self.params[k]
        g = self.g[r][rows]
        return g if name == "mu" else g * (self.fit.s0 if p == 0 else self.fit.s1)[rows]

    def _set_bases(self, rows, first: int) -> None:
        """Recomputes bases first.. of `rows`, their S e, and the rows' G and WSe."""
        e = torch.stack([self._basis(k, rows) for k in range(first, len(self.params))], 1)  # (n, P', b)
        self.e[rows, first:] = e
        self.Se[rows, first:] = e @ self.S
        e, Se = self.e[rows], self.Se[rows]
        self.G[rows] = Se @ e.transpose(1, 2)
        self.WSe[rows] = (self.WS[rows][:, None, :] @ e.transpose(1, 2)).squeeze(1)

    def prune(self, drop: torch.Tensor) -> None:
        """Removes the kept entries where drop (R, b) is True from the fit, and updates the bases."""
        self.fit.kept = self.fit.kept & ~drop
        self.g = {r: g * ~drop for r, g in self.g.items()}
        self._set_bases(slice(None), 0)

    def refine(self, iters: int) -> None:
        """Up to `iters` alternations (scale pass, B step), stopping once every row is at a fixed point."""
        fit, W, S = self.fit, self.W, self.S
        R = W.shape[0]
        act = torch.arange(R, device=W.device)  # rows that can still change
        for _ in range(iters):
            every = act.numel() == R
            rows = slice(None) if every else act  # views, not copies, while every row is active
            theta = self._set_theta(rows, _solve(self.G[rows], self.WSe[rows]))  # (n, P) as stored
            W_hat = (theta[:, None, :] @ self.e[rows]).squeeze(1)  # (n, b)
            SE = self.WS[rows] - (theta[:, None, :] @ self.Se[rows]).squeeze(1)  # S (W - W_hat)
            sub = fit if every else fit.rows(act)
            near = sub.nearest(W[rows])
            flip = near.s0 != sub.s0
            if fit.s1 is not None:
                flip |= near.s1 != sub.s1
            flip &= sub.kept
            flipped = flip.view(torch.uint8).amax(1).bool()  # any(1), without its slow path
            d = (near.W_hat - W_hat) * flip  # the move of W_hat (0 where no sign flips)
            take = flipped & (_error_change(d, SE, S) <= 0)
            rej = (flipped & ~take).nonzero().squeeze(1)
            if rej.numel():  # second chance: the flips that each lower the error on their own
                dr, SEr = d[rej], SE[rej]
                part = flip[rej] & (dr * (dr * S.diagonal() - 2 * SEr) < 0)
                take[rej] = part.view(torch.uint8).amax(1).bool() & (_error_change(dr * part, SEr, S) <= 0)
                flip[rej] = part
            # a row that keeps its signs is at a fixed point: it leaves the active set
            act, flip = act[take], flip[take]
            if not act.numel():
                break
            fit.s0[act] = torch.where(flip, near.s0[take], fit.s0[act])
            if fit.s1 is not None:
                fit.s1[act] = torch.where(flip, near.s1[take], fit.s1[act])
            self._set_bases(act, self.n_mu)

    def _set_theta(self, rows, theta: torch.Tensor) -> torch.Tensor:
        """Writes theta (n, P) of `rows` into the fit's mu and alpha; returns it as stored (float32)."""
        theta = theta.float()
        for k, (name, p, r) in enumerate(self.params):
            if name == "mu":
                self.fit.mu[r, rows] = theta[:, k]
            else:
                self.fit.alpha[p, r, rows] = theta[:, k]
        return theta
