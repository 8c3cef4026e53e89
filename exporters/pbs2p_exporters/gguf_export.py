"""export_gguf: a pbs2p checkpoint directory -> one GGUF file (docs/GGUF.md), deterministic and atomic.

numpy + gguf + tokenizers + safetensors.numpy + pbs2p_edge.pack only: never imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pbs2p_edge.errors import ConfigError, FormatError
from pbs2p_edge.pack import FORMAT_VERSION, honest_bits, tiers
from pbs2p_edge.pack.checkpoint_dir import load_checkpoint

from pbs2p_edge.files.atomic_file import atomic_file
from .gguf_names import add_arch_keys, extra_tensors, gguf_arch, gguf_tensor_name, gguf_tensor_value, sort_key
from .gguf_tokenizer import TokenizerKeys, read_tokenizer

ALIGNMENT = 64
EMBED_TYPES = tiers.EMBED_TIERS
PACKED_INFIX = ".pbs2p."  # "<linear base>.pbs2p.<array>", e.g. blk.0.attn_q.pbs2p.mask
# per-linear parallel arrays (docs/GGUF.md §4): key suffix -> LayerMeta field
LINEAR_FIELDS = ("n", "rows", "cols", "group_size", "split", "n_salient", "has_mu", "has_col_scale")


def _f16(name: str, a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = np.asarray(a, dtype=np.float32).astype(np.float16)
    if not np.isfinite(h).all():
        raise FormatError(f"{name}: values overflow float16")
    return h


EMBEDDING_TENSORS = ("token_embd.weight", "output.weight")  # the tensors that take the embedding tier


def _dense_tensor(gname: str, a: np.ndarray, embed_type: str, stored: np.ndarray | None = None):
    """(name, array, raw ggml type or None) of an uncompressed tensor: 1-D -> F32, the embedding / head -> embed_type
    (its `stored` blocks when the checkpoint holds them: the head, Hessian-compensated; else a ggml type quantized to
    nearest by gguf-py, or our blocks by tiers.quantize_nearest; ours as I8 <base>.pbs2p.q), other matrices -> F16."""
    import gguf

    if a.ndim == 1:
        return gname, np.ascontiguousarray(a, dtype=np.float32), None
    if embed_type != "f16" and gname in EMBEDDING_TENSORS:
        t = tiers.tier(embed_type)
        t.check_cols(gname, a.shape[-1])
        if t.ggml_type is None:
            blocks = tiers.quantize_nearest(embed_type, a) if stored is None else stored
            return f"{gname.removesuffix('.weight')}{PACKED_INFIX}q", blocks.view(np.int8), None
        qtype = gguf.GGMLQuantizationType[t.ggml_type]
        return gname, gguf.quants.quantize(np.asarray(a, dtype=np.float32), qtype) if stored is None else stored, qtype
    return gname, np.ascontiguousarray(_f16(gname, a)), None


def grid_tensor(base: str, tier_name: str) -> tuple[str, np.dtype, object]:
    """(name, numpy dtype, raw ggml type or None) of a grid / f16 tier linear's tensor (docs/FORMAT.md §10): a standard
    ggml type as <base>.weight, else our blocks as I8 <base>.pbs2p.q. bench/random_gguf.py writes its random files
    through this too."""
    import gguf

    t = tiers.tier(tier_name)
    if t.ggml_type is None:
        return f"{base}{PACKED_INFIX}q", np.dtype(np.int8), None
    if tier_name == "f16":
        return f"{base}.weight", np.dtype(np.float16), None
    return f"{base}.weight", np.dtype(np.uint8), gguf.GGMLQuantizationType[t.ggml_type]


def grid_fields(tier_name: str, m: int, rows: int, cols: int) -> dict[str, int]:
    """The LINEAR_FIELDS of a grid / f16 tier linear (docs/GGUF.md §4): the file's M as n, the tier's block as the
    group size, no split, salient columns, mu or column scales."""
    return {"n": m, "rows": rows, "cols": cols, "group_size": tiers.tier(tier_name).block, "split": 0,
            "n_salient": 0, "has_mu": 0, "has_col_scale": 0}


def _grid_tensor(base: str, g: tiers.GridLayer):
    """(name, array, raw type) of a linear on a grid / f16 tier (grid_tensor)."""
    name, dtype, raw = grid_tensor(base, g.tier)
    return name, g.blocks.view(dtype), raw


@dataclass(frozen=True)
class LinearKeys:
    """One compressed linear's entries in the pbs2p.linear.* arrays (docs/GGUF.md §4)."""

    name: str  # GGUF base name, e.g. blk.0.attn_q
    source_name: str  # Hugging Face module name, e.g. model.layers.0.self_attn.q_proj
    tier: str  # tiers.BINARY for a packed layer
    fields: dict[str, int]  # LINEAR_FIELDS -> value
    honest_bits: int


