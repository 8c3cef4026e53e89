"""Random layers for the algo tests: W (R, K) and H = 2/n X^T X from random, correlated inputs X
with uneven column scales (as LLM activations are), so GPTQ compensation has something to do."""

import pytest
import torch


def make_layer(R: int, K: int, seed: int = 0, tokens: int = 512):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(tokens, K, generator=g) * (0.2 + 2 * torch.rand(K, generator=g))
    X = X + torch.randn(tokens, 8, generator=g) @ torch.randn(8, K, generator=g)  # shared directions
    H = 2 / tokens * X.T @ X
    W = torch.randn(R, K, generator=g) * 0.02
    return W, H


def h_error(W: torch.Tensor, Q: torch.Tensor, H: torch.Tensor) -> float:
    """tr((W - Q) H (W - Q)^T): the layer's output error on the calibration inputs."""
    E = W - Q
    return float(((E @ H) * E).sum())


@pytest.fixture
def layer():
    return make_layer(64, 576)
