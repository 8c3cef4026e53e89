"""Kernel bench: every linear layout libpbs2p runs, timed as a model multiplies it, against the memory bandwidth.

For each shape and each kind of linear (packed layers of the compact or the paper structure at N:8, the grid
tiers), bench/random_gguf.py writes a model file of that shape with random weights whose every decoder linear is of
that kind. pbs2p-bench-linears (native/bench/bench_linears.c) loads it as the runtime does (packed layers prepared
for the kernel variant, kept-order signs where it reads them; grid tiers in place in the file mapping) and clocks
each product through the model's own path (activations quantized to int8, then the kernel, on the model's threads)
in passes over every linear in model order: 1 token (a decode step's products) and a chunk of tokens (a prompt's).
GB/s = the bytes the products read (the prepared layers, the tier matrices) / the median pass. A pass larger than
the last-level cache reads every weight from memory, as a decode step of a large model does; the table gives each
pass's size against this CPU's L3. Yardsticks, measured in the same run at each thread count: the copy bandwidth
(issue 15's: numpy copies, read + write bytes, bench/large_shapes.py's measurement) and the read stream of
pbs2p-bench-linears --read-stream (C loads on the same thread pool, nothing written: what a pass could read at most).
Speed only: the weights are random.

    python bench/kernel_speed.py                                   # writes bench/results/kernels.md and .json
    python bench/kernel_speed.py --quick --out /tmp/k             # a smoke run: the small shape, two kinds
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from e2e import _write_atomic, cpu_name  # noqa: E402
from large_shapes import SHAPES as LARGE_SHAPES  # noqa: E402
from large_shapes import log, memory_bandwidth  # noqa: E402
from random_gguf import llama_config, parse_linear, write_ours  # noqa: E402
from work_folder import work_folder  # noqa: E402

# key -> (title, Hugging Face LlamaConfig fields, decoder blocks written: enough that a 7B pass outgrows the caches)
SHAPES = {
    "smollm2-135m": ("SmolLM2-135M shape", llama_config(576, 1536, 30, 9, 3, 64, 49152, True, 100000.0, 8192), 30),
    "llama-2-7b": ("Llama-2-7B shape", LARGE_SHAPES["llama-2-7b"][1], 12),
}
DEFAULT_LINEARS = "compact-4:8,compact-6:8,paper-4:8,paper-6:8,q8_0,q4_0,q4_s16,q3_s16,q2_s16"
BINARY = "pbs2p-bench-linears"
BUILD = ROOT / "build" / "bench"


def find_binary(given: Path | None) -> Path:
    """--binary, else build/bench's (configured and built here with CMake when missing or older than a source)."""
    if given is not None:
        return given
    path = BUILD / "native" / BINARY
    sources = [*(ROOT / "native" / "src").iterdir(), *(ROOT / "native" / "bench").iterdir()]
    if not path.exists() or max(s.stat().st_mtime for s in sources) > path.stat().st_mtime:
        log(f"building {path} ...")
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
                        "-DPBS2P_BUILD_TESTS=ON"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(BUILD), "--target", "pbs2p_bench_linears", "-j", str(os.cpu_count())],
                       check=True, stdout=subprocess.DEVNULL)
    return path


def l3_bytes() -> int | None:
    size = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
    if not size.exists():
        return None
    text = size.read_text().strip()
    return int(text[:-1]) * {"K": 2**10, "M": 2**20}[text[-1]] if text[-1] in "KM" else int(text)


