"""save_checkpoint: a compressed PyTorch model as a checkpoint directory (docs/FORMAT.md §9), atomically: its linears
in their stored forms, its other tensors as numpy, handed to the format's one writer (pack/checkpoint_dir.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..algo.config import CompressConfig
from ..algo.gptq_grid import FloatResult, GridResult
from ..algo.result import LayerResult, in_row_chunks
from ..errors import ConfigError
from ..pack import LayerMeta, PackedLayer, pack_layer, tiers, unpack_layer
from ..pack.packer import row_slice
from ..pack import checkpoint_dir
from ..pack.safetensors_stream import RowPieces
from ..pack.checkpoint_dir import write_checkpoint
from ..model.arch import head_parameter_name


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
    blocks = tiers.pack(result.tier.name, q, np_(result.d), np_(result.m), np_(result.sc), np_(result.mc))
    return tiers.GridLayer(result.tier.name, *q.shape, blocks)


@dataclass(frozen=True)
class StoredResult:
    """One compressed linear in the form the checkpoint stores it (a few bits per weight, where a LayerResult holds
    bytes per weight), with what the checkpoint records of it: a compression keeps these for its finished linears."""
    stored: PackedLayer | tiers.GridLayer
    loss: float
    shape: tuple[int, int]

    def loaded(self) -> StoredResult:
        """This result with every array in memory (a compression's finished blocks give theirs as RowPieces, read from
        its progress directory when the checkpoint is written: model/progress.py)."""
        def read(a):
            return np.concatenate(list(a.pieces())) if isinstance(a, RowPieces) else a

        s = self.stored
        stored = (PackedLayer(s.meta, {k: read(v) for k, v in s.arrays.items()}) if isinstance(s, PackedLayer) else
                  tiers.GridLayer(s.tier, s.rows, s.cols, read(s.blocks)))
        return StoredResult(stored, self.loss, self.shape)

    def dequantize(self) -> torch.Tensor:
        """W_hat (R, K) float32: the values the result it was packed from dequantizes to, bit for bit. A packed layer
        is unpacked a few rows at a time (its whole planes would take ten bytes per weight: 0.5 GB at a 7B MLP's size)."""
        s = self.loaded().stored
        if isinstance(s, PackedLayer):
            return in_row_chunks(self.shape, lambda r0, r1: torch.from_numpy(unpack_layer(row_slice(s, r0, r1))), None,
                                 "cpu")
        return torch.from_numpy(s.decode())

    def to_tensors(self) -> dict:
        """Plain values and tensors (what torch.load(weights_only=True) reads back; model/progress.py keeps these)."""
        s = self.loaded().stored
        body = ({"meta": s.meta.to_dict(), "arrays": {k: torch.from_numpy(v) for k, v in s.arrays.items()}}
                if isinstance(s, PackedLayer) else
                {"tier": s.tier, "rows": s.rows, "cols": s.cols, "blocks": torch.from_numpy(s.blocks)})
        return {"stored_result": body, "loss": self.loss, "shape": list(self.shape)}

    @classmethod
    def from_tensors(cls, d: dict, array: Callable[[str, torch.Tensor], np.ndarray | RowPieces] | None = None
                     ) -> StoredResult:
        """The StoredResult to_tensors gave `d`; array(key, tensor) makes each array ("blocks" for a grid layer's)
        from its tensor (default: the tensor's numpy view)."""
        array = array or (lambda _key, t: t.numpy())
        b = d["stored_result"]
        stored = (PackedLayer(LayerMeta.from_dict(b["meta"]), {k: array(k, v) for k, v in b["arrays"].items()})
                  if "meta" in b else tiers.GridLayer(b["tier"], b["rows"], b["cols"], array("blocks", b["blocks"])))
        return cls(stored, float(d["loss"]), tuple(d["shape"]))


def stored_result(result: LayerResult | GridResult | FloatResult | StoredResult) -> StoredResult:
    """`result` packed as save_checkpoint packs it (the same bytes)."""
    if isinstance(result, StoredResult):
        return result
    stored = pack_result(result) if isinstance(result, LayerResult) else grid_layer(result)
    return StoredResult(stored, float(result.loss), tuple(result.shape))


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


@dataclass(frozen=True)
class DenseTensors:
    """The state-dict tensors a checkpoint stores as they are (dense.safetensors): all but the compressed linears.

    names: in state-dict order, tied copies left out; tied: a tied copy -> the name it shares storage with;
    nbytes: each name's size as stored (float32 for bfloat16); read(names) -> name -> tensor, for a group at a time
    (a streamed model's tensors as RowPieces, read from its shards while they are written).
    """

    names: list[str]
    tied: dict[str, str]
    nbytes: dict[str, int]
    read: Callable[[list[str]], dict[str, torch.Tensor | RowPieces]]


def _stored_size(t: torch.Tensor) -> int:
    return t.numel() * (4 if t.dtype == torch.bfloat16 else t.element_size())


def dense_of_model(model, compressed: set[str]) -> DenseTensors:
    """The DenseTensors of a model held in memory: a tensor sharing storage with an earlier one is a tied copy."""
    state = model.state_dict()
    names: list[str] = []
    tied: dict[str, str] = {}
    first_of_storage: dict[tuple, str] = {}
    for key, t in state.items():
        if key in compressed:
            continue
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and ident in first_of_storage:
            tied[key] = first_of_storage[ident]
            continue
        first_of_storage[ident] = key
        names.append(key)
    return DenseTensors(names, tied, {k: _stored_size(state[k]) for k in names}, lambda group: {k: state[k] for k in group})


def dense_of_streamed(model, weights, block_params: dict[str, torch.Tensor], compressed: set[str]) -> DenseTensors:
    """The DenseTensors of a streamed model (model/stream.py: built on the meta device, `weights` its shards): the
    compressed blocks' other parameters from block_params (recovery may have changed them), the rest read from the
    shards when their group is written."""
    state = model.state_dict()  # meta tensors: names and shapes
    names = [k for k in state if k not in compressed and k not in weights.tied]

    def read(group: list[str]) -> dict[str, torch.Tensor | RowPieces]:  # a shard's tensor: read as it is written
        return {k: block_params[k] if k in block_params else weights.row_pieces(k) for k in group}

    return DenseTensors(names, dict(weights.tied), {k: _stored_size(state[k]) for k in names}, read)


def dense_shards(dense: DenseTensors, limit: int | None = None) -> list[list[str]]:
    """dense.names cut, in order, into groups of at most `limit` bytes (default checkpoint_dir.DENSE_SHARD_BYTES; a
    larger tensor is a group alone)."""
    limit = checkpoint_dir.DENSE_SHARD_BYTES if limit is None else limit
    groups: list[list[str]] = [[]]
    size = 0
    for k in dense.names:
        if groups[-1] and size + dense.nbytes[k] > limit:
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += dense.nbytes[k]
    return groups


def _dense_values(dense: DenseTensors, group: list[str]) -> dict[str, np.ndarray | RowPieces]:
    return {name: t if isinstance(t, RowPieces) else _dense_numpy(t) for name, t in dense.read(group).items()}


def save_checkpoint(out_dir, model, tokenizer,
                    results: dict[str, LayerResult | GridResult | FloatResult | StoredResult], cfg: CompressConfig,
                    layer_n: dict[str, int], extra: dict, embed_tier: str | None = None,
                    dense: DenseTensors | None = None, head_hessian: torch.Tensor | None = None) -> Path:
    """Write `model` with each linear named in `results` replaced by its packed form.

    results: linear module name (e.g. "model.layers.0.self_attn.q_proj") -> LayerResult (binary tier, to
    packed.safetensors) or GridResult / FloatResult (grid and f16 tiers, to grid.safetensors as the file's blocks),
    or any of them already packed (StoredResult).
    embed_tier: the tier the exporters give the token embedding and head unless told otherwise (None: theirs).
    Every other state-dict tensor goes to dense.safetensors (default: dense_of_model(model), for a model held in
    memory; a streamed model's are read from its shards); a tied copy (tied embeddings) is stored once and recorded
    under "tied". Dense tensors of more than DENSE_SHARD_BYTES are written in shards (docs/FORMAT.md §9), one
    shard's tensors in memory at a time.
    head_hessian: the head input's H (model/head_input.py); with a grid embed_tier, the head's matrix is also stored
    in that tier by GPTQ on it (checkpoint/head.py), the form every exporter then writes.
    """
    state = model.state_dict()  # on a streamed model: tensors on the meta device, for their names and shapes
    blocks = _compressed_blocks(model, results)
    compressed = {f"{name}.weight" for name in results}
    dense = dense if dense is not None else dense_of_model(model, compressed)
    if embed_tier is not None and embed_tier not in tiers.EMBED_TIERS:
        raise ConfigError(f"embedding tier must be one of {', '.join(tiers.EMBED_TIERS)}, got {embed_tier!r}")
    linears = {}
    for name, result in results.items():
        key = f"{name}.weight"
        if key not in state:
            raise ConfigError(f"compressed layer {name!r} is not a linear of this model")
        if tuple(state[key].shape) != tuple(result.shape):
            raise ConfigError(f"{name}: result shape {tuple(result.shape)} != weight shape {tuple(state[key].shape)}")
        stored = stored_result(result)
        linears[name] = (stored.stored, stored.loss)
    shards = [functools.partial(_dense_values, dense, group) for group in dense_shards(dense)]
    head = None
    if head_hessian is not None and embed_tier is not None and tiers.tier(embed_tier).grid:
        from .head import stored_head

        key = _head_key(model, dense)
        head = (key, stored_head(_dense_matrix(dense, key), head_hessian, embed_tier, cfg.percdamp))
    return write_checkpoint(
        out_dir, write_config=lambda path: model.config.to_json_file(str(path)), linears=linears,
        dense_shards=shards, tied=dense.tied,
        dense_dtypes={k: str(state[k].dtype).removeprefix("torch.") for k in dense.names},
        compress_config=cfg.to_dict(), layer_n=layer_n, blocks=blocks, embed_tier=embed_tier, extra=extra,
        write_tokenizer=None if tokenizer is None else lambda d: tokenizer.save_pretrained(str(d)), head=head)


def _head_key(model, dense: DenseTensors) -> str:
    """The dense name the output head's matrix is stored under (the token embedding's, when tied)."""
    name = head_parameter_name(model)
    return dense.tied.get(name, name)


def _dense_matrix(dense: DenseTensors, key: str) -> torch.Tensor:
    """Dense tensor `key` whole, float32 (a streamed model's read from its shards)."""
    t = dense.read([key])[key]
    if isinstance(t, RowPieces):
        return torch.from_numpy(np.concatenate(list(t.pieces()))).float()
    return t.detach().float().cpu()
