"""Compression cost: seconds and peak memory per method, and how they grow from SmolLM2-135M's shape to a 1B Llama's.

Random-weight Llama models of two realistic shapes (SmolLM2-135M's and Llama-3.2-1B's widths, heads and MLP
size; SmolLM2's tokenizer and vocabulary) are built from transformers configs, cut to --layers decoder
blocks, and compressed by pbs2p_edge.commands.compress on the same calibration as the quality table
(32 x 512 tokens of Emma). Each (shape, method) runs in its own child process: its wall time and its own
peak RSS (ru_maxrss). Time per block x the shape's full depth gives the full-model estimate (compression is
sequential, block by block); the real SmolLM2-135M rows of bench/quality.py (full depth, real weights) are
shown next to them as the check of that estimate.

    python bench/compress_cost.py --out bench/results            # OUT/compress_cost.{md,json}
    python bench/compress_cost.py --out bench/results --redraw   # the table again, from its JSON (and the large shapes')
    python bench/compress_cost.py --out /tmp/c --quick           # a tiny shape, 4 x 64 calibration, pbs2p 4:8
    python bench/compress_cost.py --out bench/results/compress_ratio --shapes "SmolLM2-135M real (full depth)" \
        --methods "arb-rc,pbs2p 4:8" --threads 1 --no-quality --repeats 3   # issue 2's time ratio, one
                                                                 # method at a time on an otherwise idle machine
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> (LlamaConfig fields, full depth)
SHAPES = {
    "SmolLM2-135M shape": (dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                                num_key_value_heads=3), 30),
    "Llama-3.2-1B shape": (dict(hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
                                num_key_value_heads=8), 16),
}
# the real model at full depth (fields None): no estimate, every block is compressed
REAL_SHAPE = {"SmolLM2-135M real (full depth)": (None, 30)}
QUICK_SHAPE = {"tiny shape": (dict(hidden_size=128, intermediate_size=256, num_attention_heads=4,
                                   num_key_value_heads=2), 4)}
# row name -> (method, N, preset)
METHODS = {"pbs2p 4:8": ("pbs2p", 4, "paper"), "pbs2p 5:8": ("pbs2p", 5, "paper"), "pbs2p 6:8": ("pbs2p", 6, "paper"), "pbs2p compact 4:8": ("pbs2p", 4, "compact"),
           "stbllm 4:8": ("stbllm", 4, "paper"), "billm": ("billm", 8, "paper"), "arb-rc": ("arb-rc", 8, "paper"),
           "rtn": ("rtn", 8, "paper")}


def build_random_model(dirpath: Path, fields: dict, layers: int, seed: int = 0) -> int:
    """Save a random-weight Llama (SmolLM2's tokenizer and vocabulary) to dirpath; returns its linear weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from pbs2p_edge.model.sources import resolve_source

    src = resolve_source("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(src.location, gguf_file=src.gguf_file)
    cfg = LlamaConfig(vocab_size=len(tok), num_hidden_layers=layers, tie_word_embeddings=True,
                      max_position_embeddings=2048, **fields)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(dirpath)
    tok.save_pretrained(dirpath)
    return sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "layers." in n)


def blocks_run(shape: str, layers: int) -> tuple[int, int]:
    """(blocks compressed, the shape's full depth): every block of the real model, else --layers."""
    fields, full = {**SHAPES, **REAL_SHAPE, **QUICK_SHAPE}[shape]
    return (full if fields is None else layers), full


def child(shape: str, method_row: str, layers: int, nsamples: int, seqlen: int, threads: int) -> dict:
    import torch

    from pbs2p_edge import commands
    from pbs2p_edge.algo.config import PRESETS, CompressConfig

    torch.set_num_threads(threads)
    fields, _ = {**SHAPES, **REAL_SHAPE, **QUICK_SHAPE}[shape]
    method, n, preset = METHODS[method_row]
    with tempfile.TemporaryDirectory(prefix="pbs2p-cost-") as tmp:
        model_dir = Path(tmp) / "model"
        if fields is None:
            model_dir, weights = "smollm2-135m", None
        else:
            weights = build_random_model(model_dir, fields, layers)
        rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cfg = CompressConfig(method=method, n=n, m=8, seed=0, **PRESETS[preset])
        t0 = time.perf_counter()
        s = commands.compress(str(model_dir), str(Path(tmp) / "ckpt"), cfg, calib="austen:emma", nsamples=nsamples,
                              seqlen=seqlen, progress=False)
        seconds = time.perf_counter() - t0
    return {"compress_seconds": s["seconds"], "wall_seconds": round(seconds, 2), "linear_weights": weights,
            "peak_memory_bytes_reported": s.get("peak_memory_bytes"),
            "rss_after_build_mib": rss_model / 1024,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def quality_reference(qdir: Path) -> list[dict]:
    rows = []
    for f in sorted((qdir / "rows").glob("*.json")) if (qdir / "rows").exists() else []:
        r = json.loads(f.read_text())
        if r.get("row") in METHODS and "seconds" in r:
            rows.append({"shape": "SmolLM2-135M (real weights, full depth)", "method": r["row"], "layers": 30,
                         "full_layers": 30, "seconds_per_block": r["seconds"] / 30, "full_model_seconds": r["seconds"],
                         "peak_rss_mib": r["peak_rss_mib"], "source": str(f), "threads": "1 (quality table)"})
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--quality-dir", type=Path, default=None, help="bench/quality.py results (default OUT/quality)")
    p.add_argument("--methods", default="pbs2p 4:8,pbs2p compact 4:8,stbllm 4:8,billm,rtn")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--layers", type=int, default=2, help="decoder blocks of each random model (default 2)")
    p.add_argument("--nsamples", type=int, default=32)
    p.add_argument("--calib-seqlen", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1,
                   help="run every (shape, method) this many times, interleaved; rows show the median")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-quality", action="store_true", help="leave out the quality table's rows")
    p.add_argument("--redraw", action="store_true",
                   help="rewrite OUT/compress_cost.md from OUT/compress_cost.json (its recorded command's options) and "
                        "OUT/compress_large.json")
    p.add_argument("--child", nargs=2, metavar=("SHAPE", "METHOD"), help=argparse.SUPPRESS)
    return p


def large_shapes(out: Path) -> list[str]:
    """Full-model hours at the sizes people binarize, projected from bench/compress_large.py's streamed runs of the
    Llama-2-7B shape (OUT/compress_large.json; its table holds the measurements); [] where it has not run."""
    from compress_large import projection  # a sibling script (bench/ is on sys.path when one runs)

    path = out / "compress_large.json"
    if not path.is_file():
        return []
    kept = json.loads(path.read_text())
    lines = projection(kept["rows"])
    if not lines:
        return []
    return ["", "## 7B, 13B and 70B", "", f"From `{kept['command']}` (compress_large.md: the streamed runs of "
            "random-weight models of real shapes, their peak memory and each block's seconds).", *lines]


def render(args, rows: list[dict]) -> str:
    lines = ["# Compression cost per method and model shape", "", f"Command: `{args.command}`", "",
             f"Calibration {args.nsamples} x {args.calib_seqlen} tokens of Emma. Random-weight rows: {args.layers} "
             "decoder blocks built from the shape's config, each (shape, method) in its own process; full-model "
             "seconds = seconds per block x the shape's depth (an estimate: compression runs block by block). "
             "Peak MiB: the process's ru_maxrss (for a cut model it does not include the missing blocks' weights).", "",
             f"Repeats: {args.repeats}, interleaved; s / block is the median, every run listed.", "",
             "| shape | method | threads | blocks run | s / block | runs (s / block) | full-depth s (est.) | peak MiB |",
             "|---|---|---|---:|---:|---|---:|---:|"]
    for r in rows:
        each = ", ".join(f"{x:.1f}" for x in r.get("repeats_seconds_per_block", [])) or "-"
        lines.append(f"| {r['shape']} | {r['method']} | {r['threads']} | {r['layers']} | {r['seconds_per_block']:.1f} | "
                     f"{each} | {r['full_model_seconds']:.0f} | {r['peak_rss_mib']:.0f} |")
    ratios = []
    for shape in dict.fromkeys(r["shape"] for r in rows if r.get("threads") == args.threads):
        by = {r["method"]: r for r in rows if r["shape"] == shape and r.get("threads") == args.threads}
        for m in [m for m in by if m.startswith("pbs2p")]:
            if "arb-rc" in by:
                pairs = zip(by[m].get("repeats_seconds_per_block", []), by["arb-rc"].get("repeats_seconds_per_block", []))
                each = ", ".join(f"{a / b:.2f}" for a, b in pairs)
                ratios.append(f"- {shape}: {m} / arb-rc = {by[m]['seconds_per_block'] / by['arb-rc']['seconds_per_block']:.2f}x"
                              f" ({f'medians; run by run: {each}; ' if each else ''}issue 2's target: at most 1.5x)")
    if ratios:
        lines += ["", *ratios]
    lines += large_shapes(args.out)
    return "\n".join(lines) + "\n"


def write_table(args, rows: list[dict]) -> Path:
    path = args.out / "compress_cost.md"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(render(args, rows))
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    import shlex

    p = parser()
    args = p.parse_args(argv)
    if args.redraw:  # the recorded command's options, this --out
        kept = json.loads((args.out / "compress_cost.json").read_text())
        recorded = p.parse_args(shlex.split(kept["meta"]["command"])[2:])
        recorded.out, recorded.command = args.out, kept["meta"]["command"]
        print(write_table(recorded, kept["rows"]))
        return 0
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.layers, args.nsamples, args.calib_seqlen,
                               args.threads)))
        return 0
    shapes = [s.strip() for s in args.shapes.split(",")]
    methods = [s.strip() for s in args.methods.split(",")]
    if args.quick:
        shapes, methods, args.nsamples, args.calib_seqlen = list(QUICK_SHAPE), ["pbs2p 4:8"], 4, 64
    bad = (set(shapes) - set(SHAPES) - set(REAL_SHAPE) - set(QUICK_SHAPE)) | (set(methods) - set(METHODS))
    if bad:
        p.error(f"unknown shapes/methods {sorted(bad)}; shapes: {list(SHAPES) + list(REAL_SHAPE)}; methods: {list(METHODS)}")
    command = args.command = shlex.join(["python", "bench/compress_cost.py",
                                         *(argv if argv is not None else sys.argv[1:])])
    rows = [] if args.quick or args.no_quality else quality_reference(args.quality_dir or args.out / "quality")
    runs: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.repeats):  # interleaved, so slow drifts of a noisy host hit every method alike
        for shape in shapes:
            layers, _ = blocks_run(shape, args.layers)
            for m in methods:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", shape, m, "--layers", str(args.layers),
                       "--nsamples", str(args.nsamples), "--calib-seqlen", str(args.calib_seqlen),
                       "--threads", str(args.threads)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    print(f"{shape} {m} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                runs.setdefault((shape, m), []).append(r)
                print(f"[{rep + 1}/{args.repeats}] {shape} {m}: {r['compress_seconds'] / layers:.1f} s/block, "
                      f"peak {r['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    for (shape, m), rs in runs.items():
        layers, full = blocks_run(shape, args.layers)
        r = sorted(rs, key=lambda x: x["compress_seconds"])[(len(rs) - 1) // 2]  # median (lower middle)
        per_block = r["compress_seconds"] / layers
        rows.append({"shape": shape, "method": m, "layers": layers, "full_layers": full,
                     "seconds_per_block": per_block, "full_model_seconds": per_block * full,
                     "threads": args.threads, **r, "repeats_seconds_per_block": [x["compress_seconds"] / layers for x in rs]})
    meta = {"command": command, "nsamples": args.nsamples, "calib_seqlen": args.calib_seqlen, "quick": args.quick}
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / f".compress_cost.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    os.replace(tmp, args.out / "compress_cost.json")
    print(write_table(args, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