def run_bench(binary: Path, path: Path, variant: str, threads: int, tokens: int, args) -> dict:
    cmd = [str(binary), str(path), "--kernel", variant, "--threads", str(threads), "--tokens", str(tokens),
           "--seconds", str(args.seconds), "--min-passes", str(args.min_passes if tokens == 1 else args.chunk_passes)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return json.loads(p.stdout)


def read_stream(binary: Path, threads: int, gib: float) -> float:
    p = subprocess.run([str(binary), "--read-stream", str(gib), "--threads", str(threads)], capture_output=True,
                       text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{binary} --read-stream failed ({p.returncode}): {p.stderr.strip()}")
    return json.loads(p.stdout)["read_gbs"]


def merge_rounds(rounds: list[dict]) -> list[dict]:
    """One run per (kernel, threads, tokens): the median over its rounds of the pass's and of each kind's seconds."""
    by: dict[tuple, list[dict]] = {}
    for r in rounds:
        by.setdefault((r["kernel"], r["threads"], r["tokens"]), []).append(r)
    out = []
    for same in by.values():
        kinds = [{**k, "seconds": statistics.median(r["kinds"][i]["seconds"] for r in same)}
                 for i, k in enumerate(same[0]["kinds"])]
        out.append({**same[0], "seconds": statistics.median(r["seconds"] for r in same), "kinds": kinds,
                    "passes": sum(r["passes"] for r in same), "rounds": len(same)})
    return out


def measure_shape(key: str, args, binary: Path, work: Path) -> list[dict]:
    """One record per linear kind of the shape: its runs (variant, threads, tokens), as pbs2p-bench-linears gives
    them."""
    title, config, blocks = SHAPES[key]
    config = {**config, "num_hidden_layers": min(blocks, config["num_hidden_layers"])}
    out = []
    for linear in args.linears:
        path = work / f"{key}-{linear.replace(':', 'of')}.gguf"
        t0 = time.perf_counter()
        write_ours(path, config, args.seed, linear)
        log(f"{key} {linear}: wrote {path.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - t0:.0f} s")
        rounds: list[dict] = []
        try:
            for r_i in range(args.rounds):  # rounds over every configuration: this VM's slow spells hit each alike
                for tokens in args.tokens:
                    for threads in args.threads:
                        for variant in args.variants:
                            r = run_bench(binary, path, variant, threads, tokens, args)
                            rounds.append(r)
                            log(f"  round {r_i + 1}: {variant} {threads}t {tokens} tok: "
                                f"{r['bytes'] / r['seconds'] / 1e9:.2f} GB/s, {tokens / r['seconds']:.1f} tok/s over "
                                f"the pass ({r['passes']} passes)")
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
        runs = merge_rounds(rounds)
        out.append({"shape": key, "title": title, "blocks": config["num_hidden_layers"], "linear": linear,
                    "layout": runs[0]["kinds"][0]["layout"], "bytes": runs[0]["bytes"], "runs": runs,
                    "rounds": rounds})
    return out


def _run(rec: dict, variant: str, threads: int, tokens: int) -> dict | None:
    return next((r for r in rec["runs"] if (r["kernel"], r["threads"], r["tokens"]) == (variant, threads, tokens)),
                None)


def write_results(out: Path, meta: dict, records: list[dict]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "kernels.json", json.dumps({"meta": meta, "records": records}, indent=1) + "\n")
    bw, variants, threads = meta["bandwidth_gbs"], meta["variants"], meta["threads"]
    prompt = max(meta["tokens"])
    l3 = meta["l3_bytes"]
    lines = [f"# libpbs2p linears as a model multiplies them ({meta['cpu']}, random weights)", "",
             f"Command: `{meta['command']}` at {meta['measured_at']}; {meta['seconds']:.0f} s.", "",
             "Every decoder linear of a random model file of the shape (its first `blocks` blocks) is of the row's "
             "kind; "
             "pbs2p-bench-linears loads it as the runtime does and times each product through the model's path "
             "(int8 activations, then the kernel variant on the model's threads), in passes over all of them in model "
             f"order; a run's median pass, then the median over {meta['rounds']} rounds of every configuration in turn "
             "(a machine's slow spells then hit every configuration alike). **GB/s** = the bytes the products read "
             "(prepared layers; tier matrices in place) / the pass; % = of the copy bandwidth (numpy, read + write "
             "bytes, issue 15's yardstick) and of the read stream (C loads on the same threads, nothing written: the "
             "most a pass could read) measured in the same run: "
             + "; ".join(f"{t} thread{'s' if t > 1 else ''}: copy {bw['copy'][str(t)]:.1f}, read stream "
                         f"{bw['stream'][str(t)]:.1f} GB/s (numpy's read {bw['read'][str(t)]:.1f})" for t in threads)
             + (f". L3: {l3 / 2**20:.0f} MiB; a pass larger than it reads its weights from memory." if l3 else "."),
             "", "## Decode: one token per product", "",
             "| shape | linears | layout (block 0) | pass MiB | " + " | ".join(
                 f"{v} {t}t GB/s (% copy, % read stream)" for v in variants for t in threads) + " |",
             "|---|---|---|---:|" + "---:|" * (len(variants) * len(threads))]
    for rec in records:
        cells = []
        for v in variants:
            for t in threads:
                r = _run(rec, v, t, 1)
                if r is None:
                    cells.append("—")
                    continue
                g = r["bytes"] / r["seconds"] / 1e9
                cells.append(f"{g:.1f} ({100 * g / bw['copy'][str(t)]:.0f}%, {100 * g / bw['stream'][str(t)]:.0f}%)")
        lines.append(f"| {rec['title']}, {rec['blocks']} blocks | {rec['linear']} | {rec['layout']} | "
                     f"{rec['bytes'] / 2**20:.0f} | " + " | ".join(cells) + " |")
    if prompt > 1:
        lines += ["", f"## Prompt: {prompt} tokens per product", "",
                  f"Tokens per second over a pass (the linears' share of a prompt's time), and how many times the "
                  f"decode rate of the same variant and threads.", "",
                  "| shape | linears | " + " | ".join(f"{v} {t}t tok/s (x decode)" for v in variants for t in threads)
                  + " |", "|---|---|" + "---:|" * (len(variants) * len(threads))]
        for rec in records:
            cells = []
            for v in variants:
                for t in threads:
                    r, d = _run(rec, v, t, prompt), _run(rec, v, t, 1)
                    cells.append("—" if r is None or d is None else
                                 f"{prompt / r['seconds']:.1f} ({prompt / r['seconds'] * d['seconds']:.2f}x)")
            lines.append(f"| {rec['title']}, {rec['blocks']} blocks | {rec['linear']} | " + " | ".join(cells) + " |")
    v, t = variants[0], max(threads)
    for shape in dict.fromkeys(rec["shape"] for rec in records):  # one table per shape: its own linears' shapes
        per_linear = [(rec, r) for rec in records if rec["shape"] == shape and (r := _run(rec, v, t, 1)) is not None]
        if not per_linear:
            continue
        kinds = per_linear[0][1]["kinds"]
        lines += ["", f"## Per linear, {per_linear[0][0]['title']}, decode, {v}, {t} threads: GB/s", "",
                  "| linears | " + " | ".join(f"{k['kind']} ({k['rows']}x{k['cols']})" for k in kinds) + " |",
                  "|---|" + "---:|" * len(kinds)]
        for rec, r in per_linear:
            lines.append(f"| {rec['linear']} | " + " | ".join(f"{k['bytes'] / k['seconds'] / 1e9:.1f}"
                                                           for k in r["kinds"]) + " |")
    lines.insert(lines.index("## Decode: one token per product") + 2,
                 f"Layout and pass MiB: {variants[0]}'s; a variant whose int8 product does not read kept-order signs "
                 "holds the plane words instead (compact 4:8: 2 bits a weight, not 1.5), and each cell's GB/s counts "
                 "the bytes its own variant reads.\n")
    path = out / "kernels.md"
    _write_atomic(path, "\n".join(lines) + "\n")
    return path


def _list(text: str) -> list[str]:
    return list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))


