"""write_safetensors: a .safetensors file written tensor by tensor, a large tensor in row pieces, never whole.

Why not safetensors.numpy.save_file: it takes every tensor whole and serializes them into one bytes object before
writing, so a shard holds twice its size in memory. Writing a streamed model's dense tensors (a Llama-3-8B's
embedding and head are 2.1 GB each at float32) that way would double the peak of a compression that otherwise holds
one decoder block. The container is simple and fixed (github.com/huggingface/safetensors, "Format"): an 8-byte
little-endian header length, a JSON header (each tensor's dtype, shape and [begin, end) byte offsets in the data,
plus "__metadata__"), padded with spaces to a multiple of 8, then the tensors' bytes back to back. We write what
safetensors itself writes (its tensor order: by dtype, larger items first, then by name; compact JSON), and read every file
back with safetensors.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import FormatError

# numpy dtype -> safetensors dtype name (the ones a state dict holds), in the order safetensors writes them (its
# Dtype enum, descending: larger items first, so every tensor's offset is a multiple of its item size)
DTYPES = {np.dtype(np.int64): "I64", np.dtype(np.float64): "F64", np.dtype(np.float32): "F32",
          np.dtype(np.int32): "I32", np.dtype(np.float16): "F16", np.dtype(np.int16): "I16", np.dtype(np.int8): "I8",
          np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}
_RANK = {d: i for i, d in enumerate(DTYPES)}


@dataclass(frozen=True)
class RowPieces:
    """A tensor given as consecutive pieces along its first axis (each C-contiguous, of `dtype`), produced when it is
    written: only one piece is in memory at a time."""
    shape: tuple[int, ...]
    dtype: np.dtype
    pieces: Callable[[], Iterator[np.ndarray]]

    @property
    def nbytes(self) -> int:
        """Bytes of the whole tensor, as numpy's nbytes."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


Tensor = np.ndarray | RowPieces


def _header(tensors: dict[str, Tensor], metadata: dict[str, str] | None) -> tuple[bytes, list[str]]:
    for k, t in tensors.items():
        if np.dtype(t.dtype) not in DTYPES:
            raise FormatError(f"{k}: dtype {np.dtype(t.dtype)} has no safetensors type here")
    order = sorted(tensors, key=lambda k: (_RANK[np.dtype(tensors[k].dtype)], k))
    head: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for k in order:
        t = tensors[k]
        dtype = np.dtype(t.dtype)
        end = offset + t.nbytes
        head[k] = {"dtype": DTYPES[dtype], "shape": list(t.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(head, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, order


def _bytes(a: np.ndarray) -> np.ndarray:
    """a's buffer as flat uint8, no copy (a C-contiguous)."""
    return a.reshape(-1).view(np.uint8)


def _chunks(t: Tensor) -> Iterator[np.ndarray]:
    if isinstance(t, np.ndarray):
        yield _bytes(np.ascontiguousarray(t))
        return
    rows = 0
    for piece in t.pieces():
        if piece.dtype != t.dtype or tuple(piece.shape[1:]) != tuple(t.shape[1:]) or not piece.flags.c_contiguous:
            raise FormatError(f"a row piece of {piece.dtype} {tuple(piece.shape)} does not fit {t.dtype} {t.shape}")
        rows += piece.shape[0] if piece.ndim else 1
        yield _bytes(piece)
    if rows != (t.shape[0] if t.shape else 1):
        raise FormatError(f"row pieces gave {rows} rows for a tensor of shape {t.shape}")


def write_safetensors(f, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (name -> array or RowPieces) to the open binary file f as a .safetensors file."""
    header, order = _header(tensors, metadata)
    f.write(header)
    for k in order:
        for chunk in _chunks(tensors[k]):
            f.write(chunk)
