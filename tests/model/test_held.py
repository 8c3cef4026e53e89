"""model/held.py: linears held as stored and widened to float32 only while they run compute what float32 linears
compute, with and without autograd, and never keep the float32 weight."""

import pytest
import torch
from torch import nn

from pbs2p_edge.model.held import release_weight, widened, widened_with_grad


def _pair(bias: bool):
    """A float32 linear with bfloat16-exact weights, and a twin whose weight is released and held as bfloat16."""
    torch.manual_seed(0)
    ref = nn.Linear(24, 40, bias=bias)
    with torch.no_grad():
        ref.weight.copy_(ref.weight.to(torch.bfloat16).float())
    twin = nn.Linear(24, 40, bias=bias)
    twin.load_state_dict(ref.state_dict())
    held = {"lin": twin.weight.data.to(torch.bfloat16)}
    release_weight(twin)
    return ref, twin, held


@pytest.mark.parametrize("bias", [False, True])
def test_widened_forward_is_the_float32_linears(bias):
    ref, twin, held = _pair(bias)
    x = torch.randn(3, 5, 24)
    sizes = []
    twin.register_forward_pre_hook(lambda m, _i: sizes.append(m.weight.numel()))  # before widened's widening
    with torch.no_grad(), widened({"lin": twin}, held):
        twin.register_forward_pre_hook(lambda m, _i: sizes.append(m.weight.numel()))  # after it
        twin.register_forward_hook(lambda m, _i, _o: sizes.append(m.weight.numel()))  # after its release
        got = twin(x)
    assert torch.equal(got, ref(x).detach())
    assert sizes == [0, 40 * 24, 0] and twin.weight.numel() == 0  # float32 only while it runs


@pytest.mark.parametrize("bias", [False, True])
def test_widened_with_grad_pulls_back_and_sums_the_weight_gradients_squares(bias):
    ref, twin, held = _pair(bias)
    xs, gs = [torch.randn(2, 7, 24) for _ in range(3)], [torch.randn(2, 7, 40) for _ in range(3)]
    fisher = {"lin": torch.zeros(40, 24)}
    expect_f = torch.zeros(40, 24)
    with widened_with_grad({"lin": twin}, held, fisher):
        for x, g in zip(xs, gs):
            xg = x.clone().requires_grad_(True)
            y = twin(xg)
            assert twin.weight.numel() == 0  # autograd keeps the stored copy, not a float32 weight
            (got,) = torch.autograd.grad(y, xg, g)
            xr = x.clone().requires_grad_(True)
            yr = ref(xr)
            want, wgrad = torch.autograd.grad(yr, [xr, ref.weight], g)
            torch.testing.assert_close(y, yr, rtol=0, atol=0)
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
            expect_f += wgrad.square()
    torch.testing.assert_close(fisher["lin"], expect_f, rtol=1e-5, atol=1e-9)
    assert "forward" not in vars(twin)  # the module's own forward is back
