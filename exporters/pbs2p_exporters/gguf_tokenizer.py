"""Tokenizer metadata for GGUF (tokenizer.ggml.*), read from a checkpoint's tokenizer files with `tokenizers`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pbs2p_edge.errors import FormatError

# gguf.TokenType values (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class TokenizerKeys:
    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE with byte fallback)
    pre: str  # gpt2: llama.cpp pre-tokenizer name; llama: where the '▁' prefix goes (_spm_layout)
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    scores: list[float] | None = None  # "llama" only: -rank of the merge that makes the token, 0 otherwise
    special_ids: dict[str, int] = field(default_factory=dict)  # bos / eos / unk / pad / sep -> id
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    chat_template: str | None = None


def _components(node) -> list[dict]:
    """A tokenizer.json pre_tokenizer/normalizer node flattened (Sequence -> its members)."""
    if not node:
        return []
    if node.get("type") == "Sequence":
        out = []
        for child in node.get("pretokenizers", node.get("normalizers", [])):
            out.extend(_components(child))
        return out
    return [node]


# the split regexes llama.cpp names (its llama-vocab.cpp), as tokenizer.json's Split pre-tokenizer holds them
SPLIT_REGEXES = {
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
                 r"\s+(?!\S)|\s+",  # Llama-3
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
             r"\s+(?!\S)|\s+",  # Qwen2, Qwen2.5
}


def _pre_name(tj: dict, path: Path | str) -> str:
    """llama.cpp's name for the pre-tokenizer regex set (it selects the splitting rules on load); FormatError for
    one libpbs2p does not split as Hugging Face does."""
    parts = _components(tj.get("pre_tokenizer"))
    types = [p.get("type") for p in parts]
    if types == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if types == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if types == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        split = parts[0]
        name = next((k for k, v in SPLIT_REGEXES.items() if v == _split_regex(parts)), None)
        if name is not None and split.get("behavior") == "Isolated" and not split.get("invert", False):
            return name
    raise FormatError(f"{path}: byte-level pre-tokenizer {types} (split regex {json.dumps(_split_regex(parts))}) is not "
                      f"one libpbs2p splits as Hugging Face does (ByteLevel alone, Digits + ByteLevel, or the "
                      f"{' / '.join(SPLIT_REGEXES)} split regex)")


def _split_regex(parts: list[dict]) -> str | None:
    """The regex of the first Split pre-tokenizer in parts, None without one."""
    return next(((p.get("pattern") or {}).get("Regex") for p in parts if p.get("type") == "Split"), None)


def _spm_layout(tj: dict, path: Path | str) -> tuple[str, bool]:
    """tokenizer.ggml.pre and add_space_prefix of a "llama" tokenizer: where it puts the '▁' prefix.

    "default": normalizer Prepend("▁") + Replace(" ", "▁") (Llama-2), '▁' before every text segment, or Replace
    alone (Gemma: no prefix; its Split(" ") pre-tokenizer has no space left to split at);
    "metaspace-<prepend_scheme>[-split]": the Metaspace pre-tokenizer (docs/GGUF.md §5). Anything else would
    not tokenize as Hugging Face does, so it is refused.
    """
    norms = _components(tj.get("normalizer"))
    pres = _components(tj.get("pre_tokenizer"))
    if [p.get("type") for p in pres] == ["Metaspace"] and not norms:
        m = pres[0]
        if m.get("replacement", "▁") != "▁":
            raise FormatError(f"{path}: Metaspace replacement {m.get('replacement')!r} is not '▁'; not supported")
        scheme = m.get("prepend_scheme") or ("always" if m.get("add_prefix_space", True) else "never")
        if scheme not in ("always", "first", "never"):
            raise FormatError(f"{path}: Metaspace prepend_scheme {scheme!r} is not supported")
        return f"metaspace-{scheme}" + ("-split" if m.get("split", True) else ""), scheme != "never"

    def is_replace(p):
        return p.get("type") == "Replace" and p.get("pattern") == {"String": " "} and p.get("content") == "▁"

    def splits_spaces(p):  # a no-op after Replace(" ", "▁"): no space is left to split at (Gemma, from its GGUF)
        return p.get("type") == "Split" and p.get("pattern") == {"String": " "}

    prepend = norms[0].get("type") == "Prepend" and norms[0].get("prepend") == "▁" if norms else False
    if (all(map(splits_spaces, pres)) and norms and is_replace(norms[-1]) and len(norms) == 1 + prepend):
        return "default", prepend
    raise FormatError(f"{path}: byte-fallback BPE with normalizer {[p.get('type') for p in norms]} and "
                      f"pre-tokenizer {[p.get('type') for p in pres]} is not supported (Llama-2 Prepend + Replace, "
                      "or Metaspace alone)")


def _special_name(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def tokenizer_layout(tj: dict, where: Path | str) -> tuple[str, str, bool | None]:
    """(model, pre, add_space_prefix) of TokenizerKeys for a tokenizer.json's content; FormatError for a tokenizer
    libpbs2p would not split as Hugging Face does. Cheap: compress() runs it on the loaded tokenizer before a
    GGUF export's compression, so an unsupported tokenizer fails before the hours, not after."""
    mdl = tj.get("model", {})
    if mdl.get("type") != "BPE":
        raise FormatError(f"{where}: tokenizer model {mdl.get('type')!r} is not supported (BPE only)")
    byte_level = any(p.get("type") == "ByteLevel" for p in _components(tj.get("pre_tokenizer"))) or \
        (tj.get("decoder") or {}).get("type") == "ByteLevel"
    if byte_level:
        return "gpt2", _pre_name(tj, where), None
    if mdl.get("byte_fallback"):
        return ("llama", *_spm_layout(tj, where))
    raise FormatError(f"{where}: BPE tokenizer is neither byte-level nor byte-fallback; not supported")


