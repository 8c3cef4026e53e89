"""A GGUF file as a streamed model's weights (model/stream.py): each tensor read from the file and dequantized when its
part of the model is needed, never the whole model at float32.

from_pretrained(gguf_file=...) dequantizes every tensor of the file into one state dict and then builds the model
from it: a 7B model's 4 GB Q4 file takes 28 GB of float32 and more while it is copied. Here the file's tensor table is
read once (offsets, types, shapes; the mapping is closed after), and a tensor's bytes are read with plain file reads
when it is needed, so no mapped page of the file stays counted in the process's memory. The values are those
from_pretrained gives, bit for bit: the same gguf dequantization, the same transformers tensor processor (llama.cpp
permutes a Llama's q/k rows for its RoPE and stores Gemma's norms plus one; the processor undoes both), the same names
(transformers' own GGUF -> Hugging Face name map).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import stream
from .stream import StreamedWeights, map_parameters, meta_model

log = logging.getLogger(__name__)

# GGUF architectures whose transformers tensor processor changes one tensor at a time, by its own name
PER_TENSOR = ("llama", "gemma2", "gemma3")


@dataclass(frozen=True)
class GGUFTensor:
    """Where one tensor of a GGUF file lies: byte offset in the file, byte count, ggml type, shape in numpy order
    (rows first: GGUF lists the fastest dimension first)."""
    offset: int
    nbytes: int
    qtype: int
    shape: tuple[int, ...]

    @property
    def rows(self) -> int:
        """Rows along the first axis (a 0-d tensor: one)."""
        return self.shape[0] if self.shape else 1


def tensor_table(path: Path) -> tuple[str, dict[str, GGUFTensor]]:
    """(the file's general.architecture, tensor name -> GGUFTensor) from its header; the file's mapping is dropped
    before returning."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    arch = bytes(field.parts[field.data[0]]).decode("utf-8")
    table = {t.name: GGUFTensor(int(t.data_offset), int(t.n_bytes), int(t.tensor_type),
                                tuple(int(d) for d in reversed(t.shape.tolist())))
             for t in reader.tensors}
    del reader
    return arch, table


class GGUFWeights(StreamedWeights):
    """StreamedWeights whose tensors come from one GGUF file (stored names are the file's tensor names).

    process(gguf name, float32 array) -> the array transformers' tensor processor makes of it."""

    def __init__(self, path: Path, table: dict[str, GGUFTensor], stored: dict[str, str], tied: dict[str, str],
                 process: Callable[[str, np.ndarray], np.ndarray]):
        super().__init__(path.parent, {}, stored, tied)
        self.path, self.table, self.process = path, table, process
        self._row_wise: dict[str, bool] = {}

    def _rows(self, stored: str, r0: int, r1: int) -> np.ndarray:
        """Rows r0 .. r1 - 1 of tensor `stored` dequantized to float32 as the file holds them (before processing): a
        ggml row is whole blocks of its own, so a row range is a byte range."""
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        t = self.table[stored]
        row_bytes = t.nbytes // t.rows
        raw = np.fromfile(self.path, dtype=np.uint8, count=(r1 - r0) * row_bytes, offset=t.offset + r0 * row_bytes)
        values = dequantize(raw.reshape(r1 - r0, row_bytes), GGMLQuantizationType(t.qtype))
        return np.asarray(values, dtype=np.float32).reshape((r1 - r0, *t.shape[1:]) if t.shape else ())

    def _rows_kept(self, stored: str) -> bool:
        """Whether the processor leaves this tensor's rows as the file holds them (then a row range is read alone): it
        is run once on a column of row numbers."""
        if stored not in self._row_wise:
            t = self.table[stored]
            rows = np.arange(t.rows, dtype=np.float32).reshape(-1, 1)
            out = self.process(stored, rows.copy())
            self._row_wise[stored] = out.shape == rows.shape and bool(np.array_equal(out, rows))
        return self._row_wise[stored]

    def _shape(self, stored: str) -> list[int]:
        return list(self.table[stored].shape)

    def _dtype(self, stored: str) -> torch.dtype:
        return torch.float32  # _whole dequantizes

    def _whole(self, stored: str) -> torch.Tensor:
        values = self._rows(stored, 0, self.table[stored].rows)
        return torch.from_numpy(np.ascontiguousarray(self.process(stored, values), dtype=np.float32))

    def _pieces(self, stored: str, shape: list[int]) -> Iterator[torch.Tensor]:
        if not shape or math.prod(shape) <= stream.READ_CHUNK or not self._rows_kept(stored):
            yield self._whole(stored)
            return
        step = max(1, stream.READ_CHUNK // max(1, math.prod(shape[1:])))
        for r in range(0, shape[0], step):
            yield torch.from_numpy(self._rows(stored, r, min(shape[0], r + step)))

    def read_rows(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        stored = self.stored[self.tied.get(name, name)]
        if not len(rows):
            return torch.empty(0)
        if not self._rows_kept(stored):
            return self._whole(stored)[rows]
        return torch.cat([torch.from_numpy(self._rows(stored, int(r), int(r) + 1)) for r in rows])


def open_gguf_streamed(path: str | Path, config) -> tuple[nn.Module, GGUFWeights] | None:
    """(the model on the meta device, its GGUFWeights) for a GGUF file whose tensors cover every parameter of the
    model `config` (read from the same file) describes; None when they do not, or when this transformers has no GGUF
    name map (the caller loads it whole)."""
    try:
        from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor, \
            get_gguf_hf_weights_map
    except ImportError:
        return None
    path = Path(path)
    arch, table = tensor_table(path)
    model = meta_model(config)
    kind = TENSOR_PROCESSORS.get(arch, TensorProcessor)
    # [choice] the processors that change one tensor at a time, by its own name (others merge or split tensors:
    # MoE experts, fused qkv); a file of another kind loads whole
    if kind not in {TensorProcessor, *(TENSOR_PROCESSORS.get(a) for a in PER_TENSOR)}:
        log.info("%s does not stream: transformers' %s processor is not per tensor", path, kind.__name__)
        return None
    processor = kind(config=config.to_dict())
    try:
        to_hf = get_gguf_hf_weights_map(model, processor)
    except NotImplementedError:  # an architecture gguf-py does not name
        return None
    from_hf = {hf: g for g, hf in to_hf.items() if g in table}
    mapped = map_parameters(model, from_hf.get, str(path))
    if mapped is None:
        return None

    def process(name: str, values: np.ndarray) -> np.ndarray:
        return processor.process(weights=values, name=name, tensor_key_mapping=to_hf, parsed_parameters={}).weights

    return model, GGUFWeights(path, table, *mapped, process)
