"""Compression at the sizes people binarize, without their weights: peak memory and seconds per block of a streamed
`pbs2p-edge compress` on random-weight Llama models of real shapes, stored as bf16 safetensors shards.

Each shape is written to disk as a Hugging Face directory (config.json, one bf16 shard per decoder block plus one for
the embedding, norm and head, an index; a byte-level BPE tokenizer trained on Emma, as large as the text allows up
to the shape's vocabulary), one tensor in memory at a time. Then `pbs2p-edge compress DIR OUT --blocks K --method
pbs2p` (32 x 512 calibration tokens of Emma, the issue's command) runs under /usr/bin/time -v: its peak RSS, and
the seconds of each block from its JSON summary. The model directory and the checkpoint (which holds the
uncompressed blocks at float32) are deleted after each row. Full-model hours are projected from the measured seconds
per block x depth; shapes not run are projected from the 7B shape's seconds per block scaled by a block's weights
(measured here, time per block follows the weights: the table says how closely), and labelled so.

The default export plans its tiers first (a bit budget: gradients taken one block at a time over every block,
model/budget_stream.py), so its memory and time are measured too: a shape cut to a few blocks, `compress DIR OUT
--bpw 5 --blocks 1` (BUDGET_RUNS): the plan's seconds per block, and the peak of plan and compression together.

    python bench/compress_large.py --out bench/results   # 2 threads: 1B x2, 1B x8, 7B, 8B; 1 thread: 1B, 7B (~1.5 h)
    python bench/compress_large.py --out /tmp/c --quick                      # a 1B shape cut to 2 blocks, 4 x 64
    python bench/compress_large.py --out bench/results --redraw              # the table again, from its JSON
    python bench/compress_large.py --out bench/results --runs '' --add       # BUDGET_RUNS only, added to the table
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# name -> LlamaConfig fields (the published configs' sizes)
SHAPES = {
    "Llama-3.2-1B": dict(hidden_size=2048, intermediate_size=8192, num_attention_heads=32, num_key_value_heads=8,
                         num_hidden_layers=16, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
    "Llama-2-7B": dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
                       num_hidden_layers=32, vocab_size=32000, tie_word_embeddings=False, rope_theta=10000.0),
    "Llama-3-8B": dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                       num_hidden_layers=32, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0),
    "Llama-2-13B": dict(hidden_size=5120, intermediate_size=13824, num_attention_heads=40, num_key_value_heads=40,
                        num_hidden_layers=40, vocab_size=32000, tie_word_embeddings=False, rope_theta=10000.0),
    "Llama-2-70B": dict(hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8,
                        num_hidden_layers=80, vocab_size=32000, tie_word_embeddings=False, rope_theta=10000.0),
}
# (shape, --blocks, --threads) of the committed table: memory after 2 blocks (8 for depth) at 2 threads, seconds per
# block at 2 threads and at 1 (one block; the Llama-3-8B shape's 1-thread row, ~25 min more, is left to --runs)
RUNS = [("Llama-3.2-1B", 2, 2), ("Llama-3.2-1B", 8, 2), ("Llama-3.2-1B", 1, 1), ("Llama-2-7B", 2, 2),
        ("Llama-2-7B", 1, 1), ("Llama-3-8B", 2, 2)]
# (shape, depth written, --threads) of the bit budget's rows: `compress --bpw DEFAULT_BPW --blocks 1` (the plan runs
# over every block written, so the shape is cut to `depth` blocks; the plan's time is per block)
BUDGET_RUNS = [("Llama-2-7B", 2, 2)]
PROJECTED = ["Llama-2-7B", "Llama-2-13B", "Llama-2-70B"]
PAPER_NOTE = ("The paper's figure, for comparison: about 110 min for a 7B model on one GPU (about 2.5x ARB-LLM's; "
              "../shared/METHOD.md)")


def block_linears(f: dict) -> dict[str, tuple[int, int]]:
    """name -> (rows, cols) of one decoder block's linears."""
    h, i, kv = f["hidden_size"], f["intermediate_size"], f["num_key_value_heads"]
    d = h // f["num_attention_heads"]
    return {"self_attn.q_proj": (h, h), "self_attn.k_proj": (kv * d, h), "self_attn.v_proj": (kv * d, h),
            "self_attn.o_proj": (h, h), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i)}


