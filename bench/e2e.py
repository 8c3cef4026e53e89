"""End-to-end bench: our runtime vs llama.cpp (SmolLM2-135M, or --model gemma3-270m): prompt and decode tok/s, memory, size.

Both engines do exactly the same work on the same token ids: one 256-token prompt evaluated as one batch
from an empty cache, then 128 single-token decode steps, each feeding the arg-max (numpy, on the returned
logits) of the previous step; EOS is ignored. Each run is its own child process (so its peak RSS,
ru_maxrss from wait4, is its own); engines alternate within every repetition (order rotated), one
untimed warm-up run each first; the table gives medians. Python children (libpbs2p through cffi,
llama.cpp through llama-cpp-python's ctypes) carry the same interpreter overhead; each also reports its
RSS before loading the model, so "model MiB" = peak - that. With a pbs2p-run binary (native/cli) the
C CLI is timed too, on the text of the same prompt (its own JSON rates; no interpreter).

    python bench/e2e.py --out bench/results                          # writes OUT/e2e.md, OUT/e2e.json
    python bench/e2e.py --out /tmp/e --quick                         # 1 rep, 32 + 8 tokens, F16 + Q4_0
    python bench/e2e.py --out /tmp/l --prompt 1792 --decode 64 --kv f16,f32   # long context, both KV caches

Our models default to OUT/models/pbs2p_compact_4of8.gguf and pbs2p_4of8.gguf, exported first when
missing (SmolLM2-135M, 32 x 512 Emma calibration: the quality table's protocol); --ours NAME=PATH
replaces them. llama.cpp's files come from bench/peer.py (OUT/peer/peer.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peer import MODEL_NAMES, describe  # noqa: E402

from pbs2p_edge.runtime.library import find_cli  # noqa: E402
ROOT = HERE.parent
OUR_DEFAULTS = [("pbs2p compact 4:8", "compact", 4), ("pbs2p 4:8", "paper", 4)]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- child: one timed run in this process --------------------------------------------------------

def child_run(engine: str, path: str, ids: list[int], n_decode: int, threads: int, kv: str = "f16") -> dict:
    import numpy as np

    before = rss_kib()
    n_ctx = len(ids) + n_decode + 8
    if engine == "pbs2p":
        from pbs2p_edge.runtime.model import Model

        m = Model(path, n_threads=threads, n_ctx=n_ctx, kv=kv)
    else:
        from peer_runner import LlamaRunner

        m = LlamaRunner(path, threads, n_ctx)
    prompt = np.asarray(ids, dtype=np.int32)
    t0 = time.perf_counter()
    logits = m.eval(prompt, 0, last_only=True)
    t1 = time.perf_counter()
    out = []
    for i in range(n_decode):
        out.append(int(np.argmax(logits)))
        logits = m.eval([out[-1]], len(ids) + i, last_only=True)
    t2 = time.perf_counter()
    return {"prompt_tps": len(ids) / (t1 - t0), "decode_tps": n_decode / (t2 - t1),
            "rss_before_load_kib": before, "first_tokens": out[:16]}


# Linux starts a forked child's ru_maxrss at its parent's RSS (the parent here holds transformers, hundreds of
# MiB), so each engine is started by this small launcher and wait4 there gives the engine's own peak.
_LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, st, ru = os.wait4(p.pid, 0); "
             "open(sys.argv[1], 'w').write(str(ru.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(st))")


def _spawn(cmd: list[str]) -> tuple[str, int, int]:
    """(stdout, exit code, peak RSS KiB of the engine process alone)."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        p = subprocess.Popen([sys.executable, "-c", _LAUNCHER, rss.name, *cmd], stdout=subprocess.PIPE, stderr=err)
        out = p.stdout.read().decode()
        p.stdout.close()
        if p.wait() != 0:
            err.seek(0)
            raise RuntimeError(f"{cmd[:4]} failed ({p.returncode}): {err.read().decode()[-2000:]}")
        peak = int(rss.read())
    return out, p.returncode, peak


def run_once(eng: dict, ids: list[int], args) -> dict:
    if eng["engine"] == "pbs2p-run":
        cmd = [eng["binary"], "-m", eng["file"], "-f", eng["prompt_file"], "-n", str(args.decode + 1), "-t",
               str(args.threads), "--ctx", str(len(ids) + args.decode + 16), "--no-eos", "--json"]
        out, _, peak = _spawn(cmd)
        j = json.loads(out)
        t = {**j, **(j.get("timings") or {})}
        return {"prompt_tps": t["prompt_tokens_per_second"], "decode_tps": t["decode_tokens_per_second"],
                "peak_kib": peak, "rss_before_load_kib": 0, "prompt_tokens": j.get("prompt_tokens")}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ids, f)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", eng["engine"], eng["file"], "--ids-file",
               f.name, "--decode", str(args.decode), "--threads", str(args.threads), "--kv", eng.get("kv", "f16")]
        out, _, peak = _spawn(cmd)
    finally:
        os.unlink(f.name)
    return {**json.loads(out.strip().splitlines()[-1]), "peak_kib": peak, "prompt_tokens": len(ids)}


