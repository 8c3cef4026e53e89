"""Fixed-width bit fields packed per row into LSB-first byte streams (docs/FORMAT.md §1), vectorized numpy."""

from __future__ import annotations

import numpy as np


def pack_fields(fields: np.ndarray, width: int) -> np.ndarray:
    """fields (R, F) unsigned ints < 2**width -> (R, ceil(F*width/8)) uint8; field k at bits [k*w, (k+1)*w)."""
    R, F = fields.shape
    if width == 0 or F == 0:
        return np.zeros((R, 0), dtype=np.uint8)
    shifts = np.arange(width, dtype=np.uint32)
    bits = ((fields.astype(np.uint32)[:, :, None] >> shifts) & 1).astype(np.uint8)  # (R, F, w), LSB first
    return np.packbits(bits.reshape(R, F * width), axis=1, bitorder="little")


def unpack_fields(stream: np.ndarray, count: int, width: int) -> np.ndarray:
    """Inverse of pack_fields: (R, B) uint8 -> (R, count) uint32."""
    R = stream.shape[0]
    if width == 0 or count == 0:
        return np.zeros((R, count), dtype=np.uint32)
    bits = np.unpackbits(stream, axis=1, count=count * width, bitorder="little").reshape(R, count, width)
    weights = np.left_shift(np.uint32(1), np.arange(width, dtype=np.uint32))
    return (bits.astype(np.uint32) * weights).sum(axis=2, dtype=np.uint32)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool (..., F) -> (..., ceil(F/8)) uint8, bit t = bit t%8 of byte t//8. Always C-contiguous:
    a column-sliced input would otherwise give a Fortran-ordered stream, whose raw buffer (what
    safetensors writes) is not the row-major stream the format describes."""
    return np.ascontiguousarray(np.packbits(bits.astype(np.uint8), axis=-1, bitorder="little"))


def unpack_bits(stream: np.ndarray, count: int) -> np.ndarray:
    """Inverse of pack_bits: (..., B) uint8 -> bool (..., count)."""
    return np.unpackbits(stream, axis=-1, count=count, bitorder="little").astype(bool)
