"""A model whose weights stay in its safetensors shards until one part of it is needed (block streaming).

open_streamed builds the model on the meta device (no weight memory; buffers such as RoPE's inverse frequencies
are real) and indexes the shards' tensors from their headers alone. The compression then materializes one
decoder block at a time, at float32 on the compute device, and releases it when the block is done: peak memory is
one block, the calibration activations and the results, whatever the model's depth. The embedding is read for
the calibration capture and released; the checkpoint's dense tensors are read one shard's worth at a time.

Hugging Face directories of safetensors shards stream here, GGUF files through the same class in
model/gguf_stream.py; a PyTorch-pickle directory, or one whose stored names do not cover the model's parameters,
loads whole, as before. The values are those from_pretrained(dtype=float32) gives (a stored bfloat16 or float16
widens exactly), so a streamed compression writes the same checkpoint bytes.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError, one_line

if TYPE_CHECKING:
    from ..pack.safetensors_stream import RowPieces

log = logging.getLogger(__name__)

INDEX_JSON = "model.safetensors.index.json"
# [choice] elements read at a time from a tensor larger than this (an embedding: 128256 x 4096 at Llama-3's size):
# 64 MiB as bfloat16
READ_CHUNK = 1 << 25


def shard_index(directory: Path) -> dict[str, str]:
    """Stored tensor name -> shard file name, from the index file or the shards' own headers; {} when the directory
    holds no safetensors. ModelError for an index that names a missing shard or a shard that cannot be read."""
    from safetensors import safe_open

    index = directory / INDEX_JSON
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{index}: not a safetensors index ({one_line(exc)})") from exc
        if not isinstance(weight_map, dict):
            raise ModelError(f"{index}: weight_map is not a mapping")
        missing = sorted({f for f in weight_map.values() if not (directory / str(f)).is_file()})
        if missing:
            raise ModelError(f"{index} names shards that are not there: {', '.join(missing[:3])}")
        return {str(k): str(v) for k, v in weight_map.items()}
    found: dict[str, str] = {}
    for shard in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(shard), framework="pt") as f:
                found.update({k: shard.name for k in f.keys()})
        except Exception as exc:  # safetensors raises its own error kinds on a damaged header
            raise ModelError(f"{shard}: cannot read its safetensors header ({one_line(exc)})") from exc
    return found


def stored_parameters(directory: Path) -> int:
    """Elements of every tensor in a directory's safetensors shards, from their headers (0 when it holds none)."""
    from safetensors import safe_open

    index = shard_index(directory)
    total = 0
    for shard in sorted(set(index.values())):
        with safe_open(str(directory / shard), framework="pt") as f:
            total += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return total


def _stored_name(name: str, index: dict[str, str], prefix: str) -> str | None:
    """The stored name of state-dict entry `name`: itself, or without the base model's prefix (older checkpoints,
    e.g. OPT's "decoder.*", were saved from the base model)."""
    if name in index:
        return name
    if prefix and name.startswith(prefix + ".") and name[len(prefix) + 1:] in index:
        return name[len(prefix) + 1:]
    return None


_TORCH_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


