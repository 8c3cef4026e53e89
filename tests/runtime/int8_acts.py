"""PyTorch's side of libpbs2p's integer products: the input of every linear the runtime multiplies on int8 activations
(the packed binary layers, the grid tiers but f16, and the head when the file stores it in a block type) is replaced
by its round trip through native/src/acts_q8.c's quantization (blocks of 32, d = max|x| / 127, codes x * (127 /
max|x|) clamped to +-127 and rounded to nearest, ties to even). A packed layer's blocks start at each of its scale
groups (internal.h, "binary layers on int8 activations"). The runtime's result is then this model's up to float32
rounding."""

import gguf
import torch
import torch.nn.functional as F

from pbs2p_edge.checkpoint import load_checkpoint

FLOAT_TYPES = (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32)


def q8_round_trip(x: torch.Tensor) -> torch.Tensor:
    blocks = x.float().reshape(*x.shape[:-1], -1, 32)
    amax = blocks.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    codes = torch.round((blocks * inv).clamp(-127, 127))  # torch.round: ties to even, as the C rounding
    return (codes * (amax / 127.0)).reshape(x.shape)


def grouped_round_trip(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """q8_round_trip over blocks of 32 that start at every scale group of group_size columns (the last block of a
    group zero padded)."""
    out = torch.empty(x.shape, dtype=torch.float32)
    for c0 in range(0, x.shape[-1], group_size):
        part = x[..., c0:c0 + group_size].float()
        n = part.shape[-1]
        out[..., c0:c0 + n] = q8_round_trip(F.pad(part, (0, -n % 32)))[..., :n]
    return out


def head_is_integer(path) -> bool:
    tensors = {t.name: t.tensor_type for t in gguf.GGUFReader(str(path)).tensors}
    head = tensors.get("output.weight", tensors.get("token_embd.weight"))
    return head not in FLOAT_TYPES  # None: the embedding / head in our blocks (token_embd.pbs2p.q)


def emulate_int8_activations(model, ck, path):
    """Hooks on `model` (the checkpoint's fake-quant reference of the GGUF at `path`); returns the hook handles."""
    if not hasattr(ck, "linear_tiers"):  # a checkpoint directory
        ck = load_checkpoint(ck)
    modules = [model.get_submodule(n) for n, t in ck.linear_tiers().items() if t not in ("pbs2p", "f16")]
    if head_is_integer(path):
        modules.append(model.get_output_embeddings())
    hooks = [m.register_forward_pre_hook(lambda _m, args: (q8_round_trip(args[0]),)) for m in modules]
    for name, layer in ck.layers.items():
        if layer.meta.has_col_scale:  # each region's x * col_scale is quantized on its own: not a function of x alone
            raise NotImplementedError(f"{name}: int8 activations of a layer with column scales are not emulated")
        gs = layer.meta.group_size
        hooks.append(model.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, gs=gs: (grouped_round_trip(args[0], gs),)))
    return hooks
