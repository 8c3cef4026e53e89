"""pbs2p_edge.runtime: libpbs2p through cffi — dequantize, gemv and gemm on packed layers, kernel variant control, and
our GGUF files run as models (forward, tokenizer, generation, perplexity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..pack import PackedLayer
from .kernels import available_kernels, kernel_variants, select_kernel, selected_kernel
from .layer import PreparedLayer, dequantize
from .library import find_library
from .model import GenerateResult, Model, ModelInfo, PerplexityResult
from .sampling import SamplerParams
from .tokenizer import Tokenizer, TokenizerInfo

__all__ = ["GenerateResult", "Model", "ModelInfo", "PerplexityResult", "PreparedLayer", "SamplerParams", "Tokenizer",
           "TokenizerInfo", "available_kernels", "dequantize", "gemm", "gemv", "kernel_variants", "library_path", "native_version",
           "prepare", "select_kernel", "selected_kernel"]


def native_version() -> str:
    """libpbs2p's version string (PBS2P_VERSION_STRING of the library loaded)."""
    from ._ffi import ffi, lib

    return ffi.string(lib.pbs2p_version()).decode()


def library_path() -> Path:
    """The libpbs2p shared library this process loaded."""
    return find_library()


def prepare(packed: PackedLayer) -> PreparedLayer:
    """Repack a layer once for repeated gemv/gemm calls."""
    return PreparedLayer(packed)


def _prepared(layer: PackedLayer | PreparedLayer) -> PreparedLayer:
    return layer if isinstance(layer, PreparedLayer) else PreparedLayer(layer)


def gemv(layer: PackedLayer | PreparedLayer, x: np.ndarray, n_threads: int = 1) -> np.ndarray:
    """y (R,) float32 = W_hat x for x (K,)."""
    return _prepared(layer).gemv(x, n_threads)


def gemm(layer: PackedLayer | PreparedLayer, X: np.ndarray, n_threads: int = 1) -> np.ndarray:
    """Y (T, R) float32 = X W_hat^T for X (T, K)."""
    return _prepared(layer).gemm(X, n_threads)
