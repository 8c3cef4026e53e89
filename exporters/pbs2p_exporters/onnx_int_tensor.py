"""ONNX integer initializers of 2, 4 or 8 bits (INT2/UINT2, INT4/UINT4, INT8/UINT8) packed as the ONNX spec says.

Sub-byte types pack 8 / bits elements per byte of raw_data, element i (row-major) at bits
bits * (i % per_byte) of byte i // per_byte, LSB first, signed ones in two's complement; the last
byte is zero-padded. onnx's own writer (helper.make_tensor) stores the same bytes as an int32 list,
one int per byte, which is 4x larger in memory while building; this one writes raw_data directly.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from pbs2p_edge.errors import FormatError

# ONNX integer type -> (bits, smallest value, largest value), narrowest first
INT_TYPES = {
    TensorProto.UINT2: (2, 0, 3),
    TensorProto.INT2: (2, -2, 1),
    TensorProto.UINT4: (4, 0, 15),
    TensorProto.INT4: (4, -8, 7),
    TensorProto.UINT8: (8, 0, 255),
    TensorProto.INT8: (8, -128, 127),
}


def narrowest_int_type(lo: int, hi: int) -> int:
    """The first ONNX type of INT_TYPES (fewest bits, unsigned before signed) holding every integer in lo..hi."""
    for data_type, (_, tlo, thi) in INT_TYPES.items():
        if tlo <= lo and hi <= thi:
            return data_type
    raise FormatError(f"no ONNX integer type of at most 8 bits holds {lo}..{hi}")


def int_tensor(name: str, values: np.ndarray, data_type: int) -> TensorProto:
    """A TensorProto of `data_type` (a key of INT_TYPES) and values' shape; FormatError if a value does not fit."""
    bits, lo, hi = INT_TYPES[data_type]
    v = np.asarray(values)
    if v.size and (v.min() < lo or v.max() > hi):
        raise FormatError(f"{name or 'tensor'}: values {v.min()}..{v.max()} do not fit "
                          f"{TensorProto.DataType.Name(data_type)} ({lo}..{hi})")
    flat = np.ascontiguousarray(v, dtype=np.int16).reshape(-1)  # checked: any value fits 16 bits
    per_byte = 8 // bits
    codes = (flat & ((1 << bits) - 1)).astype(np.uint8)  # two's complement low bits
    codes = np.concatenate([codes, np.zeros((-codes.size) % per_byte, np.uint8)]).reshape(-1, per_byte)
    raw = np.zeros(codes.shape[0], np.uint8)
    for j in range(per_byte):
        raw |= codes[:, j] << np.uint8(bits * j)
    t = TensorProto()
    t.name = name
    t.data_type = data_type
    t.dims.extend(np.shape(values))
    t.raw_data = raw.tobytes()
    return t
