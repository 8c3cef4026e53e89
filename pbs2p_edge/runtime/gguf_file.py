"""GGUFFile: a GGUF file opened, validated and memory-mapped by libpbs2p — its keys, tensors and pbs2p packed linears."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..pack import LayerMeta
from ._ffi import ffi, lib
from .layer import PreparedLayer
from .status import c_path, check

# GGUF value type id -> (name, little-endian numpy dtype of one scalar; None for STRING / ARRAY)
VALUE_TYPES = {
    0: ("UINT8", "<u1"), 1: ("INT8", "<i1"), 2: ("UINT16", "<u2"), 3: ("INT16", "<i2"), 4: ("UINT32", "<u4"),
    5: ("INT32", "<i4"), 6: ("FLOAT32", "<f4"), 7: ("BOOL", "<u1"), 8: ("STRING", None), 9: ("ARRAY", None),
    10: ("UINT64", "<u8"), 11: ("INT64", "<i8"), 12: ("FLOAT64", "<f8"),
}
STRING, ARRAY, BOOL = 8, 9, 7


@dataclass(frozen=True)
class GGUFInfo:
    version: int
    alignment: int
    n_kv: int
    n_tensors: int
    data_offset: int  # file offset of the data section
    file_size: int


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    ggml_type: int
    type_name: str
    shape: tuple[int, ...]  # numpy order (GGUF ne reversed)
    n_elements: int
    offset: int  # file offset of the data
    n_bytes: int


def _text(ptr, n: int) -> str:
    return ffi.unpack(ffi.cast("const char *", ptr), n).decode("utf-8", "replace") if n else ""


class GGUFFile:
    """Open and validate a GGUF file (NativeError with the C message if it is malformed); close() or use `with`."""

    def __init__(self, path):
        self.path = Path(path)
        out = ffi.new("pbs2p_gguf **")
        check(lib.pbs2p_gguf_open(c_path(self.path), out), f"open {self.path}")
        self._c = ffi.gc(out[0], lib.pbs2p_gguf_close)

    def close(self) -> None:
        """Unmap the file; descriptors of its linears become unusable (prepared layers stay valid)."""
        if self._c is not None:
            ffi.release(self._c)
            self._c = None

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def handle(self):
        """The C handle; ConfigError once closed."""
        if self._c is None:
            raise ConfigError(f"{self.path}: the GGUF file is closed")
        return self._c

    @property
    def info(self) -> GGUFInfo:
        i = ffi.new("pbs2p_gguf_info *")
        check(lib.pbs2p_gguf_get_info(self.handle(), i), "GGUF info")
        return GGUFInfo(i.version, i.alignment, i.n_kv, i.n_tensors, i.data_offset, i.file_size)

    # ---- key-values ----

    def _kv(self, key: str):
        kv = ffi.new("pbs2p_gguf_kv *")
        check(lib.pbs2p_gguf_find_key(self.handle(), key.encode(), kv), f"{self.path}: key {key!r}")
        return kv

    def keys(self) -> list[str]:
        """Keys in file order."""
        kv = ffi.new("pbs2p_gguf_kv *")
        out = []
        for i in range(self.info.n_kv):
            check(lib.pbs2p_gguf_kv_at(self.handle(), i, kv), "GGUF key-value")
            out.append(ffi.string(kv.key).decode("utf-8", "replace"))
        return out

    def value_type(self, key: str) -> tuple[str, str | None]:
        """(value type name, element type name for arrays else None), e.g. ("ARRAY", "UINT32")."""
        kv = self._kv(key)
        return VALUE_TYPES[kv.type][0], VALUE_TYPES[kv.elem_type][0] if kv.type == ARRAY else None

    def value(self, key: str):
        """The value as Python: int / float / bool / str, or a list of them for an array."""
        kv = self._kv(key)
        if kv.type == STRING:
            return _text(kv.data, kv.count)
        if kv.type == ARRAY and kv.elem_type == STRING:
            s, n = ffi.new("const char **"), ffi.new("size_t *")
            out = []
            for i in range(kv.count):
                check(lib.pbs2p_gguf_get_arr_str(self.handle(), key.encode(), i, s, n), f"{key}[{i}]")
                out.append(_text(s[0], n[0]))
            return out
        dtype = np.dtype(VALUE_TYPES[kv.elem_type][1])
        a = np.frombuffer(ffi.buffer(kv.data, kv.count * dtype.itemsize), dtype) if kv.count else np.empty(0, dtype)
        if kv.elem_type == BOOL:
            a = a.astype(bool)
        return a.tolist() if kv.type == ARRAY else a[0].item()

    def fields(self) -> dict:
        """key -> value of every key-value."""
        return {k: self.value(k) for k in self.keys()}

    # ---- tensors ----

    @staticmethod
    def _tensor(t) -> GGUFTensor:
        name = lib.pbs2p_ggml_type_name(t.type)
        return GGUFTensor(ffi.string(t.name).decode("utf-8", "replace"), t.type, ffi.string(name).decode(),
                          tuple(int(t.ne[d]) for d in reversed(range(t.n_dims))), t.n_elements, t.offset, t.n_bytes)

    def tensors(self) -> list[GGUFTensor]:
        """Tensor infos in file order."""
        t = ffi.new("pbs2p_gguf_tensor *")
        out = []
        for i in range(self.info.n_tensors):
            check(lib.pbs2p_gguf_tensor_at(self.handle(), i, t), "GGUF tensor")
            out.append(self._tensor(t))
        return out

    def _find(self, name: str):
        t = ffi.new("pbs2p_gguf_tensor *")
        check(lib.pbs2p_gguf_find_tensor(self.handle(), name.encode(), t), f"{self.path}: tensor {name!r}")
        return t

    def tensor(self, name: str) -> GGUFTensor:
        return self._tensor(self._find(name))

    def tensor_bytes(self, name: str) -> np.ndarray:
        """A copy of the tensor's raw data, uint8 (n_bytes,)."""
        t = self._find(name)
        return np.frombuffer(ffi.buffer(t.data, t.n_bytes), np.uint8).copy()

    # ---- pbs2p linears ----

    def linear_names(self) -> list[str]:
        """pbs2p.linear.names (NativeError if absent)."""
        return self.value("pbs2p.linear.names")

    def check_linears(self) -> int:
        """Validate every packed linear and that no packed tensor is orphaned; returns the number of linears."""
        n = ffi.new("uint64_t *")
        check(lib.pbs2p_gguf_check_linears(self.handle(), n), f"{self.path}: pbs2p linears")
        return int(n[0])

    def linear(self, base: str) -> "GGUFLinear":
        """The packed linear `base` (e.g. "blk.0.attn_q"), checked against the file's pbs2p.* metadata."""
        return GGUFLinear(self, base)


