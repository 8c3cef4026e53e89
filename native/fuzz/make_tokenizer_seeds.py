"""Writes the tokenizer fuzz seeds tests/data/fuzz/tokenizer/seeds/: u32 GGUF length + tokenizer GGUF + text.

Run from the repository root: python native/fuzz/make_tokenizer_seeds.py. The GGUFs hold only tokenizer.ggml.*
keys, written as gguf_export writes them (tests/runtime/test_tokenizer.py's write_tokenizer_gguf): the tiny
byte-level BPE of tests/conftest.py (pre "gpt-2", and the same vocabulary with pre "smollm") and a small
SentencePiece-style "llama" BPE with byte fallback (Llama-2 layout). The seed layout is native/fuzz/fuzz_tokenizer.c's.
"""

import struct
import sys
import tempfile
from pathlib import Path

import gguf
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "runtime"), str(ROOT / "exporters")]

from conftest import make_tiny_tokenizer  # noqa: E402
from test_tokenizer import SMOL_SPECIAL, legacy_llama, spm_pieces, write_tokenizer_gguf  # noqa: E402

from pbs2p_exporters.gguf_tokenizer import read_tokenizer  # noqa: E402

OUT = ROOT / "tests" / "data" / "fuzz" / "tokenizer" / "seeds"

TEXTS = {  # name -> bytes: plain English, every class of the split regex, non-Latin scripts, invalid UTF-8
    "english": "It is a truth universally acknowledged, that a single man in possession of a good fortune.".encode(),
    "mixed": ("It's 12+3=15;  tabs\tand\r\nnew lines \u00a0caf\u00e9 \u6f22\u5b57 \U0001f600 <s> x<s>y "
              "1,000,000 \u0663\u0664").encode(),
    "invalid_utf8": b"ok \xff\xfe \xc3( \xe2\x82 \xf0\x9f\x98 end\x00\x01",
    "chat": SMOL_SPECIAL.encode(),
}


def seed(gguf_path: Path, text: bytes) -> bytes:
    g = gguf_path.read_bytes()
    return struct.pack("<I", len(g)) + g + text


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "tiny").mkdir()
        make_tiny_tokenizer().save_pretrained(tmp / "tiny")
        tiny = read_tokenizer(tmp / "tiny", 320, {})
        (tmp / "spm").mkdir()
        legacy_llama(*spm_pieces(True)).save_pretrained(tmp / "spm")
        n_spm = Tokenizer.from_file(str(tmp / "spm" / "tokenizer.json")).get_vocab_size()
        spm = read_tokenizer(tmp / "spm", n_spm, {})
        ggufs = {
            "gpt2": write_tokenizer_gguf(tmp / "gpt2.gguf", tiny),
            "smollm": write_tokenizer_gguf(tmp / "smollm.gguf", tiny, pre=("smollm", gguf.GGUFValueType.STRING, None)),
            "llama": write_tokenizer_gguf(tmp / "llama.gguf", spm),
        }
        for gname, path in ggufs.items():
            for tname, text in TEXTS.items():
                if gname != "gpt2" and tname == "chat":
                    continue
                out = OUT / f"{gname}_{tname}.bin"
                out.write_bytes(seed(path, text))
                print(f"{out.relative_to(ROOT)}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
