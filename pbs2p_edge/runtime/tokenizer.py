"""Tokenizer: libpbs2p's byte-level BPE tokenizer (pbs2p_tokenizer_*) read from a GGUF file's tokenizer.ggml.* keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ._ffi import ffi, lib
from .status import c_path, check

PRE_NAMES = {0: "gpt-2", 1: "smollm", 2: "llama", 3: "llama-bpe", 4: "qwen2"}  # pbs2p_tokenizer_info.pre


@dataclass(frozen=True)
class TokenizerInfo:
    n_vocab: int
    n_merges: int
    n_added: int       # control + user-defined tokens, matched whole before BPE
    pre: str           # "gpt-2", "smollm", "llama-bpe", "qwen2" (byte-level BPE) or "llama" (SentencePiece-style)
    bos: int | None
    eos: int | None
    unk: int | None
    pad: int | None
    add_bos: bool
    add_eos: bool


class Tokenizer:
    """The tokenizer of the GGUF file at `path` (NativeError with the C message when it has none or a bad one).

    encode(text) -> ids (no BOS/EOS unless add_special), decode(ids) -> text (invalid UTF-8 replaced).
    """

    def __init__(self, path):
        self.path = Path(path)
        f = ffi.new("pbs2p_gguf **")
        check(lib.pbs2p_gguf_open(c_path(self.path), f), f"open {self.path}")
        try:
            out = ffi.new("pbs2p_tokenizer **")
            check(lib.pbs2p_tokenizer_load(f[0], out), f"tokenizer of {self.path}")
        finally:
            lib.pbs2p_gguf_close(f[0])  # the tokenizer copied what it needs
        self._c = ffi.gc(out[0], lib.pbs2p_tokenizer_free)
        self.info = _info(self._c)

    @classmethod
    def borrow(cls, handle, owner, path) -> "Tokenizer":
        """A Tokenizer over a C tokenizer that `owner` owns (pbs2p_model_tokenizer); it keeps `owner` referenced
        and must not outlive owner's C object."""
        self = cls.__new__(cls)
        self.path, self._owner, self._c = Path(path), owner, handle
        self.info = _info(handle)
        return self

    def encode(self, text: str, add_special: bool = False) -> list[int]:
        """Token ids of `text`; add_special prepends BOS / appends EOS where the file's add_bos/add_eos say so."""
        if not isinstance(text, str):
            raise ConfigError(f"encode needs a str, got {type(text).__name__}")
        data = text.encode("utf-8", "surrogatepass")
        n = ffi.new("size_t *")
        # byte-level BPE gives at most one id per byte; a "llama" file can give more (a space prefix, byte
        # fallback of a missing "▁"), and then the C call reports the capacity it needs: one retry.
        cap = len(data) + 1
        while True:
            ids = np.empty(cap, dtype=np.int32)
            status = lib.pbs2p_tokenize(self._c, data, len(data), ffi.cast("int32_t *", ffi.from_buffer(ids)), cap, n)
            if status == lib.PBS2P_ERR_ARGUMENT and n[0] > cap:
                cap = int(n[0])
                continue
            check(status, f"tokenize {len(data)} bytes")
            break
        out = ids[: n[0]].tolist()
        if add_special and self.info.add_bos and self.info.bos is not None:
            out.insert(0, self.info.bos)
        if add_special and self.info.add_eos and self.info.eos is not None:
            out.append(self.info.eos)
        return out

    def decode_bytes(self, ids) -> bytes:
        """The bytes `ids` decode to (a cut-off UTF-8 character stays cut)."""
        arr = np.ascontiguousarray(np.asarray(list(ids), dtype=np.int64))
        if arr.size and (arr.min() < 0 or arr.max() >= self.info.n_vocab):
            raise ConfigError(f"token ids must be in [0, {self.info.n_vocab}), got {arr.min()}..{arr.max()}")
        arr = arr.astype(np.int32)
        n = ffi.new("size_t *")
        ptr = ffi.cast("int32_t *", ffi.from_buffer(arr)) if arr.size else ffi.NULL
        cap = max(int(arr.size) * 16, 16)
        while True:
            buf = ffi.new("char[]", cap)
            status = lib.pbs2p_detokenize(self._c, ptr, arr.size, buf, cap, n)
            if status == lib.PBS2P_ERR_ARGUMENT and n[0] > cap:
                cap = int(n[0])
                continue
            check(status, f"detokenize {arr.size} ids")
            return ffi.buffer(buf, n[0])[:]

    def decode(self, ids) -> str:
        """The text `ids` decode to (bytes that are not valid UTF-8 become U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", "replace")

    def piece(self, token_id: int) -> bytes:
        """The bytes one token decodes to."""
        s, n = ffi.new("const char **"), ffi.new("size_t *")
        check(lib.pbs2p_token_to_piece(self._c, int(token_id), s, n), f"piece of token {token_id}")
        return ffi.buffer(s[0], n[0])[:]


def _info(handle) -> TokenizerInfo:
    i = ffi.new("pbs2p_tokenizer_info *")
    check(lib.pbs2p_tokenizer_get_info(handle, i), "tokenizer info")

    def opt(v):
        return None if v < 0 else int(v)

    return TokenizerInfo(i.n_vocab, i.n_merges, i.n_added, PRE_NAMES.get(i.pre, str(i.pre)),
                         opt(i.bos), opt(i.eos), opt(i.unk), opt(i.pad), bool(i.add_bos), bool(i.add_eos))
