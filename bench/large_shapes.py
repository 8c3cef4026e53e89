"""Large-shape bench, random weights: our runtime vs llama.cpp at Llama-3.2-1B, Llama-3.2-3B and Llama-2-7B shapes.

No model is compressed: bench/random_gguf.py writes, per shape, our GGUF (every decoder linear a random packed 4:8
layer of the compact structure, Q4_0 embedding) and a random F16 GGUF that llama.cpp's own llama_model_quantize
turns into Q4_0, Q2_K and TQ1_0 (bench/peer.py's requantize; the F16 is deleted after, unless F16 is measured).
Each file is then run as e2e.py runs them: a --prompt-token prompt of random ids as one batch from an empty cache,
then --decode single-token steps (numpy arg-max of the previous logits), KV cache of --ctx positions for both
engines, every run its own process (peak RSS = its ru_maxrss), files and thread counts alternating within every
repetition, one untimed warm-up per file; the tables give medians. Bytes read per decode step come from each
file's tensor table, and, for ours, from the loaded model (pbs2p_model_info.step_bytes: the packed linears as the
kernels hold them in memory, which is more than the file stores); the roofline is the copy bandwidth measured here at
the same thread count / the file's bytes (issue 15's definition), the read roofline the bandwidth of a read-only
stream / the bytes the engine actually reads (a decode step only reads weights).
A shape's files (several GB at 7B: about 23 GB of disk at once while the F16 is quantized) are deleted as soon as
its rows are measured (--keep keeps them), and the results are rewritten after every shape.
Speed and memory only: the weights are random, so nothing here says anything about quality.

    python bench/large_shapes.py                                  # the three shapes, bench/results/large_shapes.*
    python bench/large_shapes.py --shapes tiny --reps 1 --out /tmp/ls   # a smoke run, under a minute
    python bench/large_shapes.py --shapes llama-2-7b --peer-types F16,Q4_0 --work /tmp/big --keep
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from e2e import _spawn, _write_atomic, cpu_name, rss_kib  # noqa: E402
from random_gguf import linears, llama_config  # noqa: E402
from work_folder import work_folder  # noqa: E402

SHAPES = {  # key -> (title, Hugging Face LlamaConfig fields)
    "tiny": ("tiny (smoke test)", llama_config(256, 768, 2, 4, 2, 64, 1000, False, 10000.0, 4096)),
    "llama-3.2-1b": ("Llama-3.2-1B shape", llama_config(2048, 8192, 16, 32, 8, 64, 128256, True, 500000.0, 131072)),
    "llama-3.2-3b": ("Llama-3.2-3B shape", llama_config(3072, 8192, 28, 24, 8, 128, 128256, True, 500000.0, 131072)),
    "llama-2-7b": ("Llama-2-7B shape", llama_config(4096, 11008, 32, 32, 32, 128, 32000, False, 10000.0, 4096)),
}
DEFAULT_SHAPES = "llama-3.2-1b,llama-3.2-3b,llama-2-7b"
DEFAULT_PEER = "Q4_0,Q2_K,TQ1_0"
OURS = "pbs2p 4:8 compact, Q4_0 embedding"
# a decoder-block linear's tensors, ours (<base>.pbs2p.<array>) and llama.cpp's (<base>.weight) alike
LINEAR = re.compile(r"^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.")


# ---- memory bandwidth --------------------------------------------------------------------------------------------

# kind -> bytes moved per byte of the buffer: copy counts read + write (STREAM's copy), read only what it reads
BANDWIDTH_KINDS = {"copy": 2, "read": 1}


def _bandwidth_worker(kind: str, n_floats: int, barrier, reps: int) -> None:
    import numpy as np

    src = np.ones(n_floats, np.float32)  # numpy advises huge pages for a buffer this large, as libpbs2p's planes
    dst = np.zeros_like(src) if kind == "copy" else None
    words = src[: n_floats // 2 * 2].view(np.int64)

    def once():
        if kind == "copy":
            np.copyto(dst, src)
        else:
            words.sum()  # an integer sum: vectorized, bound by the memory, not the adds

    once()
    for _ in range(reps):
        barrier.wait(600)
        once()
        barrier.wait(600)


def memory_bandwidth(kind: str, procs: int, gib: float, reps: int) -> float:
    """GB/s of `procs` processes each copying (kind "copy": read + write bytes, STREAM's copy count) or reading
    ("read") its share of a `gib` GiB buffer, started together by a barrier; median over reps. Processes, not
    threads: nothing is left to the GIL."""
    ctx = multiprocessing.get_context("fork")
    n = int(gib * 2**30) // 4 // procs
    barrier = ctx.Barrier(procs + 1)
    workers = [ctx.Process(target=_bandwidth_worker, args=(kind, n, barrier, reps)) for _ in range(procs)]
    for w in workers:
        w.start()
    times = []
    try:
        for _ in range(reps):
            barrier.wait(600)
            t0 = time.perf_counter()
            barrier.wait(600)
            times.append(time.perf_counter() - t0)
    finally:
        for w in workers:
            w.join(60)
    return BANDWIDTH_KINDS[kind] * 4 * n * procs / statistics.median(times) / 1e9


# ---- what a file holds -------------------------------------------------------------------------------------------

def file_facts(path: Path, config: dict) -> dict:
    """File bytes; bits/weight of the decoder linears; bytes one decode step reads: every tensor but the embedding,
    plus one embedding row, plus the whole embedding when it is also the head (tied)."""
    from gguf_tensors import read_tensors

    tensors = read_tensors(path)
    names = {t.name for t in tensors}
    per_token = linear_bytes = 0
    for t in tensors:
        if t.name == "token_embd.weight":
            per_token += t.n_bytes // config["vocab_size"] + (0 if "output.weight" in names else t.n_bytes)
        else:
            per_token += t.n_bytes
        linear_bytes += t.n_bytes if LINEAR.match(t.name) else 0
    weights = sum(R * K for _, R, K in linears(config))
    return {"file_bytes": path.stat().st_size, "bits_per_weight": 8 * linear_bytes / weights,
            "bytes_per_token": per_token}


# both engines' KV cache entries: float16, each one's default (pbs2p's Model and llama.cpp's f16 cache)
KV_TYPE = "f16"


def kv_mib(config: dict, n_ctx: int) -> float:
    """The KV cache's MiB at n_ctx positions, KV_TYPE entries."""
    per_value = {"f16": 2, "f32": 4}[KV_TYPE]
    hd = config["head_dim"]
    return 2 * config["num_hidden_layers"] * n_ctx * config["num_key_value_heads"] * hd * per_value / 2**20


# ---- one timed run, in its own process ---------------------------------------------------------------------------

def child_run(engine: str, path: str, ids: list[int], n_decode: int, threads: int, n_ctx: int) -> dict:
    import numpy as np

    before = rss_kib()
    t_load = time.perf_counter()
    if engine == "pbs2p":
        from pbs2p_edge.runtime.model import Model

        m = Model(path, n_threads=threads, n_ctx=n_ctx, kv=KV_TYPE)
    else:
        from peer_runner import LlamaRunner

        m = LlamaRunner(path, threads, n_ctx)
    t0 = time.perf_counter()
    logits = m.eval(np.asarray(ids, dtype=np.int32), 0, last_only=True)
    t1 = time.perf_counter()
    for i in range(n_decode):
        logits = m.eval([int(np.argmax(logits))], len(ids) + i, last_only=True)
    t2 = time.perf_counter()
    if not np.isfinite(logits).all():
        raise RuntimeError(f"{engine} gave non-finite logits on {path}")
    held = m.info.step_bytes if engine == "pbs2p" else None  # llama.cpp: its weights as the file stores them
    return {"prompt_tps": len(ids) / (t1 - t0), "decode_tps": n_decode / (t2 - t1), "load_s": t0 - t_load,
            "rss_before_load_kib": before, "step_bytes": held}


def run_once(f: dict, ids: list[int], threads: int, args) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
        json.dump(ids, tmp)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", f["engine"], str(f["file"]), "--ids-file",
               tmp.name, "--decode", str(args.decode), "--threads", str(threads), "--ctx", str(args.ctx)]
        out, _, peak = _spawn(cmd)
    finally:
        os.unlink(tmp.name)
    return {**json.loads(out.strip().splitlines()[-1]), "peak_kib": peak}