def add_pbs2p_keys(w, m: int, cc: dict, linears: list[LinearKeys], embed_type: str = "f16") -> None:
    """The pbs2p.* keys (docs/GGUF.md §4) of a file whose compressed linears are `linears`, in file order; a writer
    other than export_gguf (bench/random_gguf.py) calls this so the key set lives in one place. embed_type: the tier
    of token_embd / output (pbs2p.embedding.tier names it when it is one of our block tiers)."""
    import gguf

    V = gguf.GGUFValueType
    bits = [lin.honest_bits for lin in linears]
    weights = sum(lin.fields["rows"] * lin.fields["cols"] for lin in linears)
    w.add_uint32("pbs2p.format_version", FORMAT_VERSION)
    w.add_uint32("pbs2p.m", m)
    w.add_uint32("pbs2p.n", int(cc["n"]))
    w.add_string("pbs2p.method", str(cc["method"]))
    w.add_string("pbs2p.compress_config", json.dumps(cc, sort_keys=True))
    w.add_string("pbs2p.rope.pairing", "half")
    w.add_float32("pbs2p.bits_per_weight", sum(bits) / weights)
    w.add_key_value("pbs2p.linear.names", [lin.name for lin in linears], V.ARRAY, V.STRING)
    w.add_key_value("pbs2p.linear.source_names", [lin.source_name for lin in linears], V.ARRAY, V.STRING)
    for f in LINEAR_FIELDS:
        w.add_key_value(f"pbs2p.linear.{f}", [lin.fields[f] for lin in linears], V.ARRAY, V.UINT32)
    w.add_key_value("pbs2p.linear.honest_bits", bits, V.ARRAY, V.UINT64)
    if any(lin.tier != tiers.BINARY for lin in linears):  # absent: every linear is packed (docs/FORMAT.md §10)
        w.add_key_value("pbs2p.linear.tier", [lin.tier for lin in linears], V.ARRAY, V.STRING)
    if tiers.tier(embed_type).ggml_type is None:  # our blocks: token_embd (and output) as I8 <base>.pbs2p.q
        w.add_string("pbs2p.embedding.tier", embed_type)


def add_tokenizer_keys(w, tk: TokenizerKeys) -> None:
    """tokenizer.ggml.* and tokenizer.chat_template (docs/GGUF.md §5)."""
    w.add_tokenizer_model(tk.model)
    w.add_tokenizer_pre(tk.pre)
    w.add_token_list(tk.tokens)
    w.add_token_types(tk.token_types)
    if tk.scores is not None:
        w.add_token_scores(tk.scores)
    if tk.merges:
        w.add_token_merges(tk.merges)
    adders = {"bos": w.add_bos_token_id, "eos": w.add_eos_token_id, "unk": w.add_unk_token_id,
              "pad": w.add_pad_token_id, "sep": w.add_sep_token_id}  # gguf-py's key spellings
    for role, tid in tk.special_ids.items():
        adders[role](tid)
    w.add_add_bos_token(tk.add_bos)
    w.add_add_eos_token(tk.add_eos)
    if tk.add_space_prefix is not None:
        w.add_add_space_prefix(tk.add_space_prefix)
    if tk.chat_template:
        w.add_chat_template(tk.chat_template)


def export_gguf(checkpoint_dir, out_path, embed_type: str | None = None) -> Path:
    """Write the checkpoint as GGUF; returns out_path. Same checkpoint -> byte-identical file.
    embed_type: tier of the token embedding / head; None = the checkpoint's embedding tier, else f16."""
    import gguf

    if embed_type is not None and embed_type not in EMBED_TYPES:
        raise ConfigError(f"embed_type must be one of {EMBED_TYPES}, got {embed_type!r}")
    ck = load_checkpoint(checkpoint_dir)
    ck.require_complete()
    embed_type = embed_type or ck.embed_tier or "f16"
    config = ck.config
    arch = gguf_arch(config)
    if not ck.layers and not ck.grids:
        raise FormatError(f"{ck.path}: no compressed layers")
    ms = {p.meta.m for p in ck.layers.values()} or {int(ck.compress_config["m"])}
    if len(ms) != 1:
        raise FormatError(f"{ck.path}: layers use several M values {sorted(ms)}; one file has one M")
    M = ms.pop()
    tk = read_tokenizer(ck.path, int(config["vocab_size"]), config)

    # tensors: (gguf name, array, raw type)
    tensors: list[tuple[str, np.ndarray, object]] = []
    for hf_name, a in ck.dense.items():
        g = gguf_tensor_name(arch, hf_name)
        tensors.append(_dense_tensor(g, gguf_tensor_value(arch, g, a), embed_type, ck.embedding_blocks(hf_name, embed_type)))
    for g, a in extra_tensors(arch, config).items():
        tensors.append((g, a, None))
    linears: list[LinearKeys] = []
    for hf_name, tier_name in ck.linear_tiers().items():
        base = gguf_tensor_name(arch, f"{hf_name}.weight").removesuffix(".weight")
        if tier_name == tiers.BINARY:
            p = ck.layers[hf_name]
            for k, a in p.arrays.items():  # uint8 streams travel as I8, scales as F16
                tensors.append((f"{base}{PACKED_INFIX}{k}", a.view(np.int8) if a.dtype == np.uint8 else a, None))
            meta = p.meta.to_dict()
            bits = honest_bits(p)
        else:
            g = ck.grids[hf_name]
            tensors.append(_grid_tensor(base, g))
            meta = grid_fields(g.tier, M, g.rows, g.cols)
            bits = g.honest_bits
        linears.append(LinearKeys(base, hf_name, tier_name, {f: int(meta[f]) for f in LINEAR_FIELDS}, bits))
    tensors.sort(key=lambda t: sort_key(t[0]))

    cc = ck.compress_config
    name = ck.model_name

    with atomic_file(out_path) as tmp:
        w = gguf.GGUFWriter(str(tmp), arch.gguf)
        try:
            w.add_custom_alignment(ALIGNMENT)
            w.add_type("model")
            recipe = "tiers" if ck.grids else f"{cc['method']}-{cc['n']}of{cc['m']}"
            w.add_name(f"{Path(str(name)).name}-pbs2p-{recipe}")
            w.add_string("general.quantized_by", "pbs2p-edge")
            add_arch_keys(w, arch, config)
            add_pbs2p_keys(w, M, cc, linears, embed_type)
            add_tokenizer_keys(w, tk)
            for g, a, raw in tensors:
                w.add_tensor(g, a, raw_dtype=raw)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
        finally:
            w.close()
    return Path(out_path)
