"""read_gguf_linears: the linears of a pbs2p GGUF file, every tier, and its metadata, via gguf.GGUFReader (tests, inspect)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack import FORMAT_VERSION, LayerMeta, PackedLayer, packed_layers, tiers

from .gguf_export import LINEAR_FIELDS, PACKED_INFIX


def open_gguf(path):
    """A gguf.GGUFReader, or FormatError when the file is not a readable GGUF."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    try:
        return gguf.GGUFReader(str(path))
    except Exception as e:  # GGUFReader raises ValueError / struct errors / IndexError on garbage
        raise FormatError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None


def gguf_fields(reader, path=None) -> dict:
    """key -> Python value of every metadata field (the GGUF.* header pseudo-fields left out); FormatError for a
    field gguf-py cannot decode (a string that is not UTF-8, a value cut short)."""
    out = {}
    for k, f in reader.fields.items():
        if k.startswith("GGUF."):
            continue
        try:
            out[k] = f.contents()
        except (UnicodeDecodeError, ValueError, IndexError) as e:
            where = f"{path}: " if path is not None else ""
            raise FormatError(f"{where}GGUF metadata {k!r} cannot be read ({type(e).__name__}: {e})") from None
    return out


def read_gguf_linears(path) -> tuple[dict[str, PackedLayer], dict[str, tiers.GridLayer], dict]:
    """(base name -> PackedLayer of a binary-tier linear, base name -> GridLayer of a grid / f16 one, metadata);
    FormatError if the file is not a pbs2p GGUF or its linears do not match their metadata."""
    reader = open_gguf(path)
    meta = gguf_fields(reader, path)
    version = meta.get("pbs2p.format_version")
    if version is None:
        raise FormatError(f"{path}: a GGUF file, but not a pbs2p one (no pbs2p.format_version)")
    if version != FORMAT_VERSION:
        raise FormatError(f"{path}: pbs2p format version {version} is not supported (this build reads {FORMAT_VERSION})")
    names = meta.get("pbs2p.linear.names")
    columns = {f: meta.get(f"pbs2p.linear.{f}") for f in LINEAR_FIELDS}
    tier_of = meta.get("pbs2p.linear.tier") or [tiers.BINARY] * len(names or [])
    if not names or len(tier_of) != len(names) or any(c is None or len(c) != len(names) for c in columns.values()):
        raise FormatError(f"{path}: pbs2p.linear.* metadata is missing or inconsistent")
    tensors: dict[str, dict[str, np.ndarray]] = {}
    by_name = {t.name: t for t in reader.tensors}
    for t in reader.tensors:
        if PACKED_INFIX in t.name:
            base, arr = t.name.split(PACKED_INFIX, 1)
            data = np.array(t.data)  # copy out of the memory map
            tensors.setdefault(base, {})[arr] = data.view(np.uint8) if data.dtype == np.int8 else data
    m = meta.get("pbs2p.m")
    _check_embedding(path, meta, tensors, by_name)

    grids: dict[str, tiers.GridLayer] = {}
    for i, (base, name) in enumerate(zip(names, tier_of)):
        if name == tiers.BINARY:
            continue
        t = tiers.TIERS.get(name)
        if t is None:
            raise FormatError(f"{path}: linear {base} has the unknown tier {name!r}")
        rows, cols = int(columns["rows"][i]), int(columns["cols"][i])
        if t.ggml_type is None:
            data = tensors.pop(base, {}).get("q")
        else:
            tensor = by_name.get(f"{base}.weight")
            ok = tensor is not None and tensor.tensor_type.name == t.ggml_type
            data = np.array(tensor.data).view(np.uint8).reshape(rows, -1) if ok else None
        if data is None:
            raise FormatError(f"{path}: linear {base} ({name}) has no tensor of its tier")
        try:
            grids[base] = tiers.GridLayer(name, rows, cols, data.reshape(rows, -1))
        except (FormatError, ValueError) as e:
            raise FormatError(f"{path}: linear {base}: {e}") from None

    def layer_meta(i: int) -> LayerMeta:
        d = {f: columns[f][i] for f in LINEAR_FIELDS}
        return LayerMeta(m=m, has_salient=d["n_salient"] > 0, **{**d, "has_mu": bool(d["has_mu"]),
                                                                 "has_col_scale": bool(d["has_col_scale"])})

    binary = ((base, layer_meta(i)) for i, base in enumerate(names) if tier_of[i] == tiers.BINARY)
    return packed_layers(str(path), binary, tensors), grids, meta


def _check_embedding(path, meta: dict, tensors: dict, by_name: dict) -> None:
    """Takes token_embd / output stored in our blocks (pbs2p.embedding.tier, docs/GGUF.md §4) out of `tensors` after
    checking them: the key names one of our block tiers, token_embd is stored that way and nothing else is."""
    name = meta.get("pbs2p.embedding.tier")
    if name is None:
        return  # ggml-typed token_embd.weight; a stray token_embd.pbs2p.q is refused with the linears' tensors
    t = tiers.TIERS.get(name) if isinstance(name, str) else None
    if t is None or t.ggml_type is not None:
        raise FormatError(f"{path}: pbs2p.embedding.tier {name!r} is not one of our block tiers")
    for base in ("token_embd", "output"):
        arrays = tensors.pop(base, {})
        stored = by_name.get(f"{base}{PACKED_INFIX}q")
        if set(arrays) - {"q"} or f"{base}.weight" in by_name or (base == "token_embd" and stored is None):
            raise FormatError(f"{path}: {base} must be stored as {base}{PACKED_INFIX}q alone ({name} blocks)")
        if stored is not None and (stored.tensor_type.name != "I8" or len(stored.shape) != 2):
            raise FormatError(f"{path}: {stored.name} must be a 2-D I8 tensor")


def read_gguf_packed(path) -> tuple[dict[str, PackedLayer], dict]:
    """(base name -> PackedLayer of every binary-tier linear, metadata): read_gguf_linears without the grid tiers."""
    layers, _, meta = read_gguf_linears(path)
    return layers, meta