# ---- per shape: write, quantize, measure, delete -----------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_files(key: str, config: dict, args, work: Path, created: list[Path]) -> list[dict]:
    """Our file and llama.cpp's, each {engine, type, file} (or an error); every path written goes into `created`."""
    from peer import PEER_TYPES, describe, requantize, slug
    from random_gguf import write_f16, write_ours

    files = []
    t0 = time.perf_counter()
    created.append(work / f"{key}.ours.gguf")
    write_ours(created[-1], config, args.seed)
    log(f"{key}: wrote ours in {time.perf_counter() - t0:.0f} s")
    files.append({"engine": "pbs2p", "type": OURS, "file": created[-1]})
    if not args.peer_types:
        return files
    f16 = work / f"{key}.F16.gguf"
    created.append(f16)
    t0 = time.perf_counter()
    write_f16(f16, config, args.seed)
    log(f"{key}: wrote F16 in {time.perf_counter() - t0:.0f} s")
    by_name = {p.name: p for p in PEER_TYPES}
    for name in args.peer_types:
        row = {"engine": "llama.cpp", "type": name, "file": f16}
        if name != "F16":
            row["file"] = work / f"{key}.{slug(name)}.gguf"
            created.append(row["file"])
            try:
                row["quantize_s"] = round(requantize(f16, row["file"], by_name[name], None, args.quantize_threads), 1)
                log(f"{key}: llama.cpp quantized {name} in {row['quantize_s']} s")
            except RuntimeError as exc:
                row["error"] = str(exc)
        if "error" not in row:
            row["type_mix"] = describe(row["file"])["type_mix"]
        files.append(row)
    if "F16" not in args.peer_types:
        f16.unlink()
    return files


