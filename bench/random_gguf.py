"""Random-weight GGUF files of a Llama shape, one tensor at a time: ours (packed 4:8 linears) and F16 for llama.cpp.

No compression runs: the files exist to time engines and measure their memory on shapes too large to compress
here, so every value is random and every output is meaningless. A shape is a Hugging Face LlamaConfig dict, the
record the exporter's own naming and keys (pbs2p_exporters.gguf_names) read, so both files carry exactly the keys
a real export would. Tensors are made and written one by one (gguf-py's add_tensor_info, then write_tensor_data),
so memory stays near the largest tensor (the embedding: 0.8 GB in F16 at Llama-3.2-3B's shape) whatever the
model's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pbs2p_edge.algo.config import PRESETS, CompressConfig
from pbs2p_edge.pack import tiers
from pbs2p_edge.pack.bitstream import pack_fields
from pbs2p_edge.pack.layout import LayerMeta, expected_arrays, mask_width
from pbs2p_edge.files.atomic_file import atomic_file
from pbs2p_exporters.gguf_export import (ALIGNMENT, LINEAR_FIELDS, PACKED_INFIX, LinearKeys, add_pbs2p_keys,
                                         add_tokenizer_keys)
from pbs2p_exporters.gguf_names import add_arch_keys, gguf_arch, gguf_tensor_name, sort_key
from pbs2p_exporters.gguf_tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, TokenizerKeys

STD = 0.02  # of the random weights: small, so no activation overflows float16 in llama.cpp
N, M = 4, 8  # our linears: 4:8, the paper's compact structure (one alpha and one mu per row)
EMBED_TYPE = "Q4_0"  # our token embedding / head: what our default exports use (docs/FORMAT.md §10)
CHUNK = 1 << 24  # values generated at once: bounds the float32 temporaries to 64 MiB
_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")  # model order, as a checkpoint lists them


def llama_config(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, head_dim: int, vocab: int,
                 tied: bool, rope_theta: float, context: int) -> dict:
    """The Hugging Face LlamaConfig fields of a shape (no RoPE scaling: it does not change the work per token)."""
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
            "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "head_dim": head_dim, "vocab_size": vocab, "tie_word_embeddings": tied,
            "rope_theta": float(rope_theta), "max_position_embeddings": context, "rms_norm_eps": 1e-5,
            "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}


def linears(config: dict) -> list[tuple[str, int, int]]:
    """(Hugging Face module name, rows, cols) of every decoder linear, in model order."""
    D, F, hd = config["hidden_size"], config["intermediate_size"], config["head_dim"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    shapes = dict(zip(_LINEARS, ((q, D), (kv, D), (kv, D), (D, q), (F, D), (F, D), (D, F))))
    return [(f"model.layers.{i}.{name}", *shapes[name])
            for i in range(config["num_hidden_layers"]) for name in _LINEARS]


def synthetic_tokenizer(vocab: int) -> TokenizerKeys:
    """A SentencePiece-style ("llama") vocabulary of `vocab` made-up tokens: <unk>, <s>, </s>, the 256 byte tokens
    llama.cpp's SPM loader looks up, then ▁t<i>. Enough for both engines to load; nothing here tokenizes text."""
    if vocab < 260:
        raise ValueError(f"a synthetic llama vocabulary needs at least 260 tokens, got {vocab}")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    tokens += [f"\u2581t{i}" for i in range(vocab - len(tokens))]
    types += [NORMAL] * (vocab - len(types))
    scores = [0.0] * 259 + [-float(i) for i in range(vocab - 259)]
    return TokenizerKeys(model="llama", pre="default", tokens=tokens, token_types=types, merges=[], scores=scores,
                         special_ids={"unk": 0, "bos": 1, "eos": 2}, add_bos=True, add_eos=False,
                         add_space_prefix=True)