class GGUFLinear:
    """One compressed linear of a pbs2p GGUF file: its pbs2p_layer_desc, pointing into the file's mapping."""

    def __init__(self, file: GGUFFile, base: str):
        d = ffi.new("pbs2p_layer_desc *")
        check(lib.pbs2p_gguf_layer_desc(file.handle(), base.encode(), d), f"{file.path}: linear {base!r}")
        self.file, self.name, self.c = file, base, d
        self.meta = LayerMeta(rows=d.rows, cols=d.cols, n=d.n, m=d.m, group_size=d.group_size, split=d.split,
                              has_salient=bool(d.has_salient), n_salient=d.n_salient, has_mu=bool(d.has_mu),
                              has_col_scale=bool(d.has_col_scale), version=d.format_version)

    def _desc(self):
        self.file.handle()  # the streams live in the mapping: refuse once the file is closed
        return self.c

    def dequantize(self) -> np.ndarray:
        """W_hat (R, K) float32 by the C format reference, straight from the mapped file."""
        out = np.empty((self.meta.rows, self.meta.cols), dtype=np.float32)
        check(lib.pbs2p_layer_dequantize_ref(self._desc(), ffi.cast("float *", ffi.from_buffer(out)), out.size),
              f"dequantize {self.name}")
        return out

    def prepare(self) -> PreparedLayer:
        """The repacked layer for gemv / gemm; independent of the file once built."""
        out = ffi.new("pbs2p_layer **")
        check(lib.pbs2p_layer_prepare(self._desc(), out), f"prepare {self.name}")
        layer = PreparedLayer.__new__(PreparedLayer)  # PreparedLayer's own __init__ builds from a PackedLayer
        layer.meta = self.meta
        layer._c = ffi.gc(out[0], lib.pbs2p_layer_free)
        return layer
