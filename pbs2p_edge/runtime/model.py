"""Model: a pbs2p GGUF file (llama, qwen2 or opt) run by libpbs2p (pbs2p_model_*): forward pass over a KV cache, the file's
tokenizer, generation with a per-token callback (pbs2p_generate) and perplexity (pbs2p_model_perplexity)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, NativeError
from ._ffi import ffi, lib
from .sampling import INT32_MAX, SamplerParams
from .status import c_path, check
from .tokenizer import Tokenizer

MAX_THREADS = lib.PBS2P_MODEL_MAX_THREADS  # n_threads of a Model: 1..MAX_THREADS
STOP_REASONS = {lib.PBS2P_STOP_LENGTH: "length", lib.PBS2P_STOP_EOS: "eos", lib.PBS2P_STOP_CALLBACK: "callback",
                lib.PBS2P_STOP_CONTEXT: "context"}


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    n_vocab: int
    n_ctx: int        # positions the KV cache holds
    n_ctx_train: int  # <arch>.context_length
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_threads: int
    n_cached: int     # positions 0..n_cached-1 of the cache are valid
    tied: bool        # the head is token_embd
    kv: str           # the KV cache's entries: "f16" or "f32"
    step_bytes: int   # weight bytes one decode step reads as the model holds them (0 from peek); KV cache apart


@dataclass(frozen=True)
class GenerateResult:
    """What Model.generate produced. tokens: the generated ids (an eos that stopped generation included);
    text: their decoded text (None when the file has no tokenizer); stop_reason: "length" (n_predict reached),
    "eos", "callback" or "context" (KV cache full). Seconds are wall-clock: prompt = the prompt's one eval,
    decode = sampling and evals after the first generated token; rates are tokens per second: prompt = n_prompt /
    prompt_seconds, decode = (len(tokens) - 1) / decode_seconds (the first token comes from the prompt's logits),
    None when undefined (as pbs2p-run's JSON null)."""

    tokens: list[int]
    text: str | None
    n_prompt: int
    stop_reason: str
    prompt_seconds: float
    decode_seconds: float
    prompt_tokens_per_second: float | None
    decode_tokens_per_second: float | None


@dataclass(frozen=True)
class PerplexityResult:
    """ppl = exp(nll); nll: mean negative log-likelihood, nats per predicted token; windows: windows evaluated;
    tokens: predicted tokens = windows * (ctx - 1). Same fields as model.perplexity.PplResult."""

    ppl: float
    windows: int
    tokens: int
    nll: float


def _token_array(tokens, what: str) -> np.ndarray:
    """tokens as a contiguous 1-D int32 array; ConfigError when empty, not integers or outside int32."""
    ids = np.ascontiguousarray(np.asarray(tokens).reshape(-1))
    if ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"{what} must be a non-empty sequence of integers, got {ids.dtype} of {ids.size}")
    if ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max:
        raise ConfigError(f"{what}: token ids must fit in int32")
    return ids.astype(np.int32)


def _count(value, what: str, minimum: int) -> int:
    """value as an int in minimum..INT32_MAX, else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= INT32_MAX:
        raise ConfigError(f"{what} must be a whole number in {minimum}..{INT32_MAX}, got {value!r}")
    return int(value)


def _rate(tokens: int, seconds: float) -> float | None:
    """tokens / seconds, None when undefined (no tokens or no time), as pbs2p-run's JSON null."""
    return tokens / seconds if tokens > 0 and seconds > 0 else None


KV_TYPES = {"f16": lib.PBS2P_KV_F16, "f32": lib.PBS2P_KV_F32}  # Model(kv=...) -> pbs2p_model_params.kv_type


def encode_text(tok: Tokenizer, text: str, add_bos: bool | None = None, add_eos: bool | None = False) -> list[int]:
    """Model.tokenize with the tokenizer `tok` (a model's, or Tokenizer(path) before the model is loaded)."""
    ids = tok.encode(text)
    for name, asked, rule, special, at in (("bos", add_bos, tok.info.add_bos, tok.info.bos, 0),
                                           ("eos", add_eos, tok.info.add_eos, tok.info.eos, len(ids))):
        if rule if asked is None else asked:
            if special is None:
                raise ConfigError(f"{tok.path}: add_{name} is asked but the tokenizer has no {name} token")
            ids.insert(at, special)
    return ids


def _params(n_threads: int, n_ctx: int | None, kv: str):
    if kv not in KV_TYPES:
        raise ConfigError(f"kv must be one of {', '.join(KV_TYPES)}, got {kv!r}")
    return ffi.new("pbs2p_model_params *", {"n_threads": int(n_threads), "n_ctx": int(n_ctx or 0),
                                            "kv_type": KV_TYPES[kv]})


def _info(i) -> ModelInfo:
    return ModelInfo(ffi.string(i.arch).decode(), i.n_vocab, i.n_ctx, i.n_ctx_train, i.n_layer, i.n_embd, i.n_ff,
                     i.n_head, i.n_head_kv, i.head_dim, i.n_threads, i.n_cached, bool(i.tied),
                     "f16" if i.kv_type == lib.PBS2P_KV_F16 else "f32", int(i.step_bytes))


class Model:
    """Load and validate `path` (NativeError with the C message otherwise); close() or use `with`.

    n_ctx None: min(2048, the model's context length). kv: the KV cache's entries, "f16" (half the memory, as
    llama.cpp) or "f32" (the keys and values exactly as computed). eval() runs tokens at positions n_past.. over the
    KV cache and returns their logits; n_past must not exceed the positions already cached. tokenize/detokenize use
    the file's tokenizer; generate() and perplexity() run in C and take text (tokenized here) or token ids.
    """

    def __init__(self, path, n_threads: int = 1, n_ctx: int | None = None, kv: str = "f16"):
        self.path = Path(path)
        params = _params(n_threads, n_ctx, kv)
        out = ffi.new("pbs2p_model **")
        check(lib.pbs2p_model_load(c_path(self.path), params, out), f"load {self.path}")
        self._c = ffi.gc(out[0], lib.pbs2p_model_free)
        self._n_vocab = self.info.n_vocab
        self._tokenizer: Tokenizer | None = None

    def close(self) -> None:
        """Free the model (and its tokenizer) and unmap its file."""
        if self._tokenizer is not None:
            self._tokenizer._c = ffi.NULL  # a Tokenizer kept by the caller now fails with PBS2P_ERR_NULL
            self._tokenizer = None
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

    @staticmethod
    def peek(path, n_threads: int = 1, n_ctx: int | None = None, kv: str = "f16", prompt_tokens: int = 0) -> ModelInfo:
        """The info Model(path, ...) would have (n_cached 0), after the load's checks of the file, its
        hyper-parameters and the arguments, without reading any weight: milliseconds where a large model's load
        takes seconds, so inputs can be checked first. prompt_tokens > 0: NativeError unless a prompt that long
        fits the context with one generated token (generate's rule, pbs2p_prompt_fits)."""
        i = ffi.new("pbs2p_model_info *")
        check(lib.pbs2p_model_peek(c_path(Path(path)), _params(n_threads, n_ctx, kv), i), f"peek {path}")
        if prompt_tokens > 0:
            check(lib.pbs2p_prompt_fits(i, prompt_tokens), "prompt")
        return _info(i)

    @property
    def info(self) -> ModelInfo:
        i = ffi.new("pbs2p_model_info *")
        check(lib.pbs2p_model_get_info(self._handle(), i), "model info")
        return _info(i)

    def reset(self) -> None:
        """Forget the KV cache."""
        check(lib.pbs2p_model_reset(self._handle()), "reset")

    def eval(self, tokens, n_past: int = 0, last_only: bool = False) -> np.ndarray:
        """Logits float32 (len(tokens), n_vocab), or (n_vocab,) of the last token when last_only."""
        ids = _token_array(tokens, "tokens")
        if not 0 <= int(n_past) <= np.iinfo(np.int32).max:
            raise ConfigError(f"n_past must be a non-negative int32, got {n_past}")
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

    # ---- tokenizer --------------------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer of the model's file (NativeError when it has none, or a kind libpbs2p does not read).
        It belongs to the model: it stops working when the model is closed."""
        handle = self._handle()
        if self._tokenizer is None:
            out = ffi.new("const pbs2p_tokenizer **")
            check(lib.pbs2p_model_tokenizer(handle, out), f"tokenizer of {self.path}")
            self._tokenizer = Tokenizer.borrow(out[0], handle, self.path)
        return self._tokenizer

    def _tokenizer_or_none(self) -> Tokenizer | None:
        try:
            return self.tokenizer
        except NativeError as e:
            if e.status in (lib.PBS2P_ERR_NOT_FOUND, lib.PBS2P_ERR_UNSUPPORTED):
                return None
            raise

    def tokenize(self, text: str, add_bos: bool | None = None, add_eos: bool | None = False) -> list[int]:
        """Ids of `text` in one call, BOS first when add_bos, EOS last when add_eos (None: the file's
        tokenizer.ggml.add_bos_token / add_eos_token rule, which is what a Hugging Face tokenizer(text) does)."""
        return encode_text(self.tokenizer, text, add_bos, add_eos)

    def detokenize(self, ids) -> str:
        """The text `ids` decode to (bytes that are not valid UTF-8 become U+FFFD)."""
        return self.tokenizer.decode(ids)

    def _ids(self, text_or_ids, what: str, add_eos: bool | None) -> np.ndarray:
        if isinstance(text_or_ids, str):
            text_or_ids = self.tokenize(text_or_ids, add_eos=add_eos)
        return _token_array(text_or_ids, what)

    # ---- generation and perplexity (libpbs2p) -----------------------------------------------------------------

    def generate(self, prompt, n_predict: int = 64, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int = 0, stop_at_eos: bool = True, on_token=None) -> GenerateResult:
        """Up to n_predict tokens after `prompt` (text, tokenized with the BOS rule and no EOS, or ids), from an
        empty cache.

        Sampling: see SamplerParams (temperature 0: greedy). on_token(token_id, piece) is called after each new
        token, piece being the bytes it decodes to (None without a tokenizer; may be part of a UTF-8 character);
        a true return stops generation. An exception it raises stops generation and is re-raised once the C call
        has returned. A prompt of n_ctx tokens or more: NativeError (PBS2P_ERR_ARGUMENT).
        """
        sampler = SamplerParams(temperature, top_k, top_p, seed)
        n_predict = _count(n_predict, "n_predict", 0)
        ids = self._ids(prompt, "prompt", add_eos=False)
        handle = self._handle()
        params = ffi.new("pbs2p_generate_params *", {"n_predict": n_predict, "stop_at_eos": int(bool(stop_at_eos)),
                                                     "sampler": sampler.as_c_fields()})
        out = np.empty(max(n_predict, 1), dtype=np.int32)
        stats = ffi.new("pbs2p_generate_stats *")
        raised: list[BaseException] = []

        def forward(_user_data, token, piece, piece_len):
            if on_token is None:  # still called, so Ctrl-C reaches Python between tokens
                return 0
            data = None if piece == ffi.NULL else ffi.buffer(piece, piece_len)[:]
            return 1 if on_token(int(token), data) else 0

        def on_error(_exc_type, exc_value, _tb):  # never unwind through C: stop, re-raise after it returns
            raised.append(exc_value)
            return 1

        callback = ffi.callback("pbs2p_token_callback", forward, onerror=on_error)  # referenced until C returns
        status = lib.pbs2p_generate(handle, ffi.cast("const int32_t *", ffi.from_buffer(ids)), ids.size, params,
                                    callback, ffi.NULL, ffi.cast("int32_t *", ffi.from_buffer(out)), n_predict,
                                    stats)
        if raised:
            raise raised[0]
        check(status, f"generate {n_predict} tokens after a prompt of {ids.size}")
        tokens = out[: stats.n_generated].tolist()
        tok = self._tokenizer_or_none()
        return GenerateResult(
            tokens=tokens, text=None if tok is None else tok.decode(tokens), n_prompt=int(stats.n_prompt),
            stop_reason=STOP_REASONS.get(stats.stop_reason, str(stats.stop_reason)),
            prompt_seconds=float(stats.prompt_seconds), decode_seconds=float(stats.decode_seconds),
            prompt_tokens_per_second=_rate(stats.n_prompt, stats.prompt_seconds),
            decode_tokens_per_second=_rate(max(stats.n_generated - 1, 0), stats.decode_seconds))

    def perplexity(self, text_or_ids, ctx: int, max_windows: int | None = None) -> PerplexityResult:
        """Perplexity as `pbs2p-edge eval --seqlen ctx` computes it, in C: non-overlapping windows of ctx tokens of
        the text (tokenized in one call, the file's BOS/EOS rules) or ids, the tail dropped, at most max_windows
        (None: all).
        ctx must not exceed the model's n_ctx. Resets the KV cache."""
        ctx = _count(ctx, "ctx", 2)
        limit = 0 if max_windows is None else _count(max_windows, "max_windows", 1)
        ids = self._ids(text_or_ids, "tokens", add_eos=None)
        if ids.size < ctx:
            raise DataError(f"text too short for one evaluation window: needs {ctx} tokens, has {ids.size}")
        res = ffi.new("pbs2p_perplexity_result *")
        check(lib.pbs2p_model_perplexity(self._handle(), ffi.cast("const int32_t *", ffi.from_buffer(ids)),
                                         ids.size, ctx, limit, res), f"perplexity of {ids.size} tokens, ctx {ctx}")
        return PerplexityResult(ppl=float(res.ppl), windows=int(res.windows), tokens=int(res.tokens),
                                nll=float(res.nll))
