"""allocate: one tier per tensor under a bit budget, least total estimated loss (a multiple-choice knapsack).

Each tensor has options (tier, bits it costs in total, estimated loss increase). The greedy below walks each
tensor's lower convex hull of (bits, loss), always taking the upgrade with the largest loss saved per bit that
still fits the budget. That is the Lagrangian optimum of the relaxation, and it leaves unspent at most what the
next upgrades cost: on SmolLM2 one feed-forward linear at one step, under 0.3 % of a 2.5-bit budget.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Option:
    tier: str
    bits: int  # everything stored for the tensor in this tier
    loss: float  # estimated increase of the end loss (>= 0)


def _hull(options: list[Option]) -> list[Option]:
    """The options on the lower convex hull of (bits, loss), by increasing bits (decreasing loss)."""
    pts = sorted(options, key=lambda o: (o.bits, o.loss))
    frontier: list[Option] = []
    for o in pts:  # drop dominated options: more bits and no less loss
        if not frontier or o.loss < frontier[-1].loss:
            frontier.append(o)
    hull: list[Option] = []
    for o in frontier:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is above the segment a -> o: its slope from a is no steeper than o's
            if (b.loss - a.loss) * (o.bits - a.bits) >= (o.loss - a.loss) * (b.bits - a.bits):
                hull.pop()
            else:
                break
        hull.append(o)
    return hull


def allocate(options: dict[str, list[Option]], budget_bits: float) -> dict[str, str]:
    """tensor name -> chosen tier; the chosen bits sum to at most budget_bits. ConfigError when even the
    cheapest option of every tensor does not fit."""
    if not options:
        return {}
    hulls = {name: _hull(opts) for name, opts in options.items()}
    for name, opts in options.items():
        if not opts:
            raise ConfigError(f"tensor {name} has no tier to choose from")
    at = {name: 0 for name in hulls}
    spent = sum(h[0].bits for h in hulls.values())
    if spent > budget_bits:
        raise ConfigError(f"the budget of {budget_bits / 8e6:.2f} MB is below the smallest file these tiers make "
                          f"({spent / 8e6:.2f} MB for the allocated tensors alone)")
    heap = []

    def push(name: str) -> None:
        h, i = hulls[name], at[name]
        if i + 1 < len(h):
            gain = (h[i].loss - h[i + 1].loss) / (h[i + 1].bits - h[i].bits)
            heapq.heappush(heap, (-gain, name, i))

    for name in sorted(hulls):
        push(name)
    while heap:
        _, name, i = heapq.heappop(heap)
        h = hulls[name]
        extra = h[i + 1].bits - h[i].bits
        if spent + extra > budget_bits:
            continue  # this tensor stays; a cheaper upgrade of another may still fit
        spent += extra
        at[name] = i + 1
        push(name)
    return {name: hulls[name][i].tier for name, i in at.items()}
