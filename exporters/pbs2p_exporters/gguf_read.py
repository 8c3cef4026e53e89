"""read_gguf_packed: the packed linears and metadata of a pbs2p GGUF file, via gguf.GGUFReader (for tests and inspect)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack import FORMAT_VERSION, LayerMeta, PackedLayer, packed_layers

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


def gguf_fields(reader) -> dict:
    """key -> Python value of every metadata field (the GGUF.* header pseudo-fields left out)."""
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def read_gguf_packed(path) -> tuple[dict[str, PackedLayer], dict]:
    """(GGUF linear base name -> PackedLayer, metadata dict); FormatError if the file is not a pbs2p GGUF."""
    reader = open_gguf(path)
    meta = gguf_fields(reader)
    version = meta.get("pbs2p.format_version")
    if version is None:
        raise FormatError(f"{path}: a GGUF file, but not a pbs2p one (no pbs2p.format_version)")
    if version != FORMAT_VERSION:
        raise FormatError(f"{path}: pbs2p format version {version} is not supported (this build reads {FORMAT_VERSION})")
    names = meta.get("pbs2p.linear.names")
    columns = {f: meta.get(f"pbs2p.linear.{f}") for f in LINEAR_FIELDS}
    if not names or any(c is None or len(c) != len(names) for c in columns.values()):
        raise FormatError(f"{path}: pbs2p.linear.* metadata is missing or inconsistent")
    tensors: dict[str, dict[str, np.ndarray]] = {}
    for t in reader.tensors:
        if PACKED_INFIX in t.name:
            base, arr = t.name.split(PACKED_INFIX, 1)
            data = np.array(t.data)  # copy out of the memory map
            tensors.setdefault(base, {})[arr] = data.view(np.uint8) if data.dtype == np.int8 else data
    m = meta.get("pbs2p.m")

    def layer_meta(i: int) -> LayerMeta:
        d = {f: columns[f][i] for f in LINEAR_FIELDS}
        return LayerMeta(m=m, has_salient=d["n_salient"] > 0, **{**d, "has_mu": bool(d["has_mu"]),
                                                                 "has_col_scale": bool(d["has_col_scale"])})

    return packed_layers(str(path), ((base, layer_meta(i)) for i, base in enumerate(names)), tensors), meta
