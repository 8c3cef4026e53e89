"""Tensor names, ggml types and byte sizes of any GGUF file, including ggml types newer than gguf-py knows.

gguf-py (and libpbs2p's reader) refuse a file holding a type they do not know, such as llama.cpp's
Q2_0; this reads only the header and tensor infos (GGUF v2/v3 layout), so honest sizes can be counted
for every file llama.cpp writes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

# ggml type id -> (name, elements per block, bytes per block) for ids gguf-py does not list.
EXTRA_TYPES = {42: ("Q2_0", 64, 18)}
# GGUF metadata value type -> struct format of a scalar (8 string, 9 array are handled apart)
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    type_name: str
    n_elements: int
    n_bytes: int


def type_layout(type_id: int) -> tuple[str, int, int]:
    """(name, block elements, block bytes) of a ggml type id; KeyError for one nobody here knows."""
    if type_id in EXTRA_TYPES:
        return EXTRA_TYPES[type_id]
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    t = GGMLQuantizationType(type_id)
    block, nbytes = GGML_QUANT_SIZES[t]
    return t.name, block, nbytes


class _Cursor:
    def __init__(self, f):
        self.f = f

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise ValueError("truncated GGUF header")
        return struct.unpack("<" + fmt, data)[0]

    def string(self) -> str:
        return self.f.read(self.read("Q")).decode("utf-8", "replace")

    def skip_value(self, vtype: int) -> None:
        if vtype == 8:
            self.f.seek(self.read("Q"), 1)
        elif vtype == 9:
            item, n = self.read("I"), self.read("Q")
            if item in _SCALAR:
                self.f.seek(n * struct.calcsize(_SCALAR[item]), 1)
            else:
                for _ in range(n):
                    self.skip_value(item)
        else:
            self.f.seek(struct.calcsize(_SCALAR[vtype]), 1)


def read_tensors(path: Path) -> list[TensorInfo]:
    """Every tensor's name, type name, element count and stored bytes, in file order."""
    with open(path, "rb") as f:
        c = _Cursor(f)
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version = c.read("I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = c.read("Q"), c.read("Q")
        for _ in range(n_kv):
            c.string()
            c.skip_value(c.read("I"))
        out = []
        for _ in range(n_tensors):
            name = c.string()
            dims = [c.read("Q") for _ in range(c.read("I"))]
            type_id = c.read("I")
            c.read("Q")  # offset
            n = 1
            for d in dims:
                n *= d
            type_name, block, nbytes = type_layout(type_id)
            out.append(TensorInfo(name, type_name, n, n // block * nbytes))
        return out
