"""Write compressed layers' dequantized weights into a model in place ("fake quantization" for evaluation)."""

from __future__ import annotations

import torch
from torch import nn

from ..algo.result import LayerResult
from ..errors import ModelError


@torch.no_grad()
def apply_results(model: nn.Module, results: dict[str, LayerResult]) -> None:
    """model.<name>.weight ← results[name].dequantize() for every name, in the weight's own dtype and device.

    Names are full module names ("model.layers.0.self_attn.q_proj"). A name that is not an
    nn.Linear of the model, or a shape that differs, raises ModelError before anything is written.
    """
    targets = {}
    for name, result in results.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ModelError(f"compressed layer {name} does not exist in this model") from None
        if not isinstance(module, nn.Linear):
            raise ModelError(f"compressed layer {name} is a {type(module).__name__} in this model, not nn.Linear")
        if tuple(module.weight.shape) != tuple(result.shape):
            raise ModelError(f"compressed layer {name} has shape {tuple(result.shape)}, the model's is {tuple(module.weight.shape)}")
        targets[name] = module
    for name, module in targets.items():
        w = results[name].dequantize()
        module.weight.copy_(w.to(device=module.weight.device, dtype=module.weight.dtype))
