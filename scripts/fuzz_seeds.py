"""Writes the fuzz seed corpus tests/data/fuzz/seeds/: small real GGUF files from the real exporter (tiny Llamas).

Run from the repository root: python scripts/fuzz_seeds.py. Each file stays under ~100 KB (hidden 32, one or
two blocks, vocab 320) so the corpus can live in git; libFuzzer mutates these into the hard-to-reach states
(valid header, valid pbs2p linears, a loadable model).
"""

import copy
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "exporters")]

from checkpoint.tiny_compressed import compress  # noqa: E402
from conftest import make_tiny_tokenizer  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig  # noqa: E402

from pbs2p_edge.algo.config import CompressConfig  # noqa: E402
from pbs2p_edge.checkpoint import save_checkpoint  # noqa: E402
from pbs2p_exporters.gguf_export import export_gguf  # noqa: E402

OUT = ROOT / "tests" / "data" / "fuzz" / "seeds"
MAX_BYTES = 100_000

# name -> (config overrides, embed_type, compress kwargs)
BUILDS = {
    "llama_tied_f16": ({"num_hidden_layers": 1}, "f16", {}),
    "llama_untied_q8": ({"tie_word_embeddings": False, "num_hidden_layers": 1}, "q8_0", {}),
    "llama_salient_bias": ({"attention_bias": True, "mlp_bias": True, "num_hidden_layers": 1}, "f16",
                           {"n_salient": 3, "split": 2}),
    "llama_2blk_nomu": ({"num_hidden_layers": 2}, "q8_0", {"use_mu": False}),
}


def tiny_llama(**overrides):
    cfg = LlamaConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                      tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def stock_gguf(path: Path) -> None:
    """A non-pbs2p GGUF holding every value type, a string array and F32 / F16 / Q8_0 / I8 tensors (reader paths)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("t.u8", 7); w.add_int8("t.i8", -7); w.add_uint16("t.u16", 700); w.add_int16("t.i16", -700)
    w.add_uint32("t.u32", 70000); w.add_int32("t.i32", -70000); w.add_float32("t.f32", 1.5)
    w.add_uint64("t.u64", 1 << 40); w.add_int64("t.i64", -(1 << 40)); w.add_float64("t.f64", 2.25)
    w.add_bool("t.bool", True); w.add_string("t.str", "hello"); w.add_array("t.arr_str", ["a", "bc", ""])
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_tensor("f32", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("f16", np.arange(8, dtype=np.float16))
    w.add_tensor("i8", np.arange(-4, 4, dtype=np.int8))
    q8 = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    stock_gguf(OUT / "stock_all_types.gguf")
    print(f"tests/data/fuzz/seeds/stock_all_types.gguf: {(OUT / 'stock_all_types.gguf').stat().st_size} bytes")
    tok = make_tiny_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (overrides, embed_type, kw) in BUILDS.items():
            model = tiny_llama(**overrides)
            ck = Path(tmp) / name
            save_checkpoint(ck, model, copy.deepcopy(tok), compress(model, **kw), CompressConfig(n=4, m=8), {},
                            {"model_id": name})
            path = export_gguf(ck, OUT / f"{name}.gguf", embed_type=embed_type)
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise SystemExit(f"{path}: {size} bytes, above the {MAX_BYTES}-byte seed limit")
            print(f"{path.relative_to(ROOT)}: {size} bytes")


if __name__ == "__main__":
    main()
