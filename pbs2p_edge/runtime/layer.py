"""A packed layer handed to libpbs2p: the C descriptor over its numpy streams, and the prepared (repacked) layer."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..pack import PackedLayer, check_arrays
from ._ffi import ffi, lib
from .status import check

MAX_THREADS = 256  # PBS2P_MAX_THREADS in native/src/gemm.c

_U8 = {"mask": "const uint8_t *", "signs": "const uint8_t *", "signs2": "const uint8_t *",
       "salient": "const uint8_t *", "groups": "const uint8_t *"}
_F16 = {"alpha": "const uint16_t *", "alpha2": "const uint16_t *", "mu": "const uint16_t *",
        "col_scale": "const uint16_t *"}


class LayerDescriptor:
    """pbs2p_layer_desc pointing into C-contiguous copies of a PackedLayer's arrays (kept alive here)."""

    def __init__(self, packed: PackedLayer):
        if not isinstance(packed, PackedLayer):
            raise ConfigError(f"expected a pbs2p_edge.pack.PackedLayer, got {type(packed).__name__}")
        meta = packed.meta
        check_arrays("runtime", meta, packed.arrays)  # shapes and dtypes: C cannot see buffer lengths
        self.meta = meta
        self._arrays = {}
        d = ffi.new("pbs2p_layer_desc *")
        d.format_version, d.rows, d.cols, d.n, d.m = meta.version, meta.rows, meta.cols, meta.n, meta.m
        d.group_size, d.split = meta.group_size, meta.split
        d.has_salient, d.n_salient = int(meta.has_salient), meta.n_salient
        d.has_mu, d.has_col_scale = int(meta.has_mu), int(meta.has_col_scale)
        for name, ctype in {**_U8, **_F16}.items():
            if name not in packed.arrays:
                continue
            arr = packed.arrays[name]
            arr = np.ascontiguousarray(arr.view(np.uint16) if name in _F16 else arr)
            self._arrays[name] = arr
            setattr(d, name, ffi.cast(ctype, ffi.from_buffer(arr)))
        self.c = d


def dequantize(packed: PackedLayer) -> np.ndarray:
    """W_hat (R, K) float32 by the C format reference (bit-exact with pbs2p_edge.pack.unpack_layer)."""
    desc = LayerDescriptor(packed)
    out = np.empty((desc.meta.rows, desc.meta.cols), dtype=np.float32)
    check(lib.pbs2p_layer_dequantize_ref(desc.c, ffi.cast("float *", ffi.from_buffer(out)), out.size), "dequantize")
    return out


def _threads(n_threads: int) -> int:
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or not 1 <= n_threads <= MAX_THREADS:
        raise ConfigError(f"n_threads must be an integer in 1..{MAX_THREADS}, got {n_threads!r}")
    return int(n_threads)


def _activations(x, ndim: int, cols: int, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiu" or a.ndim != ndim or a.shape[-1] != cols or a.size == 0:
        want = f"({cols},)" if ndim == 1 else f"(tokens, {cols})"
        raise ConfigError(f"{what} must be a real {want} array, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


class PreparedLayer:
    """A layer repacked by pbs2p_layer_prepare for the kernels; reuse it across calls (preparing costs ~ a dequantize)."""

    def __init__(self, packed: PackedLayer):
        desc = LayerDescriptor(packed)
        self.meta = desc.meta
        out = ffi.new("pbs2p_layer **")
        check(lib.pbs2p_layer_prepare(desc.c, out), "prepare layer")
        self._c = ffi.gc(out[0], lib.pbs2p_layer_free)  # the streams may go: the prepared copy is self-contained

    @property
    def shape(self) -> tuple[int, int]:
        return (self.meta.rows, self.meta.cols)

    @property
    def nbytes(self) -> int:
        """Bytes of the in-memory layout one gemv reads (bit planes, coefficients, column scales)."""
        return int(lib.pbs2p_layer_nbytes(self._c))

    def gemv(self, x, n_threads: int = 1) -> np.ndarray:
        """y (R,) = W_hat x for x (K,)."""
        nt = _threads(n_threads)
        x = _activations(x, 1, self.meta.cols, "x")
        y = np.empty(self.meta.rows, dtype=np.float32)
        check(lib.pbs2p_gemv(self._c, ffi.cast("const float *", ffi.from_buffer(x)), x.size,
                             ffi.cast("float *", ffi.from_buffer(y)), y.size, nt), "gemv")
        return y

    def gemm(self, X, n_threads: int = 1) -> np.ndarray:
        """Y (T, R) = X W_hat^T for X (T, K)."""
        nt = _threads(n_threads)
        X = _activations(X, 2, self.meta.cols, "X")
        Y = np.empty((X.shape[0], self.meta.rows), dtype=np.float32)
        check(lib.pbs2p_gemm(self._c, ffi.cast("const float *", ffi.from_buffer(X)), X.shape[0], X.size,
                             ffi.cast("float *", ffi.from_buffer(Y)), Y.size, nt), "gemm")
        return Y