# ---- parent: models, prompt, alternating runs ---------------------------------------------------

def prompt_ids(n: int, data: str = "austen:prideprejudice", model: str = "smollm2-135m") -> tuple[list[int], str]:
    """The first n token ids of `data` by `model`'s HF tokenizer, and their decoded text."""
    from transformers import AutoTokenizer

    from pbs2p_edge.calib.text import load_text
    from pbs2p_edge.calib.tokens import encode
    from pbs2p_edge.model.sources import resolve_source

    src = resolve_source(model)
    tok = AutoTokenizer.from_pretrained(src.location, gguf_file=src.gguf_file)
    ids = encode(tok, load_text(data, split="test"))[:n].tolist()
    return ids, tok.decode(ids)


def our_models(out: Path, specs: list[str], quick: bool, model: str = "smollm2-135m") -> list[tuple[str, Path]]:
    """(name, GGUF) of ours: --ours NAME=PATH, else the defaults, exported when missing."""
    if specs:
        return [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in specs]
    from pbs2p_edge import commands
    from pbs2p_edge.algo.config import PRESETS, CompressConfig

    models = []
    for name, preset, n in OUR_DEFAULTS[:1] if quick else OUR_DEFAULTS:
        path = out / "models" / (name.replace(" ", "_").replace(":", "of") + (".quick" if quick else "") + ".gguf")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            cfg = CompressConfig(method="pbs2p", n=n, m=8, seed=0, **PRESETS[preset])
            nsamples, seqlen = (4, 128) if quick else (32, 512)
            print(f"exporting {name} to {path} ({nsamples} x {seqlen} calibration)", file=sys.stderr, flush=True)
            commands.export(model, str(path), cfg, calib="austen:emma", nsamples=nsamples, seqlen=seqlen,
                            progress=False)
        models.append((name, path))
    return models


def engines(args, prompt_text: str, tmp: Path) -> list[dict]:
    from pbs2p_edge import commands

    out = []
    binary = None if args.no_cli else find_cli()
    prompt_file = tmp / "prompt.txt"
    prompt_file.write_text(prompt_text)
    for name, path in our_models(args.out, args.ours, args.quick, args.model):
        info = commands.inspect(str(path))
        base = {"name": name, "file": str(path), "file_bytes": path.stat().st_size,
                "bits_per_weight": info["bits_per_weight"]}
        for kv in args.kv:  # our KV cache's entries; llama.cpp's default is f16
            out.append({**base, "engine": "pbs2p", "kv": kv, **({} if kv == "f16" else {"name": f"{name} (kv {kv})"})})
        if binary:
            out.append({**base, "engine": "pbs2p-run", "binary": binary, "prompt_file": str(prompt_file)})
    peer_rows = json.loads((args.peer_dir / "peer.json").read_text()) if (args.peer_dir / "peer.json").exists() else []
    wanted = None if args.types == "all" else {s.strip() for s in args.types.split(",")}
    if args.quick:
        wanted = {"F16", "Q4_0"}
    for r in peer_rows:
        if "error" in r or (wanted is not None and r["name"] not in wanted):
            continue
        d = describe(Path(r["file"]))
        out.append({"name": f"llama.cpp {r['name']}", "engine": "llama.cpp", "file": r["file"],
                    "file_bytes": d["file_bytes"], "bits_per_weight": d["bits_per_weight"], "type_mix": d["type_mix"]})
    return out


def measure(engs: list[dict], ids: list[int], args) -> list[dict]:
    failed = []
    for e in list(engs):  # warm-up: page the file in, untimed; an engine that fails here is reported and dropped
        try:
            run_once(e, ids, args)
        except RuntimeError as exc:
            print(f"{e['engine']} {e['name']}: {exc}", file=sys.stderr, flush=True)
            failed.append({**e, "error": str(exc).splitlines()[0][:300]})
            engs.remove(e)
    runs: dict[int, list[dict]] = {i: [] for i in range(len(engs))}
    for rep in range(args.reps):
        order = list(range(len(engs)))
        order = order[rep % len(order):] + order[:rep % len(order)]
        for i in order:
            r = run_once(engs[i], ids, args)
            runs[i].append(r)
            print(f"rep {rep} {engs[i]['engine']} {engs[i]['name']}: prompt {r['prompt_tps']:.1f} tok/s, "
                  f"decode {r['decode_tps']:.1f} tok/s, peak {r['peak_kib'] / 1024:.0f} MiB", file=sys.stderr, flush=True)
    rows = []
    for i, e in enumerate(engs):
        rs = runs[i]
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
        rows.append({**{k: v for k, v in e.items() if k not in ("binary", "prompt_file")},
                     "prompt_tps": med("prompt_tps"), "decode_tps": med("decode_tps"),
                     "peak_rss_mib": med("peak_kib") / 1024,
                     "model_rss_mib": statistics.median(r["peak_kib"] - r["rss_before_load_kib"] for r in rs) / 1024,
                     "prompt_tokens": rs[0].get("prompt_tokens"), "runs": len(rs),
                     "decode_tps_all": [round(r["decode_tps"], 2) for r in rs]})
    return rows + [{k: v for k, v in e.items() if k not in ("binary", "prompt_file")} for e in failed]