@dataclass(frozen=True)
class Tensor:
    """One tensor to write: `make()` returns an array of `shape` and `dtype` (uint8 bytes for a raw ggml type)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    raw: object  # gguf.GGMLQuantizationType, or None for a type numpy names (F32, F16, I8)
    make: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def _rows_at_once(cols: int) -> int:
    return max(1, CHUNK // cols)


def _normal_f16(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    out = np.empty((rows, cols), np.float16)
    step = _rows_at_once(cols)
    for r in range(0, rows, step):
        out[r:r + step] = rng.standard_normal((min(step, rows - r), cols), dtype=np.float32) * STD
    return out


def _normal_quant(rng: np.random.Generator, rows: int, cols: int, qtype) -> np.ndarray:
    """Random normal rows rounded to nearest in `qtype` by gguf-py, as the exporter's embedding is."""
    import gguf

    block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    out = np.empty((rows, cols // block * block_bytes), np.uint8)
    step = _rows_at_once(cols)
    for r in range(0, rows, step):
        x = rng.standard_normal((min(step, rows - r), cols), dtype=np.float32) * STD
        out[r:r + step] = gguf.quants.quantize(x, qtype)
    return out


def _packed_array(rng: np.random.Generator, meta: LayerMeta, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """One array of a random packed layer with `meta`'s structure: valid mask codes, random signs (padding bits
    zero, as writers must), alpha ~ STD, small mu; the dtypes the GGUF stores (streams as I8, scales as F16)."""
    if key == "mask":
        R, K = meta.rows, meta.cols
        n_codes = math.comb(meta.m, meta.n)
        out = np.empty(shape, np.uint8)
        step = _rows_at_once(K)
        for r in range(0, R, step):
            codes = rng.integers(0, n_codes, size=(min(step, R - r), K // meta.m), dtype=np.uint16)
            out[r:r + step] = pack_fields(codes, mask_width(meta.n, meta.m))
        return out.view(np.int8)
    if key == "signs":
        out = rng.integers(0, 256, size=shape, dtype=np.uint8)
        tail = meta.kept_per_row % 8
        if tail:
            out[:, -1] &= (1 << tail) - 1
        return out.view(np.int8)
    if key == "alpha":
        return (STD * (0.5 + rng.random(shape))).astype(np.float16)
    if key == "mu":
        return (0.1 * STD * rng.standard_normal(shape)).astype(np.float16)
    raise ValueError(f"the random layer has no {key!r} array (structure {meta})")


def _write(path: Path, config: dict, add_keys: Callable, tensors: list[Tensor]) -> Path:
    """Keys, then the tensor table, then each tensor's data as it is made; atomic (temp file + rename)."""
    import gguf

    arch = gguf_arch(config)
    tensors = sorted(tensors, key=lambda t: sort_key(t.name))
    with atomic_file(path) as tmp:
        w = gguf.GGUFWriter(str(tmp), arch.gguf)
        try:
            w.add_type("model")
            add_arch_keys(w, arch, config)
            add_keys(w)
            for t in tensors:
                w.add_tensor_info(t.name, t.shape, t.dtype, t.nbytes, raw_dtype=t.raw)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for t in tensors:
                w.write_tensor_data(t.make())
        finally:
            w.close()
    return Path(path)


def _norms(config: dict) -> list[Tensor]:
    """Every RMSNorm weight, F32 ones."""
    D = config["hidden_size"]
    names = [f"blk.{i}.{n}_norm.weight" for i in range(config["num_hidden_layers"]) for n in ("attn", "ffn")]
    return [Tensor(n, (D,), np.dtype(np.float32), None, lambda: np.ones(D, np.float32))
            for n in names + ["output_norm.weight"]]


def _matrix(name: str, R: int, K: int, qtype, seed: list[int]) -> Tensor:
    """A random normal (R, K) matrix: F16 when qtype is None, else rounded to that ggml type."""
    import gguf

    if qtype is None:
        return Tensor(name, (R, K), np.dtype(np.float16), None,
                      lambda: _normal_f16(np.random.default_rng(seed), R, K))
    block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    return Tensor(name, (R, K // block * block_bytes), np.dtype(np.uint8), qtype,
                  lambda: _normal_quant(np.random.default_rng(seed), R, K, qtype))


def _embeddings(config: dict, qtype, seed: int) -> list[Tensor]:
    """token_embd and, untied, output: (vocab, hidden)."""
    names = ["token_embd.weight"] + ([] if config["tie_word_embeddings"] else ["output.weight"])
    return [_matrix(n, config["vocab_size"], config["hidden_size"], qtype, [seed, 0, i]) for i, n in enumerate(names)]


def write_f16(path, config: dict, seed: int = 0) -> Path:
    """The shape as llama.cpp's F16 GGUF (what convert_hf_to_gguf.py writes, without the Q/K row permutation
    that random weights do not need), with the synthetic vocabulary; llama.cpp quantizes it from here."""
    import gguf

    def keys(w):
        w.add_name(f"random-{config['hidden_size']}x{config['num_hidden_layers']}-F16")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        add_tokenizer_keys(w, synthetic_tokenizer(config["vocab_size"]))

    arch = gguf_arch(config)
    tensors = _norms(config) + _embeddings(config, None, seed)
    tensors += [_matrix(gguf_tensor_name(arch, f"{hf}.weight"), R, K, None, [seed, 1, j])
                for j, (hf, R, K) in enumerate(linears(config))]
    return _write(Path(path), config, keys, tensors)


def write_ours(path, config: dict, seed: int = 0) -> Path:
    """The shape as our GGUF (docs/GGUF.md): every decoder linear a random packed 4:8 layer of the compact
    structure, token_embd / output in EMBED_TYPE, norms F32 ones, the synthetic vocabulary."""
    import gguf

    arch = gguf_arch(config)
    cc = CompressConfig(method="pbs2p", n=N, m=M, seed=seed, **PRESETS["compact"]).to_dict()
    tensors = _norms(config) + _embeddings(config, gguf.GGMLQuantizationType[EMBED_TYPE], seed)
    keys_of: list[LinearKeys] = []
    for j, (hf, R, K) in enumerate(linears(config)):
        base = gguf_tensor_name(arch, f"{hf}.weight").removesuffix(".weight")
        meta = LayerMeta(rows=R, cols=K, n=N, m=M, group_size=K, split=1, has_salient=False, n_salient=0,
                         has_mu=True, has_col_scale=False)
        arrays = expected_arrays(meta)
        for k, (shape, dtype) in arrays.items():
            def make(meta=meta, k=k, shape=shape, rng_seed=[seed, 1, j, list(arrays).index(k)]):
                return _packed_array(np.random.default_rng(rng_seed), meta, k, shape)

            tensors.append(Tensor(f"{base}{PACKED_INFIX}{k}", shape, np.dtype(np.int8) if dtype == np.uint8
                                  else np.dtype(dtype), None, make))
        bits = 8 * sum(math.prod(s) * d.itemsize for s, d in arrays.values())  # FORMAT.md §8
        keys_of.append(LinearKeys(base, hf, tiers.BINARY, {f: int(getattr(meta, f)) for f in LINEAR_FIELDS}, bits))

    def keys(w):
        w.add_custom_alignment(ALIGNMENT)  # docs/GGUF.md §1 (not in the F16 file: llama.cpp's quantize keeps the
        # key but writes its own 32-byte alignment, and then cannot load what it wrote)
        w.add_name(f"random-{config['hidden_size']}x{config['num_hidden_layers']}-pbs2p-compact-{N}of{M}")
        w.add_string("general.quantized_by", "pbs2p-edge (random weights, no compression)")
        add_pbs2p_keys(w, M, cc, keys_of)
        add_tokenizer_keys(w, synthetic_tokenizer(config["vocab_size"]))

    return _write(Path(path), config, keys, tensors)
