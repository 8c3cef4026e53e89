"""inspect_file: what a pbs2p GGUF file, ONNX file or checkpoint directory holds, and its honest size in bits per
weight."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack import honest_bits, tiers
from pbs2p_edge.pack.checkpoint_dir import load_checkpoint
from pbs2p_edge.files.path_problem import path_problem

from .gguf_read import open_gguf, read_gguf_linears


def _layer_rows(layers: dict, grids: dict, order: list[str], m: int) -> list[dict]:
    """One row per linear in `order`: its tier, N:M (M:M for a grid tier), shape and honest bits."""
    rows = {name: {"name": name, "tier": "pbs2p", "n": int(p.meta.n), "m": int(p.meta.m), "rows": int(p.meta.rows),
                   "cols": int(p.meta.cols), "group_size": int(p.meta.group_size), "split": int(p.meta.split),
                   "n_salient": int(p.meta.n_salient), "honest_bits": honest_bits(p),
                   "bits_per_weight": honest_bits(p) / (p.meta.rows * p.meta.cols)} for name, p in layers.items()}
    rows.update({name: {"name": name, "tier": g.tier, "n": m, "m": m, "rows": g.rows, "cols": g.cols,
                        "group_size": tiers.TIERS[g.tier].block, "split": 0, "n_salient": 0,
                        "honest_bits": g.honest_bits, "bits_per_weight": g.honest_bits / (g.rows * g.cols)}
                 for name, g in grids.items()})
    return [rows[name] for name in order]


def _summary(kind: str, path: Path, architecture: str, layers: list[dict], tensors: list[dict], file_bytes: int) -> dict:
    lin_bits = sum(r["honest_bits"] for r in layers)
    lin_weights = sum(r["rows"] * r["cols"] for r in layers)
    dense_params = sum(t["elements"] for t in tensors if not t["packed"])
    params = lin_weights + dense_params
    return {
        "format": kind,
        "path": str(path),
        "architecture": architecture,
        "n_linears": len(layers),
        "tiers": {t: sum(r["tier"] == t for r in layers) for t in sorted({r["tier"] for r in layers})},
        "linear_weights": lin_weights,
        "bits_per_weight": lin_bits / lin_weights if lin_weights else None,  # honest, compressed linears only
        "params": params,
        "file_bits": 8 * file_bytes,
        "file_bits_per_param": 8 * file_bytes / params if params else None,
        "layers": layers,
        "tensors": tensors,
    }


def _inspect_gguf(path: Path) -> dict:
    layers, grids, meta = read_gguf_linears(path)
    reader = open_gguf(path)
    compressed = {f"{name}.weight" for name in grids}
    tensors = [{"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in reversed(t.shape.tolist())],
                "bytes": int(t.n_bytes), "elements": int(t.n_elements),
                "packed": ".pbs2p." in t.name or t.name in compressed} for t in reader.tensors]
    if embed_tier := meta.get("pbs2p.embedding.tier"):  # token_embd / output in our blocks: count their values
        t = tiers.tier(embed_tier)
        for d in tensors:
            if d["name"] in ("token_embd.pbs2p.q", "output.pbs2p.q"):
                d.update(type=embed_tier, elements=d["shape"][0] * t.cols_of(d["shape"][1]),
                         packed=False)
    rows = _layer_rows(layers, grids, meta["pbs2p.linear.names"], meta.get("pbs2p.m"))
    for r, src in zip(rows, meta.get("pbs2p.linear.source_names", [])):
        r["source_name"] = src
    out = _summary("gguf", path, meta.get("general.architecture"), rows, tensors, path.stat().st_size)
    embd = next((t["type"].lower() for t in tensors if t["name"] == "token_embd.weight"), None)
    out.update(format_version=meta["pbs2p.format_version"], method=meta.get("pbs2p.method"), m=meta.get("pbs2p.m"),
               n=meta.get("pbs2p.n"), embed_type=meta.get("pbs2p.embedding.tier", embd))
    return out


def _inspect_checkpoint(path: Path) -> dict:
    ck = load_checkpoint(path)
    tensors = [{"name": k, "type": str(a.dtype), "shape": list(a.shape), "bytes": int(a.nbytes),
                "elements": int(a.size), "packed": False} for k, a in ck.dense.items()]
    tensors += [{"name": f"{name}.{k}", "type": str(a.dtype), "shape": list(a.shape), "bytes": int(a.nbytes),
                 "elements": int(a.size), "packed": True} for name, p in ck.layers.items() for k, a in p.arrays.items()]
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    tensors += [{"name": f"{name}.weight", "type": g.tier, "shape": list(g.blocks.shape), "bytes": int(g.blocks.nbytes),
                 "elements": g.rows * g.cols, "packed": True} for name, g in ck.grids.items()]
    rows = _layer_rows(ck.layers, ck.grids, list(ck.linear_tiers()), int(ck.compress_config.get("m", 0)))
    out = _summary("checkpoint", path, ck.config.get("model_type"), rows, tensors, size)
    cc = ck.compress_config
    out.update(format_version=ck.meta["format_version"], method=cc.get("method"), m=cc.get("m"), n=cc.get("n"),
               embed_type=ck.embed_tier)
    if ck.blocks:
        out["blocks"] = {"compressed": ck.blocks[0], "total": ck.blocks[1]}
    return out


def _inspect_onnx(path: Path) -> dict:
    """What the metadata of a file check_onnx accepts says (no per-layer rows: the tiers and honest bits per linear
    are the checkpoint's and the GGUF file's). Imports onnx (the [onnx] extra) only here."""
    from .onnx_export import external_data_path
    from .onnx_read import check_onnx, linear_tiers

    props, _ = check_onnx(path)
    tiers = linear_tiers(props)
    cc = json.loads(props["pbs2p.compress_config"])
    data = external_data_path(path)
    size = path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
    return {"format": "onnx", "path": str(path), "architecture": props["pbs2p.model_type"],
            "onnx_flavor": props["pbs2p.onnx_flavor"], "n_linears": len(tiers),
            "tiers": dict(sorted(Counter(tiers).items())),
            "bits_per_weight": float(props["pbs2p.bits_per_weight"]), "file_bits": 8 * size,
            "format_version": int(props["pbs2p.format_version"]), "method": cc.get("method"), "m": cc.get("m"),
            "n": cc.get("n"), "embed_type": props.get("pbs2p.embed_tier")}


def inspect_file(path) -> dict:
    """Summary of a pbs2p GGUF file, ONNX file (by its suffix: ONNX has no magic bytes) or checkpoint directory;
    FormatError for anything else."""
    path = Path(path)
    if path.is_dir():
        return _inspect_checkpoint(path)
    problem = path_problem(path)
    if problem:
        raise FormatError(f"{path}: {problem}")
    if path.suffix.lower() == ".onnx":
        return _inspect_onnx(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise FormatError(f"{path}: neither a GGUF file, an .onnx file nor a checkpoint directory")
    return _inspect_gguf(path)
