"""Model: a Llama-family pbs2p GGUF file run by libpbs2p's C forward pass (pbs2p_model_*), with its KV cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ._ffi import ffi, lib
from .status import check


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    n_vocab: int
    n_ctx: int        # positions the KV cache holds
    n_ctx_train: int  # llama.context_length
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_threads: int
    n_cached: int     # positions 0..n_cached-1 of the cache are valid
    tied: bool        # the head is token_embd


class Model:
    """Load and validate `path` (NativeError with the C message otherwise); close() or use `with`.

    n_ctx None: min(2048, the model's context length). eval() runs tokens at positions n_past.. over the KV
    cache and returns their logits; n_past must not exceed the positions already cached.
    """

    def __init__(self, path, n_threads: int = 1, n_ctx: int | None = None):
        self.path = Path(path)
        params = ffi.new("pbs2p_model_params *", {"n_threads": int(n_threads), "n_ctx": int(n_ctx or 0)})
        out = ffi.new("pbs2p_model **")
        check(lib.pbs2p_model_load(os.fsencode(self.path), params, out), f"load {self.path}")
        self._c = ffi.gc(out[0], lib.pbs2p_model_free)
        self._n_vocab = self.info.n_vocab

    def close(self) -> None:
        """Free the model and unmap its file."""
        if self._c is not None:
            ffi.release(self._c)
            self._c = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _handle(self):
        if self._c is None:
            raise ConfigError(f"{self.path}: the model is closed")
        return self._c

    @property
    def info(self) -> ModelInfo:
        i = ffi.new("pbs2p_model_info *")
        check(lib.pbs2p_model_get_info(self._handle(), i), "model info")
        return ModelInfo(ffi.string(i.arch).decode(), i.n_vocab, i.n_ctx, i.n_ctx_train, i.n_layer, i.n_embd, i.n_ff,
                         i.n_head, i.n_head_kv, i.head_dim, i.n_threads, i.n_cached, bool(i.tied))

    def reset(self) -> None:
        """Forget the KV cache."""
        check(lib.pbs2p_model_reset(self._handle()), "reset")

    def eval(self, tokens, n_past: int = 0, last_only: bool = False) -> np.ndarray:
        """Logits float32 (len(tokens), n_vocab), or (n_vocab,) of the last token when last_only."""
        ids = np.ascontiguousarray(np.asarray(tokens).reshape(-1))
        if ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ConfigError(f"tokens must be a non-empty sequence of integers, got {ids.dtype} of {ids.size}")
        if ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max:
            raise ConfigError("token ids must fit in int32")
        if not 0 <= int(n_past) <= np.iinfo(np.int32).max:
            raise ConfigError(f"n_past must be a non-negative int32, got {n_past}")
        ids = ids.astype(np.int32)
        shape = (self._n_vocab,) if last_only else (ids.size, self._n_vocab)
        logits = np.empty(shape, dtype=np.float32)
        check(lib.pbs2p_model_eval(self._handle(), ffi.cast("const int32_t *", ffi.from_buffer(ids)), ids.size,
                                   int(n_past), ffi.cast("float *", ffi.from_buffer(logits)), logits.size),
              f"eval {ids.size} tokens at n_past {n_past}")
        return logits

    def generate_greedy(self, prompt, n_new: int) -> list[int]:
        """The n_new tokens that greedy (arg-max) decoding appends to `prompt`, from an empty cache."""
        self.reset()
        ids = list(np.asarray(prompt).reshape(-1).tolist())
        out: list[int] = []
        logits = self.eval(ids, 0, last_only=True)
        for i in range(n_new):
            out.append(int(np.argmax(logits)))
            if i + 1 < n_new:
                logits = self.eval([out[-1]], len(ids) + i, last_only=True)
        return out