def measure(files: list[dict], ids: list[int], args) -> dict[tuple[int, int], list[dict]]:
    """(file index, threads) -> its timed runs; a file whose warm-up fails gets an error and no runs."""
    live = [i for i, f in enumerate(files) if "error" not in f]
    for i in list(live):
        try:
            run_once(files[i], ids, args.threads[0], args)
        except RuntimeError as exc:
            files[i]["error"] = str(exc).strip().splitlines()[-1][:300]
            live.remove(i)
            log(f"{files[i]['engine']} {files[i]['type']}: {files[i]['error']}")
    runs: dict[tuple[int, int], list[dict]] = {(i, t): [] for i in live for t in args.threads}
    for rep in range(args.reps if live else 0):
        order = live[rep % len(live):] + live[:rep % len(live)]
        for t in args.threads:
            for i in order:
                r = run_once(files[i], ids, t, args)
                runs[(i, t)].append(r)
                log(f"rep {rep} {t}t {files[i]['engine']} {files[i]['type']}: prompt {r['prompt_tps']:.2f} tok/s, "
                    f"decode {r['decode_tps']:.2f} tok/s, peak {r['peak_kib'] / 1024:.0f} MiB")
    return runs


def shape_rows(key: str, config: dict, args, work: Path, bandwidth: dict[str, dict[int, float]]) -> list[dict]:
    import numpy as np

    created: list[Path] = []
    try:
        files = build_files(key, config, args, work, created)
        for f in files:
            if "error" not in f:
                f.update(file_facts(f["file"], config))
        ids = np.random.default_rng(args.seed).integers(0, config["vocab_size"], args.prompt).tolist()
        runs = measure(files, ids, args)
    finally:
        for p in created if not args.keep else []:
            p.unlink(missing_ok=True)
    rows = []
    for i, f in enumerate(files):
        base = {"shape": key, **{k: (str(v) if k == "file" else v) for k, v in f.items()}}
        if "error" in f:
            rows.append(base)
            continue
        for t in args.threads:
            rs = runs[(i, t)]
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            roofline = bandwidth["copy"][t] * 1e9 / f["bytes_per_token"]
            read = rs[0]["step_bytes"] or f["bytes_per_token"]  # what a decode step reads as the engine holds it
            read_roofline = bandwidth["read"][t] * 1e9 / read
            peak_mib = med("peak_kib") / 1024
            kv = kv_mib(config, args.ctx)
            rows.append({**base, "threads": t, "prompt_tps": med("prompt_tps"), "decode_tps": med("decode_tps"),
                         "roofline_tps": roofline, "fraction_of_roofline": med("decode_tps") / roofline,
                         "read_bytes_per_token": read, "read_roofline_tps": read_roofline,
                         "fraction_of_read_roofline": med("decode_tps") / read_roofline,
                         "peak_rss_mib": peak_mib, "peak_minus_file_mib": peak_mib - f["file_bytes"] / 2**20,
                         "beyond_file_and_kv_mib": beyond_file_and_kv(peak_mib, med("rss_before_load_kib") / 1024,
                                                                      f["file_bytes"], kv),
                         "rss_before_load_mib": med("rss_before_load_kib") / 1024, "load_s": med("load_s"),
                         "runs": len(rs), "decode_tps_all": [round(r["decode_tps"], 3) for r in rs]})
    return rows


