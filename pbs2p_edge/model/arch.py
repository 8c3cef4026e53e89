"""Registry of supported decoder architectures: where the blocks are, their linears in execution order, how to run one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from ..pack.architectures import ARCHITECTURES, BLOCKS, check_config, supported


@dataclass(frozen=True)
class ArchSpec:
    """How one architecture family is laid out.

    blocks: dotted path of the nn.ModuleList of decoder blocks.
    linears: names of the nn.Linear modules inside one block, in the order the block runs them.
    embeds: dotted paths of the modules the model runs before block 0 (moved to the compute device
            while block-0 inputs are captured); a missing or None one is skipped (OPT project_in).
    tail: dotted paths of the modules the model runs, in order, between the last block and the output head (the
          final norm; OPT's project_out), skipped the same way.
    """

    family: str
    blocks: str
    linears: tuple[str, ...]
    embeds: tuple[str, ...]
    tail: tuple[str, ...]


_LLAMA = ArchSpec(
    family="llama",
    blocks=BLOCKS["llama"],
    linears=(
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    ),
    embeds=("model.embed_tokens", "model.rotary_emb"),
    tail=("model.norm",),
)
_OPT = ArchSpec(
    family="opt",
    blocks=BLOCKS["opt"],
    linears=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"),
    embeds=("model.decoder.embed_tokens", "model.decoder.embed_positions", "model.decoder.project_in"),
    tail=("model.decoder.final_layer_norm", "model.decoder.project_out"),
)

_GEMMA3 = ArchSpec(family="gemma3", blocks=BLOCKS["gemma3"], linears=_LLAMA.linears, embeds=_LLAMA.embeds,
                   tail=_LLAMA.tail)

# layout (architectures.Architecture.layout) -> where its blocks and linears are
LAYOUTS: dict[str, ArchSpec] = {"llama": _LLAMA, "opt": _OPT, "gemma3": _GEMMA3}
# config.model_type -> layout, for every architecture of the table
ARCHS: dict[str, ArchSpec] = {t: LAYOUTS[a.layout] for t, a in ARCHITECTURES.items()}


def arch_for(model: nn.Module) -> ArchSpec:
    """The ArchSpec of a loaded causal LM; ModelError naming the supported ones otherwise (architectures.check_config)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ModelError(f"unsupported architecture {None!r}; supported: {supported()}")
    return ARCHS[check_config(config.to_dict()).model_type]


def decoder_blocks(model: nn.Module, spec: ArchSpec | None = None) -> nn.ModuleList:
    spec = spec or arch_for(model)
    return model.get_submodule(spec.blocks)


def block_linears(block: nn.Module, spec: ArchSpec) -> dict[str, nn.Linear]:
    """name inside the block -> nn.Linear, in execution order."""
    out = {}
    for name in spec.linears:
        module = block.get_submodule(name)
        if not isinstance(module, nn.Linear):
            raise ModelError(f"{spec.family} block: {name} is a {type(module).__name__}, expected nn.Linear")
        out[name] = module
    return out


def _present(model: nn.Module, paths: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """(path, module) of those of `paths` that exist in this model and are not None."""
    found = []
    for path in paths:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        if module is not None:
            found.append((path, module))
    return found


def named_embed_modules(model: nn.Module, spec: ArchSpec) -> list[tuple[str, nn.Module]]:
    """(path, module) of the modules run before block 0 that exist in this model (OPT's project_in is often None)."""
    return _present(model, spec.embeds)


def named_tail_modules(model: nn.Module, spec: ArchSpec) -> list[tuple[str, nn.Module]]:
    """(path, module) of the modules run after the last block, before the head, that exist in this model."""
    return _present(model, spec.tail)


def head_parameter_name(model: nn.Module) -> str:
    """The parameter name of the output head's matrix (the token embedding's, when the head is tied to it)."""
    head = model.get_output_embeddings().weight
    return next(n for n, p in model.named_parameters(remove_duplicate=False) if p is head)


def embed_modules(model: nn.Module, spec: ArchSpec) -> list[nn.Module]:
    """The modules run before block 0 that exist in this model."""
    return [m for _, m in named_embed_modules(model, spec)]


def run_block(block: nn.Module, x: torch.Tensor, kwargs: dict,
              overrides: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Output hidden states (B, T, D) of one decoder block on inputs x (B, T, D).

    kwargs are the ones captured at block 0 (attention_mask, position_ids, position_embeddings,
    use_cache=False, ...); transformers 5 blocks return a tensor, older ones a tuple.
    overrides: parameter name inside the block -> tensor used in its place for this call (recovery trains them).
    """
    if overrides:
        out = torch.func.functional_call(block, overrides, (x,), kwargs, strict=False)
    else:
        out = block(x, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


def check_seqlen(model: nn.Module, seqlen: int) -> None:
    """ConfigError when windows of `seqlen` tokens exceed the model's position range (OPT: learned positions)."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is not None and seqlen > limit:
        raise ConfigError(f"seqlen {seqlen} exceeds this model's max_position_embeddings {limit}")
