"""llama.cpp as a peer engine: load a GGUF through llama-cpp-python's C API and eval token ids, like runtime.Model.

Only llama.cpp's own calls run here (llama_decode on a batch of ids at given positions), no sampler and no
Python-side tokenizer, so a benchmark can give llama.cpp and libpbs2p exactly the same work: the same ids,
the same batch sizes, arg-max decoding in numpy for both. Needs the `peer` extra (pip install .[peer]).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np


def _llama():
    try:
        import llama_cpp
    except ImportError:
        raise SystemExit("the llama.cpp peer needs llama-cpp-python: pip install '.[peer]'") from None
    return llama_cpp


_LOG_CB = None  # the ctypes callback must outlive every llama.cpp call


def quiet_logs() -> None:
    """Route llama.cpp's log lines to nowhere (they go to stderr by default)."""
    global _LOG_CB
    L = _llama()
    if _LOG_CB is None:
        _LOG_CB = L.llama_log_callback(lambda level, text, user: None)
        L.llama_log_set(_LOG_CB, ctypes.c_void_p(0))


class LlamaRunner:
    """One llama.cpp model + context of n_ctx positions, on n_threads threads (prompt and decode alike).

    eval(ids, n_past, last_only) mirrors pbs2p_edge.runtime.Model.eval: runs ids at positions n_past.. as
    one batch (n_ubatch = n_batch = n_ctx, so a prompt is one graph, as in libpbs2p) and returns float32
    logits (len(ids), n_vocab), or (n_vocab,) of the last id.
    """

    def __init__(self, path, n_threads: int, n_ctx: int):
        L = self.L = _llama()
        quiet_logs()
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(os.fsencode(path), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp cannot load {path}")
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = n_ctx
        cp.n_threads = cp.n_threads_batch = n_threads
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp cannot create a context of {n_ctx} for {path}")
        self.n_ctx = n_ctx
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.batch = L.llama_batch_init(n_ctx, 0, 1)

    def reset(self) -> None:
        """Forget the KV cache."""
        self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), True)

    def eval(self, ids, n_past: int, last_only: bool = False) -> np.ndarray:
        ids = [int(t) for t in np.asarray(ids).reshape(-1)]
        n = len(ids)
        if not (0 < n and n_past + n <= self.n_ctx):
            raise ValueError(f"{n} ids at n_past {n_past} do not fit a context of {self.n_ctx}")
        b = self.batch
        b.n_tokens = n
        for i, t in enumerate(ids):
            b.token[i] = t
            b.pos[i] = n_past + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1 if (not last_only or i == n - 1) else 0
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        if last_only:
            ptr = self.L.llama_get_logits_ith(self.ctx, -1)
            return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        ptr = self.L.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n, self.n_vocab)).copy()

    def close(self) -> None:
        if self.ctx:
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.L.llama_model_free(self.model)
            self.ctx = self.model = None
