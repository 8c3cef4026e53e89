"""Random-weight GGUF files of a Llama shape, one tensor at a time: ours (packed or grid-tier linears), F16 for a peer.

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
from pbs2p_edge.pack.layout import VALUE_OF, LayerMeta, expected_arrays, group_width, mask_width
from pbs2p_edge.files.atomic_file import atomic_file
from pbs2p_exporters.gguf_export import (ALIGNMENT, LINEAR_FIELDS, PACKED_INFIX, LinearKeys, add_pbs2p_keys,
                                         add_tokenizer_keys, grid_fields, grid_tensor)
from pbs2p_exporters.gguf_names import add_arch_keys, gguf_arch, gguf_tensor_name, sort_key
from pbs2p_exporters.gguf_tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, TokenizerKeys

STD = 0.02  # of the random weights: small, so no activation overflows float16 in llama.cpp
M = 8  # our packed linears' M
DEFAULT_LINEAR = "compact-4:8"  # the paper's compact structure at 4:8 (one alpha and one mu per row)
PAPER_GROUP = 128  # the paper preset's scale groups (alpha / mu per 128 columns of a row)
PAPER_SPLIT = 2  # its split groups
SALIENT_FRACTION = 0.4  # its salient columns: SmolLM2's paper 6:8 export keeps 221-588 of 576-1536, about 0.4
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


def parse_linear(kind: str) -> tuple[str, int]:
    """("compact" or "paper", n) of a packed kind "compact-4:8" / "paper-6:8", or (tier, 0) of a grid tier name."""
    preset, _, nm = kind.partition("-")
    if preset in ("compact", "paper") and nm.endswith(f":{M}") and nm[:-2].isdigit() and 1 <= int(nm[:-2]) < M:
        return preset, int(nm[:-2])
    if kind in tiers.TIERS and tiers.tier(kind).grid:
        return kind, 0
    raise ValueError(f"unknown linear kind {kind!r}: compact-N:{M}, paper-N:{M} (N in 1..{M - 1}) or a grid tier "
                     f"({', '.join(t for t in tiers.TIERS if tiers.tier(t).grid)})")


def packed_meta(preset: str, n: int, R: int, K: int) -> LayerMeta:
    """The structure of a random packed layer: compact (one region, one scale group per row) or the paper's (salient
    columns, PAPER_SPLIT split groups, alpha / alpha2 / mu per PAPER_GROUP columns)."""
    if preset == "compact":
        return LayerMeta(rows=R, cols=K, n=n, m=M, group_size=K, split=1, has_salient=False, n_salient=0,
                         has_mu=True, has_col_scale=False)
    return LayerMeta(rows=R, cols=K, n=n, m=M, group_size=PAPER_GROUP, split=PAPER_SPLIT, has_salient=True,
                     n_salient=max(1, round(SALIENT_FRACTION * K)), has_mu=True, has_col_scale=False)


def _paper_arrays(rng: np.random.Generator, meta: LayerMeta) -> dict[str, np.ndarray]:
    """Every array of a random layer with salient columns and split groups, consistent as the format requires
    (docs/FORMAT.md): plane-1 signs only where a salient column is kept, split-group indices 0 on salient columns."""
    R, K, n = meta.rows, meta.cols, meta.n
    codes = rng.integers(0, math.comb(M, n), size=(R, K // M), dtype=np.uint16)
    bitmaps = VALUE_OF[(n, M)][codes].astype(np.uint16)
    kept = ((bitmaps[:, :, None] >> np.arange(M, dtype=np.uint16)) & 1).astype(bool).reshape(R, K)
    salient = np.zeros(K, bool)
    salient[rng.choice(K, size=meta.n_salient, replace=False)] = True
    kept_cols = np.nonzero(kept)[1].astype(np.int32).reshape(R, meta.kept_per_row)
    split = rng.integers(0, meta.split, size=(R, meta.kept_per_row), dtype=np.uint8)
    split[salient[kept_cols]] = 0
    signs2 = rng.integers(0, 2, size=(R, meta.n_salient), dtype=np.uint8) & kept[:, salient]
    out = {"mask": pack_fields(codes, mask_width(n, M)),
           "signs": pack_fields(rng.integers(0, 2, size=(R, meta.kept_per_row), dtype=np.uint8), 1),
           "signs2": pack_fields(signs2, 1),
           "salient": np.packbits(salient, bitorder="little"),
           "groups": pack_fields(split, group_width(meta.split))}
    out = {k: a.view(np.int8) for k, a in out.items()}
    G, nreg = meta.groups, meta.regions
    out["alpha"] = (STD * (0.5 + rng.random((nreg, R, G)))).astype(np.float16)
    out["alpha2"] = (0.5 * STD * (0.5 + rng.random((R, G)))).astype(np.float16)
    out["mu"] = (0.1 * STD * rng.standard_normal((nreg, R, G))).astype(np.float16)
    return out


def _grid_blocks(rng: np.random.Generator, name: str, R: int, K: int) -> np.ndarray:
    """Random blocks of grid tier `name`: random codes and scales for our tiers (tiers.pack), random normal rows
    rounded by gguf-py for a ggml type."""
    import gguf

    t = tiers.tier(name)
    if t.ggml_type is not None:
        return _normal_quant(rng, R, K, gguf.GGMLQuantizationType[t.ggml_type])
    scale = lambda shape: (STD / t.qmax * (0.5 + rng.random(shape))).astype(np.float16)  # noqa: E731
    q = rng.integers(0, t.qmax + 1, size=(R, K), dtype=np.uint8)
    if t.sub:
        sub = (R, K // t.sub)
        return tiers.pack(name, q, scale((R, 1)), -scale((R, 1)), rng.integers(0, tiers.SUB_CODE_MAX + 1, sub),
                          rng.integers(0, tiers.SUB_CODE_MAX + 1, sub))
    return tiers.pack(name, q, scale((R, K // t.block)), -scale((R, K // t.block)) if t.has_min else None)


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


def _packed_tensors(base: str, meta: LayerMeta, seed: list[int]) -> list[Tensor]:
    """The tensors of one random packed layer: each array made when written; the paper structure's arrays, which
    must agree with each other, from one generator run per layer (remembered for the layer's next array)."""
    arrays = expected_arrays(meta)
    made: dict[str, np.ndarray] = {}

    def make(k: str, shape: tuple[int, ...]) -> np.ndarray:
        if not meta.has_salient:
            return _packed_array(np.random.default_rng([*seed, list(arrays).index(k)]), meta, k, shape)
        if not made:
            made.update(_paper_arrays(np.random.default_rng(seed), meta))
        return made.pop(k)

    return [Tensor(f"{base}{PACKED_INFIX}{k}", shape, np.dtype(np.int8) if dtype == np.uint8 else np.dtype(dtype),
                   None, lambda k=k, shape=shape: make(k, shape)) for k, (shape, dtype) in arrays.items()]


def write_ours(path, config: dict, seed: int = 0, linear: str = DEFAULT_LINEAR) -> Path:
    """The shape as our GGUF (docs/GGUF.md): every decoder linear a random `linear` (parse_linear: a packed layer of
    the compact or the paper structure, or a grid tier), token_embd / output in EMBED_TYPE, norms F32 ones, the
    synthetic vocabulary."""
    import gguf

    arch = gguf_arch(config)
    preset, n = parse_linear(linear)
    cc = CompressConfig(method="pbs2p", n=n or 4, m=M, seed=seed, **PRESETS.get(preset, PRESETS["compact"])).to_dict()
    tensors = _norms(config) + _embeddings(config, gguf.GGMLQuantizationType[EMBED_TYPE], seed)
    keys_of: list[LinearKeys] = []
    for j, (hf, R, K) in enumerate(linears(config)):
        base = gguf_tensor_name(arch, f"{hf}.weight").removesuffix(".weight")
        if n:
            meta = packed_meta(preset, n, R, K)
            tensors += _packed_tensors(base, meta, [seed, 1, j])
            fields = {f: int(getattr(meta, f)) for f in LINEAR_FIELDS}
            bits = 8 * sum(math.prod(s) * d.itemsize for s, d in expected_arrays(meta).values())  # FORMAT.md §8
        else:
            name, dtype, raw = grid_tensor(base, preset)
            shape = (R, tiers.tier(preset).row_bytes(K))
            tensors.append(Tensor(name, shape, dtype, raw, lambda R=R, K=K, j=j, dtype=dtype: _grid_blocks(
                np.random.default_rng([seed, 1, j]), preset, R, K).view(dtype)))
            fields = grid_fields(preset, M, R, K)
            bits = 8 * math.prod(shape)
        keys_of.append(LinearKeys(base, hf, tiers.BINARY if n else preset, {f: fields[f] for f in LINEAR_FIELDS},
                                  bits))

    def keys(w):
        w.add_custom_alignment(ALIGNMENT)  # docs/GGUF.md §1 (not in the F16 file: llama.cpp's quantize keeps the
        # key but writes its own 32-byte alignment, and then cannot load what it wrote)
        w.add_name(f"random-{config['hidden_size']}x{config['num_hidden_layers']}-pbs2p-{linear.replace(':', 'of')}")
        w.add_string("general.quantized_by", "pbs2p-edge (random weights, no compression)")
        add_pbs2p_keys(w, M, cc, keys_of)
        add_tokenizer_keys(w, synthetic_tokenizer(config["vocab_size"]))

    return _write(Path(path), config, keys, tensors)
