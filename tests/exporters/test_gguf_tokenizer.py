"""Tests of tokenizer.ggml.* extraction: byte-level BPE ("gpt2") and SentencePiece-style byte-fallback BPE ("llama")."""

import json

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from pbs2p_edge.errors import FormatError
from pbs2p_exporters.gguf_tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, read_tokenizer


def spm_dir(tmp_path):
    """A Llama-2-like tokenizer.json: BPE with byte fallback, '▁' prefix normalizer, <s> prepended."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "▁he", "▁hell", "▁hello", "lo"]:
        vocab[piece] = len(vocab)
    merges = [("▁", "h"), ("l", "l"), ("▁h", "e"), ("▁he", "ll"), ("▁hell", "o"), ("l", "o")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                                                  "unk_token": "<unk>"}))
    return tmp_path, len(vocab)


def test_sentencepiece_style(tmp_path):
    d, n = spm_dir(tmp_path)
    tk = read_tokenizer(d, n + 3, {})
    assert tk.model == "llama" and tk.pre == "default"
    assert len(tk.tokens) == n + 3 and tk.tokens[-1] == f"[PAD{n + 2}]" and tk.token_types[-1] == UNUSED
    assert tk.token_types[0] == UNKNOWN and tk.token_types[1] == CONTROL and tk.token_types[2] == CONTROL
    assert tk.token_types[3] == BYTE and tk.tokens[3] == "<0x00>" and tk.token_types[3 + 255] == BYTE
    hello = tk.tokens.index("▁hello")
    assert tk.token_types[hello] == NORMAL
    assert tk.scores[hello] == -5.0 and tk.scores[tk.tokens.index("▁h")] == -1.0 and tk.scores[tk.tokens.index("h")] == 0.0
    assert tk.merges[0] == "▁ h"
    assert tk.special_ids == {"bos": 1, "eos": 2, "unk": 0}
    assert tk.add_bos is True and tk.add_eos is False and tk.add_space_prefix is True


def test_refusals(tmp_path):
    with pytest.raises(FormatError, match="no tokenizer.json"):
        read_tokenizer(tmp_path, 10, {})
    d, n = spm_dir(tmp_path)
    with pytest.raises(FormatError, match="embeds only"):
        read_tokenizer(d, n - 1, {})
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(d / "tokenizer.json"))
    with pytest.raises(FormatError, match="not supported"):
        read_tokenizer(d, 2, {})


@pytest.mark.parametrize("scheme, split, pre, prefix", [
    ("first", False, "metaspace-first", True), ("always", False, "metaspace-always", True),
    ("never", False, "metaspace-never", False), ("first", True, "metaspace-first-split", True),
])
def test_metaspace_layouts(tmp_path, scheme, split, pre, prefix):
    """The '▁' prefix rule of a Metaspace pre-tokenizer is kept in tokenizer.ggml.pre (the C reader needs it)."""
    d, n = spm_dir(tmp_path)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
    tok.save(str(d / "tokenizer.json"))
    tk = read_tokenizer(d, n, {})
    assert (tk.model, tk.pre, tk.add_space_prefix) == ("llama", pre, prefix)


def test_byte_fallback_layouts_that_would_not_match_hf_are_refused(tmp_path):
    d, n = spm_dir(tmp_path)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" ", "▁")])
    tok.save(str(d / "tokenizer.json"))
    with pytest.raises(FormatError, match="not supported"):
        read_tokenizer(d, n, {})
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.Metaspace()])
    tok.save(str(d / "tokenizer.json"))
    with pytest.raises(FormatError, match="not supported"):
        read_tokenizer(d, n, {})
    tok.pre_tokenizer = None  # spaces would stay ' ', which no '▁' piece matches
    tok.save(str(d / "tokenizer.json"))
    with pytest.raises(FormatError, match="not supported"):
        read_tokenizer(d, n, {})