def block_weights(f: dict) -> int:
    return sum(r * c for r, c in block_linears(f).values())


def block_rows_cols2(f: dict) -> int:
    """sum(rows x cols^2) over a block's linears: the order of the GPTQ loop's arithmetic."""
    return sum(r * c * c for r, c in block_linears(f).values())


def compress_argv(model: Path, out: Path, blocks: int, threads: int, nsamples: int, seqlen: int,
                  bpw: float | None = None) -> list[str]:
    """The issue's command: `pbs2p-edge compress MODEL OUT --blocks K --method pbs2p` (with bpw: `--bpw B`, a bit
    budget's plan and tiers instead), this venv's CLI."""
    how = ["--method", "pbs2p"] if bpw is None else ["--bpw", f"{bpw:g}"]
    return [str(Path(sys.executable).with_name("pbs2p-edge")), "compress", str(model), str(out), "--blocks", str(blocks),
            *how, "--nsamples", str(nsamples), "--seqlen", str(seqlen), "--threads", str(threads), "--quiet"]


def write_model(path: Path, f: dict, text: str, seed: int = 0) -> int:
    """A random-weight Llama of shape f as bf16 safetensors shards in `path`; returns the bytes written."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    path.mkdir(parents=True)
    LlamaConfig(max_position_embeddings=4096, rms_norm_eps=1e-5, **f).to_json_file(str(path / "config.json"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=min(f["vocab_size"], 32000), special_tokens=["<s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<s>").save_pretrained(str(path))
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: (torch.randn(*shape, generator=gen) * 0.02).to(torch.bfloat16)  # noqa: E731
    ones = lambda: torch.ones(f["hidden_size"], dtype=torch.bfloat16)  # noqa: E731

    def shard(i: int) -> dict:  # -1: the embedding, final norm and head; else decoder block i
        if i < 0:
            head = {} if f["tie_word_embeddings"] else {"lm_head.weight": rand(f["vocab_size"], f["hidden_size"])}
            return {"model.embed_tokens.weight": rand(f["vocab_size"], f["hidden_size"]), "model.norm.weight": ones(),
                    **head}
        return {**{f"model.layers.{i}.{k}.weight": rand(*rc) for k, rc in block_linears(f).items()},
                f"model.layers.{i}.input_layernorm.weight": ones(),
                f"model.layers.{i}.post_attention_layernorm.weight": ones()}

    weight_map: dict[str, str] = {}
    total = 0
    for i in range(-1, f["num_hidden_layers"]):
        name, tensors = ("model-embed.safetensors" if i < 0 else f"model-{i:05d}.safetensors"), shard(i)
        save_file(tensors, str(path / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
        total += sum(t.numel() * 2 for t in tensors.values())
        del tensors
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                   "weight_map": weight_map}))
    return total


def run(shape: str, blocks: int, threads: int, nsamples: int, seqlen: int, work: Path, depth: int | None = None,
        bpw: float | None = None) -> dict:
    """One row: the shape (cut to `depth` blocks if given) written, compressed (`bpw`: by a bit budget), measured."""
    from checkout import commit
    from pbs2p_edge.calib.text import load_text

    fields = dict(SHAPES[shape], **({"num_hidden_layers": depth} if depth else {}))
    model, out = work / "model", work / "ckpt"
    stored = write_model(model, fields, load_text("austen:emma", split="train"))
    try:
        res = subprocess.run(["/usr/bin/time", "-v", *compress_argv(model, out, blocks, threads, nsamples, seqlen, bpw)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{shape}: compress failed ({res.returncode}):\n{res.stderr[-3000:]}")
        summary = json.loads(res.stdout)
        peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", res.stderr).group(1)
        ckpt_bytes = sum(p.stat().st_size for p in out.iterdir())
    finally:
        shutil.rmtree(model, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    per_block = sorted(summary["block_seconds"])[(len(summary["block_seconds"]) - 1) // 2]
    if bpw is not None:
        full_depth = SHAPES[shape]["num_hidden_layers"]
        plan_per_block = summary["plan_seconds"] / fields["num_hidden_layers"]
        return {"shape": shape, "bpw": bpw, "blocks": blocks, "depth": fields["num_hidden_layers"], "threads": threads,
                "peak_rss_gib": peak_kib / 2**20, "plan_seconds": summary["plan_seconds"],
                "plan_seconds_per_block": plan_per_block, "seconds_per_block": per_block, "tiers": summary["tiers"],
                "full_depth": full_depth, "full_model_hours": (plan_per_block + per_block) * full_depth / 3600,
                "wall": wall, "measured_at": commit()}
    return {"shape": shape, "blocks": blocks, "depth": fields["num_hidden_layers"], "threads": threads,
            "stored_gb": stored / 1e9, "fp32_gb": stored * 2 / 1e9, "peak_rss_gib": peak_kib / 2**20,
            "block_seconds": summary["block_seconds"], "seconds_per_block": per_block, "wall": wall,
            "streamed": summary["streamed"], "checkpoint_gb": ckpt_bytes / 1e9,
            "full_model_hours": per_block * fields["num_hidden_layers"] / 3600, "measured_at": commit()}


def checkpoint_digests(d: Path) -> dict[str, str]:
    """sha256 of every file of a checkpoint, pbs2p.json without its run metadata (wall time, peak memory)."""
    import hashlib

    out = {}
    for p in sorted(d.iterdir()):
        data = p.read_bytes()
        if p.name == "pbs2p.json":
            meta = json.loads(data)
            for k in ("seconds", "peak_memory_bytes"):
                meta["extra"].pop(k, None)
            data = json.dumps(meta, sort_keys=True).encode()
        out[p.name] = hashlib.sha256(data).hexdigest()
    return out


def resume_check(shape: str, blocks: int, threads: int, nsamples: int, seqlen: int, work: Path) -> dict:
    """An uninterrupted run against one SIGKILLed once block 0 is finished and then run again with --resume: whether
    the two checkpoints hold the same bytes."""
    import signal
    import time

    from pbs2p_edge.calib.text import load_text
    from pbs2p_edge.model.progress import progress_dir

    model = work / "model"
    write_model(model, dict(SHAPES[shape]), load_text("austen:emma", split="train"))
    whole, resumed = work / "whole", work / "resumed"
    argv = lambda out: compress_argv(model, out, blocks, threads, nsamples, seqlen)  # noqa: E731
    subprocess.run(argv(whole), check=True, capture_output=True)
    proc = subprocess.Popen(argv(resumed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not (progress_dir(resumed) / "act-0.pt").is_file():
        time.sleep(0.5)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run([*argv(resumed), "--resume"], check=True, capture_output=True)
    same = checkpoint_digests(whole) == checkpoint_digests(resumed)
    shutil.rmtree(work, ignore_errors=True)
    return {"shape": shape, "blocks": blocks, "killed_after_block_0": killed, "identical": same}


def projection(rows: list[dict]) -> list[str]:
    """Full-model hours of the PROJECTED shapes at each thread count the Llama-2-7B shape was measured at, from its
    seconds per block scaled by a block's weights; and how closely time follows the weights, where the 1B shape was
    measured at the same thread count."""
    seven, one = SHAPES["Llama-2-7B"], SHAPES["Llama-3.2-1B"]
    rows = [r for r in rows if "identical" not in r and "bpw" not in r]  # not the resume check's, nor a budget's
    base = {r["threads"]: r for r in reversed(rows) if r["shape"] == "Llama-2-7B"}  # the first row of each count
    small = {r["threads"]: r for r in reversed(rows) if r["shape"] == "Llama-3.2-1B"}
    if not base:
        return []
    threads = sorted(base)
    checks = "".join(
        f" At {t} thread{'s' * (t > 1)} the measured seconds per block of the 7B and 1B shapes are in the ratio "
        f"{base[t]['seconds_per_block'] / small[t]['seconds_per_block']:.2f}." for t in threads if t in small)
    lines = ["", "Projected full-model hours on this CPU (**projection**: the Llama-2-7B shape's measured seconds per "
             "block x the shape's block weights / the 7B block's, x depth). The 7B and 1B blocks' weights are in the "
             f"ratio {block_weights(seven) / block_weights(one):.2f}, the GPTQ loop's rows x cols^2 in the ratio "
             f"{block_rows_cols2(seven) / block_rows_cols2(one):.2f}.{checks} {PAPER_NOTE}.", "",
             "| shape | depth | " + " | ".join(f"s / block, {t} thr | full model h, {t} thr" for t in threads) + " |",
             "|---|---:|" + "---:|---:|" * len(threads)]
    for shape in PROJECTED:
        f = SHAPES[shape]
        cells = []
        for t in threads:
            s = base[t]["seconds_per_block"] * block_weights(f) / block_weights(seven)
            cells += [f"{s:.0f}", f"{s * f['num_hidden_layers'] / 3600:.1f}"]
        lines.append(f"| {shape} | {f['num_hidden_layers']} | " + " | ".join(cells) + " |")
    return lines


def table(rows: list[dict], command: str, nsamples: int, seqlen: int) -> str:
    from e2e import cpu_name

    checks = [r for r in rows if "identical" in r]
    budgets = [r for r in rows if "bpw" in r]
    rows = [r for r in rows if "identical" not in r and "bpw" not in r]
    lines = ["# Compression at large shapes: streamed from safetensors shards, random weights", "",
             f"Command: `{command}`", "",
             f"CPU: {cpu_name()}, {os.cpu_count()} cores. Random-weight Llama models of the published shapes (bf16 shards, "
             f"weights N(0, 0.02), RMSNorm weights 1; **not real models**: seconds and memory depend on the shapes, "
             f"not the values). `pbs2p-edge compress DIR OUT --blocks K --method pbs2p`, {nsamples} x {seqlen} "
             "calibration tokens of Emma; peak RSS from `/usr/bin/time -v` for the whole command (load, calibration, "
             "K blocks, writing the checkpoint, which holds the K compressed blocks and the others at float32).", "",
             "| shape | blocks run | threads | shards GB (bf16) | whole model at fp32 GB | peak RSS GiB | s / block "
             "(lower median) | each block s | full model h (est.) | wall | measured at |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} shape | {r['blocks']} / {r['depth']} | {r['threads']} | {r['stored_gb']:.1f} | "
                     f"{r['fp32_gb']:.1f} | {r['peak_rss_gib']:.2f} | {r['seconds_per_block']:.0f} | "
                     f"{', '.join(f'{s:.0f}' for s in r['block_seconds'])} | {r['full_model_hours']:.1f} | "
                     f"{r['wall']} | {r.get('measured_at', '-')} |")
    lines += projection(rows)
    if budgets:
        lines += ["", "The default export's bit budget (`compress DIR OUT --bpw B --blocks 1`): the plan takes gradients "
                  "one block at a time over every block of the model written (here cut to a few blocks), then one block "
                  "is compressed at the planned tiers. Peak RSS: the whole command. Plan s / block: the plan's time / the "
                  "blocks written (the head's and embedding's share included: an upper estimate at full depth). Full "
                  "model h: (plan s / block + compression s / block) x the shape's full depth, a **projection**.", "",
                  "| shape | blocks written | --bpw | threads | peak RSS GiB | plan s | plan s / block | compression "
                  "s / block | tiers of the block | full model h (proj.) | wall | measured at |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|"]
        for r in budgets:
            tiers = ", ".join(f"{n} {t}" for t, n in sorted(r["tiers"].items()))
            lines.append(f"| {r['shape']} shape | {r['depth']} / {r['full_depth']} | {r['bpw']:g} | {r['threads']} | "
                         f"{r['peak_rss_gib']:.2f} | {r['plan_seconds']:.0f} | {r['plan_seconds_per_block']:.0f} | "
                         f"{r['seconds_per_block']:.0f} | {tiers} | {r['full_model_hours']:.1f} | {r['wall']} | "
                         f"{r['measured_at']} |")
    for r in checks:
        lines += ["", f"Resume: `compress --blocks {r['blocks']}` of the {r['shape']} shape SIGKILLed after block 0 "
                  f"({'killed' if r['killed_after_block_0'] else 'NOT killed: it finished first'}) and run again "
                  f"with `--resume` writes {'the same bytes as' if r['identical'] else 'OTHER bytes than'} the "
                  "uninterrupted run (every file; pbs2p.json without its wall time and peak memory)."]
    small = {r["blocks"]: r for r in rows if r["shape"] == "Llama-3.2-1B"}
    if 2 in small and 8 in small:
        lines += ["", f"Depth: the Llama-3.2-1B shape's peak RSS is {small[2]['peak_rss_gib']:.2f} GiB after 2 blocks "
                  f"and {small[8]['peak_rss_gib']:.2f} GiB after 8."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--runs", default=None, help="SHAPE:BLOCKS:THREADS,... (default: the committed table's; '': none)")
    p.add_argument("--budget-runs", default=None,
                   help="SHAPE:DEPTH:THREADS,... of the bit budget's rows (default: the committed table's; '': none)")
    p.add_argument("--add", action="store_true", help="keep OUT/compress_large.json's rows and add this run's")
    p.add_argument("--nsamples", type=int, default=32)
    p.add_argument("--calib-seqlen", type=int, default=512)
    p.add_argument("--work", type=Path, default=None, help="where the model and checkpoint go (default: a temp dir)")
    p.add_argument("--resume-check", default=None, metavar="SHAPE:BLOCKS:THREADS",
                   help="also kill a run of this shape after its first block, resume it and compare the bytes")
    p.add_argument("--redraw", action="store_true", help="rewrite OUT/compress_large.md from OUT/compress_large.json")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.redraw:
        kept = json.loads((args.out / "compress_large.json").read_text())
        path = args.out / "compress_large.md"
        path.write_text(table(kept["rows"], kept["command"], args.nsamples, args.calib_seqlen))
        print(path)
        return 0
    triples = lambda text: [(s, int(b), int(t)) for s, b, t in (r.rsplit(":", 2) for r in text.split(",") if r)]  # noqa: E731
    runs = RUNS if args.runs is None else triples(args.runs)
    budget_runs = BUDGET_RUNS if args.budget_runs is None else triples(args.budget_runs)
    if args.quick:
        SHAPES["Llama-3.2-1B"] = {**SHAPES["Llama-3.2-1B"], "num_hidden_layers": 2}
        runs, args.nsamples, args.calib_seqlen = [("Llama-3.2-1B", 1, 2)], 4, 64
        budget_runs = [("Llama-3.2-1B", 2, 2)]
    unknown = {s for s, _, _ in runs + budget_runs} - set(SHAPES)
    if unknown:
        p.error(f"unknown shapes {sorted(unknown)}; known: {list(SHAPES)}")
    from pbs2p_edge.cli import DEFAULT_BPW

    command = shlex.join(["python", "bench/compress_large.py", *(argv if argv is not None else sys.argv[1:])])
    rows: list[dict] = []
    if args.add:  # the kept rows' command, then this one's
        kept = json.loads((args.out / "compress_large.json").read_text())
        rows, command = kept["rows"], f"{kept['command']} && {command}"
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every row: a long run keeps what it measured
        for name, text in (("compress_large.json", json.dumps({"command": command, "rows": rows}, indent=1) + "\n"),
                           ("compress_large.md", table(rows, command, args.nsamples, args.calib_seqlen))):
            tmp = args.out / f".{name}.tmp{os.getpid()}"
            tmp.write_text(text)
            os.replace(tmp, args.out / name)

    if args.resume_check:  # first: short, and a long run's later rows may be cut by the time a session has
        shape, blocks, threads = args.resume_check.rsplit(":", 2)
        with tempfile.TemporaryDirectory(prefix="pbs2p-large-", dir=args.work) as tmp:
            rows.append(resume_check(shape, int(blocks), int(threads), args.nsamples, args.calib_seqlen,
                                     Path(tmp) / "w"))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        save()
    for shape, blocks, threads in runs:
        with tempfile.TemporaryDirectory(prefix="pbs2p-large-", dir=args.work) as tmp:
            rows.append(run(shape, blocks, threads, args.nsamples, args.calib_seqlen, Path(tmp)))
        print(json.dumps(rows[-1])[:300], file=sys.stderr, flush=True)
        save()
    for shape, depth, threads in budget_runs:
        with tempfile.TemporaryDirectory(prefix="pbs2p-large-", dir=args.work) as tmp:
            rows.append(run(shape, 1, threads, args.nsamples, args.calib_seqlen, Path(tmp), depth, DEFAULT_BPW))
        print(json.dumps(rows[-1])[:300], file=sys.stderr, flush=True)
        save()
    print(args.out / "compress_large.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