def llama_features() -> str | None:
    """The CPU features llama.cpp was built with and uses (its system info), from a child process: the peer is
    optional and its library is not loaded into this one."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode().strip())"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().rstrip("|").strip() or None


def write_results(out: Path, rows: list[dict], meta: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "e2e.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# End to end: our runtime vs llama.cpp, {meta.get('model_name', 'SmolLM2-135M')}, {meta['threads']} threads", "",
             f"Command: `{meta['command']}`", "",
             f"{meta['prompt_tokens']}-token prompt (first tokens of Pride and Prejudice, one batch) then "
             f"{meta['decode_tokens']} greedy single-token decode steps, EOS ignored; medians of {meta['reps']} "
             f"alternating runs, each in its own process. Machine: {meta['cpu']}, {meta['cpus']} CPUs; "
             f"llama-cpp-python {meta['llama_cpp_version']} ({meta.get('llama_cpp_features') or 'features unknown'}); "
             f"libpbs2p kernels: {meta.get('pbs2p_kernel', 'unknown')}.",
             "Peak MiB: the process's ru_maxrss; model MiB: peak minus the process's RSS before loading the model "
             "(pbs2p-run is a C process: its peak is all model). bits/weight: honest, decoder-block linears.", "",
             "| engine | model | bits/weight | file MiB | prompt tok/s | decode tok/s | peak MiB | model MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['engine']} | {r['name']} | {r['bits_per_weight']:.3f} | {r['file_bytes'] / 2**20:.1f} | "
                         f"failed: {r['error']} | | | |")
            continue
        lines.append(f"| {r['engine']} | {r['name']} | {r['bits_per_weight']:.3f} | {r['file_bytes'] / 2**20:.1f} | "
                     f"{r['prompt_tps']:.1f} | {r['decode_tps']:.1f} | {r['peak_rss_mib']:.0f} | {r['model_rss_mib']:.0f} |")
    path = out / "e2e.md"
    _write_atomic(path, "\n".join(lines) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    import platform
    import shlex

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default) or gemma3-270m: the prompt's "
                   "tokenizer and the model our default files are exported from (--ours for others)")
    p.add_argument("--peer-dir", type=Path, default=None, help="bench/peer.py's output (default OUT/peer)")
    p.add_argument("--ours", action="append", default=[], metavar="NAME=PATH", help="our GGUF files (repeatable)")
    p.add_argument("--types", default="all", help="llama.cpp types to run (comma-separated names), or all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--decode", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--kv", type=lambda t: t.split(","), default=["f16"],
                   help="our KV cache's entries, each a row: f16 (the default, as llama.cpp's), f32 or f16,f32")
    p.add_argument("--no-cli", action="store_true", help="do not time the pbs2p-run binary even when found")
    p.add_argument("--quick", action="store_true", help="1 rep, 32 + 8 tokens, F16 and Q4_0, one quick export of ours")
    p.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        ids = json.loads(Path(args.ids_file).read_text())
        print(json.dumps(child_run(args.child[0], args.child[1], ids, args.decode, args.threads, args.kv[0])))
        return 0
    if args.quick:
        args.reps, args.prompt, args.decode = 1, 32, 8
    args.peer_dir = args.peer_dir or args.out / "peer"
    command = shlex.join(["python", "bench/e2e.py", *(argv if argv is not None else sys.argv[1:])])
    ids, text = prompt_ids(args.prompt, model=args.model)
    with tempfile.TemporaryDirectory(prefix="pbs2p-e2e-") as tmp:
        engs = engines(args, text, Path(tmp))
        rows = measure(engs, ids, args)
    try:
        import importlib.metadata as md

        llama_version = md.version("llama-cpp-python")
    except Exception:  # noqa: BLE001 - the peer extra is optional
        llama_version = "not installed"
    from pbs2p_edge.runtime.kernels import selected_kernel
    meta = {"command": command, "threads": args.threads, "prompt_tokens": args.prompt, "decode_tokens": args.decode,
            "reps": args.reps, "cpu": cpu_name(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "llama_cpp_version": llama_version, "llama_cpp_features": llama_features(),
            "pbs2p_kernel": selected_kernel(), "quick": args.quick, "model": args.model,
            "model_name": MODEL_NAMES.get(args.model, args.model),
            "parent_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(write_results(args.out, rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
