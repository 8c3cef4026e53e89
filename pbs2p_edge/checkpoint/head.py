"""The output head's stored form: GPTQ onto the embedding tier with the head input's Hessian (model/head_input.py).

A file stores the head (the token embedding, when tied) in the budget's embedding tier. Rounded to nearest, every
element's error counts alike; what the logits h W^T feel is (W - Q) H (W - Q)^T, and h has a few dimensions far larger
than the rest, so GPTQ onto the same tier's grid (algo/gptq_grid.py, as for every linear; llama.cpp's imatrix weights
output.weight the same way) stores a head whose logits are much closer at the same bytes.
[choice] A tied matrix is also the token lookup, where every element counts alike and GPTQ's compensation adds error
(1.7x the nearest rounding's squared error): the head's error is the one minimized. Measured on SmolLM2-135M (tied),
the budget-3 file without the binary tier, same bytes: H-weighted error 1.19e5 -> 8.3e3, PPL over 4 x 2048 tokens of
Pride and Prejudice 40.28 -> 31.55, of the Debian Reference 46.33 -> 40.29.
"""

from __future__ import annotations

import torch

from ..algo.gptq_grid import gptq_grid
from ..errors import ConfigError
from ..pack import tiers
from .save import grid_layer


def stored_head(W: torch.Tensor, H: torch.Tensor, tier_name: str, percdamp: float) -> tiers.GridLayer:
    """The head's matrix W (V, D) in grid tier `tier_name`, GPTQ on H (D, D) with damping `percdamp`: its stored
    blocks, as the exporters write them. Deterministic on the CPU (gptq_grid's float32 order)."""
    t = tiers.tier(tier_name)
    if not t.grid:
        raise ConfigError(f"the head's stored form needs a grid tier, not {tier_name}")
    t.check_cols("the head", W.shape[1])
    return grid_layer(gptq_grid(W.float().clone(), H.float().clone(), t, percdamp))