def parse(argv: list[str] | None) -> argparse.Namespace:
    from pbs2p_edge.runtime import available_kernels

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}")
    p.add_argument("--linears", default=DEFAULT_LINEARS,
                   help=f"comma list: compact-N:8, paper-N:8 or a grid tier (default {DEFAULT_LINEARS})")
    p.add_argument("--variants", help="kernel variants (default: every one this CPU runs but the scalar ref)")
    p.add_argument("--threads", default="1,2", help="comma list (default 1,2)")
    p.add_argument("--tokens", default="1,64", help="tokens per product, comma list (default 1,64: a decode step "
                   "and a prompt chunk of the runtime's size)")
    p.add_argument("--seconds", type=float, default=0.7, help="timed passes per run, at least this long (default 0.7)")
    p.add_argument("--rounds", type=int, default=3, help="runs of every configuration, in turn; the tables give the "
                   "median (default 3)")
    p.add_argument("--min-passes", type=int, default=5, help="timed passes of a decode run, at least (default 5)")
    p.add_argument("--chunk-passes", type=int, default=3,
                   help="timed passes of a prompt-chunk run, at least (default 3: a 7B chunk pass takes seconds)")
    p.add_argument("--binary", type=Path, help=f"the {BINARY} to run (default: built under build/bench)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="writes OUT/kernels.md and .json")
    p.add_argument("--work", type=Path, help="where the model files go (default a new folder under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the model files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bandwidth-gib", type=float, default=1.0)
    p.add_argument("--bandwidth-reps", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="a smoke run: the small shape, compact-4:8 and q4_0, short")
    args = p.parse_args(argv)
    if args.quick:
        args.shapes, args.linears, args.seconds, args.rounds, args.bandwidth_reps = ("smollm2-135m", "compact-4:8,q4_0",
                                                                                  0.3, 1, 3)
    args.shapes, args.linears = _list(args.shapes), _list(args.linears)
    if not args.shapes or set(args.shapes) - set(SHAPES):
        p.error(f"--shapes: choose from {', '.join(SHAPES)}")
    for linear in args.linears:
        try:
            parse_linear(linear)
        except ValueError as e:
            p.error(f"--linears: {e}")
    runnable = available_kernels()
    args.variants = _list(args.variants) if args.variants else [v for v in runnable if v != "ref"]
    if not args.variants or set(args.variants) - set(runnable):
        p.error(f"--variants: this CPU runs {', '.join(runnable)}")
    try:
        args.threads, args.tokens = ([int(s) for s in _list(x)] for x in (args.threads, args.tokens))
    except ValueError:
        p.error("--threads and --tokens take comma lists of whole numbers")
    if not args.threads or not args.tokens or min(args.threads + args.tokens) < 1 or 1 not in args.tokens:
        p.error("--threads and --tokens must be >= 1, and --tokens must hold 1 (the decode rows)")
    if args.seconds < 0 or not 0 < args.bandwidth_gib <= 64 or min(args.bandwidth_reps, args.min_passes,
                                                                    args.chunk_passes, args.rounds) < 1:
        p.error("--seconds >= 0, --bandwidth-gib in (0, 64], --bandwidth-reps, --min-passes, --chunk-passes, "
                "--rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from checkout import commit

    args = parse(argv)
    binary = find_binary(args.binary)
    started = time.perf_counter()
    bandwidth = {kind: {str(t): memory_bandwidth(kind, t, args.bandwidth_gib, args.bandwidth_reps)
                        for t in args.threads} for kind in ("copy", "read")}
    bandwidth["stream"] = {str(t): read_stream(binary, t, args.bandwidth_gib) for t in args.threads}
    log("bandwidth GB/s: " + json.dumps(bandwidth))
    meta = {"command": shlex.join(["python", "bench/kernel_speed.py", *(argv if argv is not None else sys.argv[1:])]),
            "measured_at": commit(), "random_weights": True, "cpu": cpu_name(), "cpus": os.cpu_count(),
            "l3_bytes": l3_bytes(), "bandwidth_gbs": bandwidth, "variants": args.variants, "threads": args.threads,
            "tokens": args.tokens, "rounds": args.rounds, "seconds": 0.0}
    records: list[dict] = []
    with work_folder(args.work, args.keep, "pbs2p-kernels-") as work:
        for key in args.shapes:
            records += measure_shape(key, args, binary, work)
            meta["seconds"] = round(time.perf_counter() - started, 1)
            path = write_results(args.out, meta, records)  # after every shape: a long run keeps what it measured
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
