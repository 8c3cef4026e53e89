"""allocate: one tier per tensor under a bit budget, least total estimated loss (a multiple-choice knapsack).

Each tensor has options (tier, bits it costs in total, estimated loss increase). The greedy below walks each
tensor's lower convex hull of (bits, loss), always taking the upgrade with the largest loss saved per bit that
still fits the budget. That is the Lagrangian optimum of the relaxation, and it leaves unspent at most what the
next upgrades cost: on SmolLM2 one feed-forward linear at one step, under 0.3 % of a 2.5-bit budget.

That bound is only small when every step is. A tensor whose one step is a large part of the budget (the token
embedding: 63 % of Gemma-3-270M's parameters, a fifth of SmolLM2's) breaks it: the greedy spends the budget on the
small tensors' cheap upgrades first, then finds no room for the large step, and pours the rest into upgrades worth
far less (on Gemma-3-270M at 4 bits per parameter it kept the embedding at 2 bits and took 8-bit linears, an
estimated loss of 0.58 where a 3-bit embedding gives 0.32; the file's perplexity was 308 where 4.5 bits gave 64).
So the large tensors' choices are enumerated, every non-dominated option of each, and the greedy runs over the rest
for each combination; the combination with the least total estimated loss wins.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from ..errors import ConfigError

# [choice] a tensor is enumerated rather than left to the greedy when one of its steps costs more than this share of
# the budget; the greedy's loss of optimality is at most what one step costs, so 5 % bounds what it can leave unspent
# to small steps. Combinations are capped (largest tensors first); the models here have one or two such tensors.
LARGE_STEP = 0.05
MAX_COMBINATIONS = 64


@dataclass(frozen=True)
class Option:
    tier: str
    bits: int  # everything stored for the tensor in this tier
    loss: float  # estimated increase of the end loss (>= 0)


def _frontier(options: list[Option]) -> list[Option]:
    """The options no other option beats on both bits and loss, by increasing bits."""
    out: list[Option] = []
    for o in sorted(options, key=lambda o: (o.bits, o.loss)):
        if not out or o.loss < out[-1].loss:
            out.append(o)
    return out


def _hull(frontier: list[Option]) -> list[Option]:
    """The points of a frontier (_frontier) on the lower convex hull of (bits, loss), by increasing bits."""
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


def _greedy(hulls: dict[str, list[Option]], budget_bits: float) -> tuple[dict[str, int], float] | None:
    """Hull index per tensor and the estimated loss, from the cheapest hull points up by the largest loss saved per
    bit that still fits; None when the cheapest points alone do not fit."""
    at = {name: 0 for name in hulls}
    spent = sum(h[0].bits for h in hulls.values())
    if spent > budget_bits:
        return None
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
    return at, sum(hulls[name][i].loss for name, i in at.items())


def _large(frontiers: dict[str, list[Option]], budget_bits: float) -> list[str]:
    """The tensors to enumerate: a step of their frontier above LARGE_STEP of the budget, largest first, while the
    combinations of their frontiers' options stay within MAX_COMBINATIONS."""
    def step(f):
        return max((b.bits - a.bits for a, b in zip(f, f[1:])), default=0)

    big = sorted((n for n, f in frontiers.items() if step(f) > LARGE_STEP * budget_bits),
                 key=lambda n: (-frontiers[n][-1].bits, n))
    chosen, combos = [], 1
    for n in big:
        k = len(frontiers[n])
        if combos * k > MAX_COMBINATIONS:
            break
        chosen.append(n)
        combos *= k
    return chosen


def allocate(options: dict[str, list[Option]], budget_bits: float) -> dict[str, str]:
    """tensor name -> chosen tier; the chosen bits sum to at most budget_bits. ConfigError when even the
    cheapest option of every tensor does not fit."""
    if not options:
        return {}
    for name, opts in options.items():
        if not opts:
            raise ConfigError(f"tensor {name} has no tier to choose from")
    cheapest = sum(min(o.bits for o in opts) for opts in options.values())
    if cheapest > budget_bits:
        raise ConfigError(f"the budget of {budget_bits / 8e6:.2f} MB is below the smallest file these tiers make "
                          f"({cheapest / 8e6:.2f} MB for the allocated tensors alone)")
    frontiers = {name: _frontier(opts) for name, opts in options.items()}
    large = _large(frontiers, budget_bits)
    hulls = {name: _hull(f) for name, f in frontiers.items() if name not in large}
    best = None
    for combo in itertools.product(*(frontiers[n] for n in large)):
        fixed = sum(o.bits for o in combo)
        run = _greedy(hulls, budget_bits - fixed)
        if run is None:
            continue
        at, loss = run
        loss += sum(o.loss for o in combo)
        if best is None or loss < best[0]:
            best = (loss, combo, at)
    _, combo, at = best  # the cheapest combination fits, since the cheapest options of all do
    choice = {name: hulls[name][i].tier for name, i in at.items()}
    choice.update({n: o.tier for n, o in zip(large, combo)})
    return choice
