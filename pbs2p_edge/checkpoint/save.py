"""save_checkpoint: write a compressed model as a checkpoint directory (docs/FORMAT.md §9), atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..algo.config import CompressConfig
from ..algo.gptq_grid import FloatResult, GridResult
from ..algo.result import LayerResult
from ..errors import ConfigError
from ..pack import FORMAT_VERSION, PackedLayer, honest_bits, pack_layer, tiers
from ..pack.checkpoint_dir import CHECKPOINT_KIND, CONFIG_JSON, DENSE, GRID, META_JSON, PACKED, is_checkpoint
from .atomic_dir import atomic_dir


def pack_result(result: LayerResult) -> PackedLayer:
    """The packed form of one LayerResult (tensors moved to CPU numpy)."""
    def np_(t):
        return None if t is None else t.detach().cpu().numpy()

    return pack_layer(np_(result.mask), np_(result.signs), np_(result.salient), np_(result.group),
                      np_(result.alpha.float()), np_(result.mu.float()),
                      None if result.col_scale is None else np_(result.col_scale.float()),
                      result.n, result.m, result.group_size)


def grid_layer(result: GridResult | FloatResult) -> tiers.GridLayer:
    """The stored form of a linear on a grid tier or the f16 tier."""
    if isinstance(result, FloatResult):
        W = result.W.detach().cpu().numpy()
        return tiers.GridLayer("f16", *W.shape, tiers.pack_float(W))
    np_ = lambda t: None if t is None else t.detach().cpu().numpy()  # noqa: E731
    q = np_(result.q)
    return tiers.GridLayer(result.tier.name, *q.shape, tiers.pack(result.tier.name, q, np_(result.d), np_(result.m)))


def _compressed_blocks(model, results: dict) -> dict:
    """{"compressed": K, "total": L}: the first K of the model's L decoder blocks have every linear in `results`
    (compress --blocks K stops there; the rest keep their full-precision weights)."""
    from ..model.arch import arch_for, block_linears, decoder_blocks

    spec = arch_for(model)
    blocks = decoder_blocks(model, spec)
    done = 0
    while done < len(blocks) and all(f"{spec.blocks}.{done}.{n}" in results for n in block_linears(blocks[done], spec)):
        done += 1
    return {"compressed": done, "total": len(blocks)}


def _dense_numpy(t: torch.Tensor) -> np.ndarray:
    """A state-dict tensor as numpy; bfloat16 (no numpy dtype) widens to float32, losslessly."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return np.ascontiguousarray(t.numpy())


def save_checkpoint(out_dir, model, tokenizer, results: dict[str, LayerResult | GridResult | FloatResult],
                    cfg: CompressConfig, layer_n: dict[str, int], extra: dict, embed_tier: str | None = None) -> Path:
    """Write `model` with each linear named in `results` replaced by its packed form.

    results: linear module name (e.g. "model.layers.0.self_attn.q_proj") -> LayerResult (binary tier, to
    packed.safetensors) or GridResult / FloatResult (grid and f16 tiers, to grid.safetensors as the file's blocks).
    embed_tier: the tier the exporters give the token embedding and head unless told otherwise (None: theirs).
    Every other state-dict tensor goes to dense.safetensors; a tensor sharing storage with an
    earlier one (tied embeddings) is stored once and recorded under "tied".
    """
    from safetensors.numpy import save_file

    state = model.state_dict()
    blocks = _compressed_blocks(model, results)
    if embed_tier is not None and embed_tier not in tiers.EMBED_TIERS:
        raise ConfigError(f"embedding tier must be one of {', '.join(tiers.EMBED_TIERS)}, got {embed_tier!r}")
    packed: dict[str, PackedLayer] = {}
    grids: dict[str, tiers.GridLayer] = {}
    for name, result in results.items():
        key = f"{name}.weight"
        if key not in state:
            raise ConfigError(f"compressed layer {name!r} is not a linear of this model")
        if tuple(state[key].shape) != tuple(result.shape):
            raise ConfigError(f"{name}: result shape {tuple(result.shape)} != weight shape {tuple(state[key].shape)}")
        if isinstance(result, LayerResult):
            packed[name] = pack_result(result)
        else:
            grids[name] = grid_layer(result)

    compressed = {f"{name}.weight" for name in results}
    dense: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    tied: dict[str, str] = {}
    first_of_storage: dict[tuple, str] = {}
    for key, t in state.items():
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in compressed:
            continue
        if t.numel() and ident in first_of_storage:
            tied[key] = first_of_storage[ident]
            continue
        first_of_storage[ident] = key
        dense[key] = _dense_numpy(t)
        dtypes[key] = str(t.dtype).removeprefix("torch.")

    layers_json = {}
    total_bits = total_weights = 0
    for name, p in packed.items():
        bits = honest_bits(p)
        total_bits += bits
        total_weights += p.meta.rows * p.meta.cols
        layers_json[name] = {**p.meta.to_dict(), "honest_bits": bits, "loss": float(results[name].loss)}
    grid_json = {}
    for name, g in grids.items():
        total_bits += g.honest_bits
        total_weights += g.rows * g.cols
        grid_json[name] = {"tier": g.tier, "rows": g.rows, "cols": g.cols, "honest_bits": g.honest_bits,
                           "loss": float(results[name].loss)}
    meta = {
        "format": CHECKPOINT_KIND,
        "format_version": FORMAT_VERSION,
        "compress_config": cfg.to_dict(),
        "layers": layers_json,
        "grid_layers": grid_json,
        "tiers": {name: ("pbs2p" if name in packed else grids[name].tier) for name in results},
        "embed_tier": embed_tier,
        "layer_n": {str(k): int(v) for k, v in layer_n.items()},
        "tied": tied,
        "dense_dtypes": dtypes,
        "bits_per_weight": total_bits / total_weights if total_weights else None,
        "blocks": blocks,
        "extra": extra,
    }
    meta_text = json.dumps(meta, indent=2, sort_keys=False)  # fails here, before anything is written
    # safetensors writes an array's raw buffer whatever its strides: store C-contiguous copies only.
    arrays = {f"{name}.{k}": np.ascontiguousarray(v) for name, p in packed.items() for k, v in p.arrays.items()}

    # One metadata key per file: safetensors writes its metadata map in a random order, so two keys would make
    # the same checkpoint differ byte for byte from run to run.
    tag = {"format": f"{CHECKPOINT_KIND}/{FORMAT_VERSION}"}
    with atomic_dir(out_dir, is_checkpoint) as tmp:
        model.config.to_json_file(str(tmp / CONFIG_JSON))
        save_file(arrays, str(tmp / PACKED), metadata=tag)
        save_file(dense, str(tmp / DENSE), metadata=tag)
        save_file({name: g.blocks for name, g in grids.items()}, str(tmp / GRID), metadata=tag)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        (tmp / META_JSON).write_text(meta_text + "\n")  # written last: its presence marks a complete checkpoint
    return Path(out_dir)