def read_tokenizer(ckpt_dir: Path, vocab_size: int, model_config: dict) -> TokenizerKeys:
    """Everything tokenizer.ggml.* needs; FormatError if the checkpoint has no usable tokenizer.json."""
    from tokenizers import Tokenizer

    path = ckpt_dir / "tokenizer.json"
    if not path.is_file():
        raise FormatError(f"{ckpt_dir}: no tokenizer.json (GGUF export needs the tokenizer)")
    try:
        tj = json.loads(path.read_text(encoding="utf-8"))
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises its own Exception type
        raise FormatError(f"{path}: unreadable tokenizer ({e})") from None
    tcfg_path = ckpt_dir / "tokenizer_config.json"
    tcfg = json.loads(tcfg_path.read_text(encoding="utf-8")) if tcfg_path.is_file() else {}

    mdl = tj.get("model", {})
    kind, pre, add_space_prefix = tokenizer_layout(tj, path)

    vocab = tok.get_vocab(with_added_tokens=True)  # token -> id
    n = max(max(vocab.values()) + 1, vocab_size)
    if n > vocab_size:
        raise FormatError(f"{path}: tokenizer has {n} tokens but the model embeds only {vocab_size}")
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [UNUSED] * n
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = NORMAL
    for added in tj.get("added_tokens", []):
        types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED

    raw_merges = mdl.get("merges", [])
    merges = [" ".join(mg) if isinstance(mg, list) else mg for mg in raw_merges]
    scores = None
    unk = mdl.get("unk_token")
    if kind == "llama":
        for i, text in enumerate(tokens):
            if types[i] == NORMAL and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
                types[i] = BYTE
        if unk is not None and unk in vocab:
            types[vocab[unk]] = UNKNOWN
        scores = [0.0] * n
        for rank, mg in enumerate(merges):
            merged = mg.replace(" ", "", 1)
            if merged in vocab and scores[vocab[merged]] == 0.0:  # first (highest-priority) merge wins
                scores[vocab[merged]] = -float(rank + 1)

    special_ids: dict[str, int] = {}
    for role in ("bos", "eos", "unk", "pad", "sep"):
        name = _special_name(tcfg.get(f"{role}_token"))
        if name is None and role == "unk":
            name = unk
        if name is not None and name in vocab:
            special_ids[role] = vocab[name]
        elif isinstance(model_config.get(f"{role}_token_id"), (int, list)):
            v = model_config[f"{role}_token_id"]
            v = v[0] if isinstance(v, list) and v else v
            if isinstance(v, int) and 0 <= v < n:
                special_ids[role] = v

    add_bos, add_eos = tcfg.get("add_bos_token"), tcfg.get("add_eos_token")
    if add_bos is None or add_eos is None:  # infer from the post-processor
        with_sp = tok.encode("a", add_special_tokens=True).ids
        plain = tok.encode("a", add_special_tokens=False).ids
        if add_bos is None:
            add_bos = len(with_sp) > len(plain) and with_sp[0] != plain[0]
        if add_eos is None:
            add_eos = len(with_sp) > len(plain) and with_sp[-1] != plain[-1]

    template = tcfg.get("chat_template")
    jinja = ckpt_dir / "chat_template.jinja"
    if template is None and jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    if isinstance(template, list):  # [{"name": ..., "template": ...}]: keep the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)

    return TokenizerKeys(model=kind, pre=pre, tokens=tokens,
                         token_types=types, merges=merges, scores=scores, special_ids=special_ids,
                         add_bos=bool(add_bos), add_eos=bool(add_eos), add_space_prefix=add_space_prefix,
                         chat_template=template)