class StreamedWeights:
    """The shards of one model directory, read tensor by tensor at float32.

    stored: state-dict name of the meta model -> stored name, for every entry that is not a tied copy;
    tied: a tied copy's state-dict name -> the name it shares storage with (the head of a tied embedding).
    """

    def __init__(self, directory: Path, index: dict[str, str], stored: dict[str, str], tied: dict[str, str]):
        self.directory, self.index, self.stored, self.tied = directory, index, stored, tied

    def read(self, names: Iterable[str], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """name -> its float32 tensor on `device`, every name read from its shard (tied names from their source)."""
        return {n: self._read(self.stored[self.tied.get(n, n)], device) for n in names}

    def read_rows(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        """Rows `rows` (1-D int64) of 2-D tensor `name`, float32 on CPU: a few rows of an embedding without the rest."""
        from safetensors import safe_open

        stored = self.stored[self.tied.get(name, name)]
        with safe_open(str(self.directory / self.index[stored]), framework="pt") as f:
            part = f.get_slice(stored)
            return torch.cat([part[int(r): int(r) + 1] for r in rows]).float() if len(rows) else torch.empty(0)

    def read_stored(self, name: str, device: str | torch.device = "cpu") -> torch.Tensor:
        """Tensor `name` whole, in the dtype the source stores it (bfloat16 shards: half the float32 read's memory)."""
        return self._whole(self.stored[self.tied.get(name, name)]).to(device)

    def stored_dtype(self, name: str) -> torch.dtype:
        """The dtype read_stored gives tensor `name` in: the float32 that read() gives holds exactly its values, so
        converting that float32 back to it gives read_stored's tensor without reading the source again."""
        return self._dtype(self.stored[self.tied.get(name, name)])

    def _shape(self, stored: str) -> list[int]:
        from safetensors import safe_open

        with safe_open(str(self.directory / self.index[stored]), framework="pt") as f:
            return f.get_slice(stored).get_shape()

    def _dtype(self, stored: str) -> torch.dtype:
        from safetensors import safe_open

        with safe_open(str(self.directory / self.index[stored]), framework="pt") as f:
            return _TORCH_DTYPES.get(f.get_slice(stored).get_dtype(), torch.float32)

    def _whole(self, stored: str) -> torch.Tensor:
        """One stored tensor, whole, as stored (the shard mapped while it is read)."""
        from safetensors import safe_open

        with safe_open(str(self.directory / self.index[stored]), framework="pt") as f:
            return f.get_tensor(stored)

    def _read(self, stored: str, device: str | torch.device) -> torch.Tensor:
        """One stored tensor at float32. The shard is mapped while it is read and unmapped after (a mapped page counts
        in the process's resident memory); a large tensor is read in pieces of READ_CHUNK elements, each with the shard
        mapped anew, so memory holds the float32 result and one piece as stored, not the whole tensor twice."""
        shape = self._shape(stored)
        if not shape or math.prod(shape) <= READ_CHUNK:
            return self._whole(stored).to(device=device, dtype=torch.float32)
        out = torch.empty(shape, dtype=torch.float32, device=device)
        r = 0
        for piece in self._pieces(stored, shape):
            out[r: r + piece.shape[0]] = piece.to(device)
            r += piece.shape[0]
        return out

    def _pieces(self, stored: str, shape: list[int]) -> Iterator[torch.Tensor]:
        """Stored tensor `stored` (of `shape`) as float32 pieces of about READ_CHUNK elements along its first axis,
        each read with the shard mapped anew (a 0-d tensor: one piece)."""
        from safetensors import safe_open

        path = str(self.directory / self.index[stored])
        if not shape:
            yield self._whole(stored).to(torch.float32)
            return
        step = max(1, READ_CHUNK // max(1, math.prod(shape[1:])))
        for r in range(0, shape[0], step):
            with safe_open(path, framework="pt") as f:
                yield f.get_slice(stored)[r: r + step].to(torch.float32)

    def row_pieces(self, name: str) -> RowPieces:
        """Tensor `name` for a checkpoint writer, as RowPieces of float32 numpy arrays (pieces of about READ_CHUNK
        elements) read from the shard while they are written: a shard of the checkpoint never holds its tensors
        in memory together, however many of them it groups."""
        from ..pack.safetensors_stream import RowPieces

        stored = self.stored[self.tied.get(name, name)]
        shape = self._shape(stored)
        return RowPieces(tuple(shape), np.dtype(np.float32),
                         lambda: (p.numpy() for p in self._pieces(stored, shape)))

    def load(self, module: nn.Module, prefix: str, device: str | torch.device) -> None:
        """Materialize every parameter of `module` (state-dict prefix `prefix`) from the shards onto `device`."""
        from accelerate.utils import set_module_tensor_to_device

        names = [k for k, _ in module.named_parameters(recurse=True)]
        values = self.read([f"{prefix}.{k}" for k in names], device)
        for k in names:
            set_module_tensor_to_device(module, k, device, value=values[f"{prefix}.{k}"])

    @staticmethod
    def release(module: nn.Module) -> None:
        """Every parameter of `module` back on the meta device, in the shape its module declares: its memory is freed.
        A linear whose weight was let go while its block ran (held.release_weight: an empty tensor) gets its
        (out_features, in_features) back, so that load() can read the block again."""
        for sub in module.modules():
            for k, p in list(sub.named_parameters(recurse=False)):
                shape = (sub.out_features, sub.in_features) if isinstance(sub, nn.Linear) and k == "weight" else p.shape
                sub.register_parameter(k, nn.Parameter(torch.empty(shape, dtype=p.dtype, device="meta"),
                                                       requires_grad=p.requires_grad))


def meta_model(config) -> nn.Module:
    """The causal LM `config` describes, on the meta device (parameters take no memory; buffers such as RoPE's
    inverse frequencies are computed for real), its tied weights tied."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.tie_weights()
    model.eval()
    return model


def map_parameters(model: nn.Module, stored_name, where: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """(stored, tied) of StreamedWeights for a meta model: stored_name(state-dict name) gives a parameter's stored
    name or None; a parameter sharing another's storage is a tied copy. None when some parameter is not stored or the
    model has a persistent buffer or a buffer left on meta (not a case the streaming covers: load it whole)."""
    stored: dict[str, str] = {}
    tied: dict[str, str] = {}
    first: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied[name] = first[id(p)]
            continue
        first[id(p)] = name
        s = stored_name(name)
        if s is None:
            log.info("%s does not stream: %s is not in it", where, name)
            return None
        stored[name] = s
    persistent = set(model.state_dict()) - {n for n, _ in model.named_parameters(remove_duplicate=False)}
    if persistent or any(b.is_meta for b in model.buffers()):
        return None
    return stored, tied


def open_streamed(directory: str | Path, config) -> tuple[nn.Module, StreamedWeights] | None:
    """(the model on the meta device, its StreamedWeights) for a directory of safetensors shards whose stored names
    cover every parameter of the model `config` describes; None when the directory does not stream (no safetensors,
    or names that do not match: the caller loads it whole and transformers deals with it)."""
    directory = Path(directory)
    index = shard_index(directory)
    if not index:
        return None
    model = meta_model(config)
    prefix = getattr(model, "base_model_prefix", "")
    mapped = map_parameters(model, lambda name: _stored_name(name, index, prefix), str(directory))
    if mapped is None:
        return None
    return model, StreamedWeights(directory, index, *mapped)