def beyond_file_and_kv(peak_mib: float, before_mib: float, file_bytes: int, kv_mib: float) -> float:
    """What the engine holds beyond its file and KV cache: the peak less the process's RSS before the load (the
    interpreter, numpy, the binding: the same in every row of an engine, and not the engine's), the file and the KV
    cache (issue 15's target for ours: <= 32 MiB)."""
    return peak_mib - before_mib - file_bytes / 2**20 - kv_mib


# ---- results -----------------------------------------------------------------------------------------------------

def write_results(out: Path, meta: dict, rows: list[dict]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "large_shapes.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    bw = {kind: ", ".join(f"{t} thread{'s' * (int(t) > 1)} {g:.2f} GB/s" for t, g in by_threads.items())
          for kind, by_threads in meta["bandwidth_gbs"].items()}
    lines = ["# Large shapes, RANDOM WEIGHTS: our runtime vs llama.cpp", "",
             "**Random weights: no model was compressed. Speed and memory only; the outputs are meaningless.**", "",
             f"Command: `{meta['command']}` (measured at {meta['measured_at']})", "",
             f"Machine: {meta['cpu']}, {meta['cpus']} CPUs; llama-cpp-python {meta['llama_cpp_version']}; libpbs2p "
             f"kernels {', '.join(meta['kernels'])}. Bandwidth (a {meta['bandwidth_gib']} GiB buffer shared by one "
             f"process per thread started together, median of {meta['bandwidth_reps']}): copy (numpy copyto, read + "
             f"write bytes) {bw['copy']}; read (numpy integer sum, bytes read) {bw['read']}.", "",
             f"Each run: {meta['prompt_tokens']} random token ids as one batch from an empty cache, then "
             f"{meta['decode_tokens']} single-token decode steps (arg-max of the previous logits); a KV cache of "
             f"{meta['ctx']} positions in both engines; its own process; medians of {meta['reps']} runs, files and "
             "thread counts alternating. bits/weight: bytes the file stores for the decoder linears / their weights. "
             "MiB/token: bytes one decode step reads by the file's tensor table (decoder linears, norms, head, one "
             "embedding row; a tied head is the whole embedding), KV cache not counted. Roofline: copy bandwidth at "
             "that thread count / MiB per token (issue 15's definition). MiB read/token: what a decode step reads as "
             "the engine holds the weights (ours: pbs2p_model_info.step_bytes, the packed linears as held: 1.5 bits per "
             "weight (a kept-column plane and the file's kept-order signs) where the file stores 11 bits per 8 "
             "weights; llama.cpp: the file's); read roofline: read bandwidth at "
             "that thread count / MiB read per token, the bound a memory-bound decode meets. Peak RSS: ru_maxrss of "
             "the run's process (Python, numpy and the "
             "engine); peak - file: what it holds beyond the file's size (KV cache, scratch, in-memory repacking, "
             "the interpreter); beyond file + KV: the peak less the RSS before the model's load (the interpreter and "
             "the binding), the file and the KV cache (issue 15's target for ours: <= 32 MiB)."]
    for key, shape in meta["shapes"].items():
        lines += ["", f"## {shape['title']}, random weights", "", shape["summary"], "",
                  "| engine | file (random weights) | bits/weight | file GiB | MiB/token | MiB read/token | threads | "
                  "prompt tok/s | decode tok/s | roofline tok/s | of roofline | read roofline tok/s | of read "
                  "roofline | peak RSS MiB | peak - file MiB | beyond file + KV MiB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if r["shape"] == key):
            head = f"| {r['engine']} | {r['type']} |"
            if "error" in r:
                lines.append(f"{head} failed: {r['error']} |" + " |" * 13)
                continue
            lines.append(f"{head} {r['bits_per_weight']:.3f} | {r['file_bytes'] / 2**30:.3f} | "
                         f"{r['bytes_per_token'] / 2**20:.1f} | {r['read_bytes_per_token'] / 2**20:.1f} | "
                         f"{r['threads']} | {r['prompt_tps']:.2f} | {r['decode_tps']:.2f} | {r['roofline_tps']:.2f} | "
                         f"{r['fraction_of_roofline']:.2f} | {r['read_roofline_tps']:.2f} | "
                         f"{r['fraction_of_read_roofline']:.2f} | "
                         f"{r['peak_rss_mib']:.0f} | {r['peak_minus_file_mib']:.0f} | "
                         f"{r['beyond_file_and_kv_mib']:.0f} |")
    path = out / "large_shapes.md"
    _write_atomic(path, "\n".join(lines) + "\n")
    return path


def shape_summary(config: dict, ctx: int) -> str:
    c = config
    return (f"hidden {c['hidden_size']}, intermediate {c['intermediate_size']}, {c['num_hidden_layers']} layers, "
            f"{c['num_attention_heads']} heads / {c['num_key_value_heads']} KV heads of {c['head_dim']}, vocab "
            f"{c['vocab_size']}, {'tied' if c['tie_word_embeddings'] else 'untied'} head, rope theta "
            f"{c['rope_theta']:g}. KV cache at {ctx} positions, {KV_TYPE} in both engines (each one's default): "
            f"{kv_mib(c, ctx):.1f} MiB.")


# ---- command line ------------------------------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of whole numbers") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be >= 1")
    return list(dict.fromkeys(values))


def parse(argv: list[str] | None) -> argparse.Namespace:
    from peer import PEER_TYPES

    peer_names = [p.name for p in PEER_TYPES if not p.imatrix]  # no calibration text here for an importance matrix
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"comma list of {', '.join(SHAPES)}")
    p.add_argument("--peer-types", default=DEFAULT_PEER, help=f"llama.cpp files, comma list of {', '.join(peer_names)}")
    p.add_argument("--threads", type=_ints, default=[1, 2], help="comma list of thread counts (default 1,2)")
    p.add_argument("--prompt", type=int, default=128, help="prompt tokens, one batch (default 128)")
    p.add_argument("--decode", type=int, default=32, help="single-token decode steps (default 32)")
    p.add_argument("--ctx", type=int, default=512, help="KV cache positions of both engines (default 512)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per file and thread count (default 3)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="writes OUT/large_shapes.md and .json")
    p.add_argument("--work", type=Path, help="where the model files go (default a new folder under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the model files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quantize-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--bandwidth-gib", type=float, default=1.0, help="bandwidth buffer, GiB (default 1)")
    p.add_argument("--bandwidth-reps", type=int, default=7)
    p.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return args
    args.shapes = [s.strip().lower() for s in args.shapes.split(",") if s.strip()]
    args.peer_types = [s.strip() for s in args.peer_types.split(",") if s.strip()]
    if not args.shapes or set(args.shapes) - set(SHAPES):
        p.error(f"--shapes: unknown {sorted(set(args.shapes) - set(SHAPES)) or 'empty list'}; choose from "
                f"{', '.join(SHAPES)}")
    if set(args.peer_types) - set(peer_names):
        p.error(f"--peer-types: unknown {sorted(set(args.peer_types) - set(peer_names))}; choose from "
                f"{', '.join(peer_names)}")
    for name in ("prompt", "decode", "reps", "quantize_threads", "bandwidth_reps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.prompt + args.decode > args.ctx:
        p.error(f"--prompt {args.prompt} + --decode {args.decode} do not fit --ctx {args.ctx}")
    if not 0 < args.bandwidth_gib <= 64:
        p.error("--bandwidth-gib must be in (0, 64]")
    if args.work is not None and args.work.exists() and not args.work.is_dir():
        p.error(f"--work {args.work} is not a folder")
    return args


def check_disk(args, work: Path) -> None:
    """Refuse before any work when the F16 file and the files made from it cannot fit (about 2x the F16)."""
    f16 = [2 * (sum(R * K for _, R, K in linears(c)) + 2 * c["vocab_size"] * c["hidden_size"])
           for c in (SHAPES[k][1] for k in args.shapes)]
    need = [2.2 * b for b in f16]
    need_bytes = sum(need) if args.keep else max(need)
    free = shutil.disk_usage(work).free
    if free < need_bytes:
        raise SystemExit(f"{work}: {free / 2**30:.1f} GiB free, these shapes need about {need_bytes / 2**30:.1f} GiB; "
                         "use --work on a larger disk or fewer --shapes")


def main(argv: list[str] | None = None) -> int:
    import importlib.metadata as md
    import shlex

    args = parse(argv)
    if args.child:
        ids = json.loads(Path(args.ids_file).read_text())
        print(json.dumps(child_run(args.child[0], args.child[1], ids, args.decode, args.threads[0], args.ctx)))
        return 0
    from checkout import commit
    from pbs2p_edge.runtime import available_kernels

    with work_folder(args.work, args.keep, "pbs2p-large-shapes-") as work:
        check_disk(args, work)  # before any measurement
        started = time.perf_counter()
        bandwidth = {kind: {t: memory_bandwidth(kind, t, args.bandwidth_gib, args.bandwidth_reps)
                            for t in args.threads} for kind in BANDWIDTH_KINDS}
        for kind, by_threads in bandwidth.items():
            log(f"{kind} bandwidth: " + ", ".join(f"{t} threads {g:.2f} GB/s" for t, g in by_threads.items()))
        meta = {"command": shlex.join(["python", "bench/large_shapes.py",
                                       *(argv if argv is not None else sys.argv[1:])]),
                "measured_at": commit(), "random_weights": True, "cpu": cpu_name(), "cpus": os.cpu_count(),
                "llama_cpp_version": md.version("llama-cpp-python"), "kernels": available_kernels(),
                "bandwidth_gbs": bandwidth, "bandwidth_gib": args.bandwidth_gib,
                "bandwidth_reps": args.bandwidth_reps, "prompt_tokens": args.prompt, "decode_tokens": args.decode,
                "ctx": args.ctx, "reps": args.reps, "threads": args.threads, "seed": args.seed, "shapes": {}}
        rows: list[dict] = []
        for key in args.shapes:
            title, config = SHAPES[key]
            meta["shapes"][key] = {"title": title, "config": config, "summary": shape_summary(config, args.ctx)}
            rows += shape_rows(key, config, args, work, bandwidth)
            meta["seconds"] = round(time.perf_counter() - started, 1)
            path = write_results(args.out, meta, rows)  # after every shape: a long run keeps what it measured
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
