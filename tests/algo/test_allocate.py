"""allocate: the bit budget is kept, and the choice is as good as exhaustive search allows."""

import itertools
import random

import pytest

from pbs2p_edge.algo.allocate import Option, allocate
from pbs2p_edge.errors import ConfigError


def _instance(seed, tensors=5):
    rnd = random.Random(seed)
    options = {}
    for i in range(tensors):
        size = rnd.choice([64, 128, 256])
        options[f"t{i}"] = [Option(t, int(size * b), rnd.uniform(0.1, 2.0) * size * 2.0 ** -b * rnd.uniform(0.5, 1.5))
                            for t, b in (("q2", 2.5), ("q3", 3.5), ("q4", 4.5), ("q8", 8.5))]
    return options


def _cost(options, choice):
    picked = [next(o for o in options[n] if o.tier == t) for n, t in choice.items()]
    return sum(o.bits for o in picked), sum(o.loss for o in picked)


def _optimum(options, budget):
    names = sorted(options)
    best = float("inf")
    for combo in itertools.product(*(options[n] for n in names)):
        if sum(o.bits for o in combo) <= budget:
            best = min(best, sum(o.loss for o in combo))
    return best


@pytest.mark.parametrize("seed", range(8))
def test_within_budget_and_near_the_exhaustive_optimum(seed):
    options = _instance(seed)
    lo = sum(min(o.bits for o in v) for v in options.values())
    hi = sum(max(o.bits for o in v) for v in options.values())
    step = max(max(o.bits for o in v) - min(o.bits for o in v) for v in options.values())
    for frac in (0.0, 0.2, 0.5, 0.8, 1.0):
        budget = lo + frac * (hi - lo)
        choice = allocate(options, budget)
        bits, loss = _cost(options, choice)
        assert bits <= budget
        # the greedy over convex hulls is optimal for the bits it had spent when an upgrade first failed
        assert loss <= _optimum(options, budget - step) + 1e-9
    assert _cost(options, allocate(options, hi))[1] == pytest.approx(sum(min(o.loss for o in v) for v in options.values()))


def test_sensitive_tensor_gets_the_bits():
    options = {
        "robust": [Option("q2", 250, 1.0), Option("q4", 450, 0.9)],
        "sensitive": [Option("q2", 250, 100.0), Option("q4", 450, 1.0)],
    }
    assert allocate(options, 700) == {"robust": "q2", "sensitive": "q4"}


def test_dominated_options_are_never_chosen():
    options = {"a": [Option("q2", 100, 5.0), Option("q3", 200, 6.0), Option("q4", 300, 1.0)]}
    assert allocate(options, 250) == {"a": "q2"}
    assert allocate(options, 300) == {"a": "q4"}


def test_infeasible_budget_is_a_config_error():
    with pytest.raises(ConfigError, match="smallest file"):
        allocate({"a": [Option("q2", 100, 1.0)]}, 99)


def test_a_large_tensor_gets_its_step_when_that_is_worth_more():
    """The Gemma-3 case: the small tensors' first steps save the most per bit, the large tensor's step comes next,
    their second steps last. A plain greedy takes all first steps, finds no room for the large step and spends the
    rest on second steps (loss 5 + 8 x 0.1); giving up one first step makes room for it (1 + 1.0 + 9 x 0.1)."""
    options = {f"s{i}": [Option("q2", 100, 1.0), Option("q4", 200, 0.1), Option("q8", 400, 0.0)] for i in range(10)}
    options["embedding"] = [Option("q2", 1000, 5.0), Option("q3", 1500, 1.0)]
    choice = allocate(options, 3400)
    bits, loss = _cost(options, choice)
    assert choice["embedding"] == "q3"
    assert bits <= 3400
    assert loss == pytest.approx(2.9)
    assert loss == pytest.approx(_optimum(options, 3400))


def test_large_tensors_every_nondominated_option_is_tried():
    """A large tensor's middle option off the convex hull can be the best one; enumeration sees it."""
    options = {"big": [Option("q2", 1000, 10.0), Option("q3", 1400, 6.0), Option("q4", 1500, 0.0)],
               "small": [Option("q2", 50, 0.5), Option("q4", 90, 0.0)]}
    assert allocate(options, 1460) == {"big": "q3", "small": "q2"}
    assert _cost(options, allocate(options, 1460))[1] == pytest.approx(_optimum(options, 1460))
