"""Quality vs size: perplexity against honest bits per weight for our methods and llama.cpp's types, same windows.

Ours come from the quality benchmark's rows (bench/quality.py, torch evaluation of each compressed
checkpoint) and, for our exported GGUF files, from libpbs2p's own C perplexity (Model.perplexity). llama.cpp's
come from its own forward pass (llama_decode, all logits) on each file of bench/peer.py. Every number uses
the same token ids: Pride and Prejudice tokenized once by the model's HF tokenizer (--model: smollm2-135m, the
default, or gemma3-270m), cut into non-overlapping 2048-token windows from the start, each window from an empty
cache predicting its tokens 1..2047, the first --windows windows (16 for the committed -16w quality table). Each
llama.cpp file is one child process; its row is kept as JSON, so an interrupted run resumes.

Our bit-budget points (--budgets) are made here first: `pbs2p-edge export MODEL OUT/models/budget-B....gguf
--bpw B --recover S`, S the CLI's default recovery at B and in the name (budget-B-recover64.gguf; budget-B.gguf
without), the ablations without recovery (--no-recovery-budgets) and without the binary tier (--no-binary-budgets:
budget-B-no-pbs2p....gguf, `--tiers` of every other tier) and the default recipe (`default.gguf`, no compression
option; it stands for its budget, cli.DEFAULT_BPW), each calibrated as the quality table is (32 x 512 tokens of
Emma), in child processes two at a time, kept when present. Every row with a file gets its size as `ls` gives it
and its bits per model parameter (the parameters counted in the model's source GGUF); the table ends with the
dominance checks: for each llama.cpp type, our best file that is no larger and has a lower perplexity.

Each file is also evaluated on --other-data (default: the Debian Reference manual, a text of another kind; its
first --other-windows windows), shown beside, with its own dominance checks. At each budget, the best file with PBS2P
layers is set against the best without (does the binary tier earn its place?).

    python bench/pareto.py --out bench/results                  # 16 windows of 2048; OUT/quality_vs_size.{md,json}
    python bench/pareto.py --out /tmp/q --quick                  # 1 window of 256, F16 + Q4_0
    python bench/pareto.py --model gemma3-270m --out bench/results/gemma3

OUT is the model's results folder: bench/peer.py's files and bench/quality.py's rows are read from OUT/peer and
OUT/quality (--peer-dir, --quality-dir), as committed for SmolLM2 (bench/results, the default) and for Gemma
(bench/results/gemma3). Any other model than SmolLM2 names its OUT; an OUT whose table is another model's is refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _bench_module(name: str):
    """A sibling script of bench/ as a module, loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


DEFAULT_MODEL = "smollm2-135m"


def eval_ids(data: str, model: str = DEFAULT_MODEL):
    """1-D int64 ids of `data` by `model`'s HF tokenizer, as bench/quality.py's evaluation tokenizes it."""
    from transformers import AutoTokenizer

    from pbs2p_edge.calib.text import load_text
    from pbs2p_edge.calib.tokens import encode
    from pbs2p_edge.model.sources import resolve_source

    src = resolve_source(model)
    tok = AutoTokenizer.from_pretrained(src.location, gguf_file=src.gguf_file)
    return encode(tok, load_text(data, split="test"))


def llama_perplexity(path: str, data: str, seqlen: int, windows: int, threads: int, model: str = DEFAULT_MODEL) -> dict:
    """PPL of llama.cpp on `path` with pbs2p_edge.model.perplexity's protocol (log-softmax in float64 here)."""
    import numpy as np

    from pbs2p_edge.calib.windows import eval_windows

    LlamaRunner = _bench_module("peer_runner").LlamaRunner

    W = eval_windows(eval_ids(data, model), seqlen, windows).numpy()
    m = LlamaRunner(path, threads, seqlen)
    total = 0.0
    t0 = time.perf_counter()
    for row in W:
        m.reset()
        logits = m.eval(row, 0)  # (seqlen, vocab) float32
        for s in range(0, seqlen - 1, 256):  # rows s..e-1 predict tokens s+1..e
            e = min(s + 256, seqlen - 1)
            z = logits[s:e].astype(np.float64)
            mx = z.max(1, keepdims=True)
            lse = mx[:, 0] + np.log(np.exp(z - mx).sum(1))
            total += float((lse - z[np.arange(e - s), row[s + 1:e + 1]]).sum())
    m.close()
    tokens = W.shape[0] * (seqlen - 1)
    return {"ppl": math.exp(total / tokens), "nll": total / tokens, "windows": int(W.shape[0]), "tokens": tokens,
            "seconds": round(time.perf_counter() - t0, 1)}


def pbs2p_perplexity(path: str, data: str, seqlen: int, windows: int, threads: int, model: str = DEFAULT_MODEL) -> dict:
    """PPL of libpbs2p's C forward on our GGUF, same ids and windows."""
    from pbs2p_edge.runtime.model import Model

    ids = eval_ids(data, model).numpy()
    t0 = time.perf_counter()
    with Model(path, n_threads=threads, n_ctx=seqlen) as m:
        r = m.perplexity(ids, seqlen, windows)
    return {"ppl": r.ppl, "nll": r.nll, "windows": r.windows, "tokens": r.tokens,
            "seconds": round(time.perf_counter() - t0, 1)}


def model_parameters(model: str) -> int:
    """The P of bits per parameter: elements of every tensor in `model`'s source GGUF (bench/peer.py's source; a tied
    output stored once, as the budget's pbs2p_edge.model.budget.model_parameters counts it)."""
    read_tensors = _bench_module("gguf_tensors").read_tensors
    return sum(t.n_elements for t in read_tensors(_bench_module("peer").source_gguf(model)))


def quality_rows(qdir: Path) -> list[dict]:
    """Our rows of bench/quality.py's results (QDIR/rows/*.json) as points."""
    out = []
    for f in sorted((qdir / "rows").glob("*.json")):
        r = json.loads(f.read_text())
        out.append({"engine": "ours (torch eval)",
                    "name": "FP32 (uncompressed)" if r["method"] == "fp" else r["row"],
                    "method": r["method"], "bits_per_weight": r.get("bits_per_weight", 32.0), "ppl": r["ppl"],
                    "windows": r["windows"], "source": str(f)})
    return out


BUDGETS = (1.6, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
MAIN_DATA = "austen:prideprejudice"
# [choice] the text of another kind: a present-day technical manual (pbs2p_edge.calib.debian_reference), since
# calibrating on one Austen novel and evaluating on another flatters every method
OTHER_DATA = "debian-reference"
CALIB = ("--calib", "austen:emma", "--nsamples", "32", "--seqlen", "512")  # the quality table's protocol
# [choice] ablations: the budgets also exported without recovery (where the CLI recovers by default) and without the
# binary tier (where the allocator uses it)
NO_RECOVERY_BUDGETS = (3.0,)
NO_BINARY_BUDGETS = (3.0, 3.5)


def _no_binary_tiers() -> tuple[str, ...]:
    from pbs2p_edge.model.budget import LINEAR_TIERS
    from pbs2p_edge.pack.tiers import BINARY

    return tuple(t for t in LINEAR_TIERS if t != BINARY)


NO_BINARY_TIERS = _no_binary_tiers()


def budget_jobs(args) -> list[tuple[str, list[str]]]:
    """(file name, export options) of every budget point: each as the CLI makes it by default, its recovery steps
    explicit and in its name (budget-B-recoverS; none: budget-B), then the ablations (no recovery; no binary tier,
    budget-B-no-pbs2p[-recoverS]), then the default recipe."""
    from pbs2p_edge.algo.config import default_recover_steps
    from pbs2p_edge.cli import DEFAULT_BPW

    def job(b: float, steps: int, binary: bool = True) -> tuple[str, list[str]]:
        name = f"budget-{b:g}{'' if binary else '-no-pbs2p'}{f'-recover{steps}' if steps else ''}"
        return name, ["--bpw", f"{b:g}", "--recover", str(steps), *([] if binary else ["--tiers", ",".join(NO_BINARY_TIERS)])]

    jobs = [job(b, default_recover_steps(b)) for b in args.budgets if b != DEFAULT_BPW]  # that one: default.gguf
    jobs += [job(b, 0) for b in args.no_recovery_budgets if default_recover_steps(b)]
    # each ablation without the binary tier pairs with the same budget's points: default recovery, and none when asked
    jobs += [job(b, steps, binary=False) for b in args.no_binary_budgets
             for steps in sorted({default_recover_steps(b), *([0] if b in args.no_recovery_budgets else [])})]
    return jobs + [("default", [])]


def make_budget_models(args) -> list[str]:
    """Export each budget point and the default recipe into OUT/models (kept when present), two at a time; returns
    a line per export that failed (a budget below the smallest file the tiers make is refused at once)."""
    import subprocess

    models = args.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    jobs = budget_jobs(args)
    calib = ("--calib", "austen:emma", "--nsamples", "2", "--seqlen", "64") if args.quick else CALIB
    running, failed = [], []

    def wait_one() -> None:
        name, t0, proc = running.pop(0)
        _, err = proc.communicate()
        last = (err.strip().splitlines() or [""])[-1]
        print(f"{name}: exit {proc.returncode} in {time.perf_counter() - t0:.0f} s {last}", file=sys.stderr, flush=True)
        if proc.returncode:
            failed.append(f"{name}: {last.removeprefix('pbs2p-edge: error: ')}")
        if not args.quick:
            keep_refusal(args.out, name, last.removeprefix("pbs2p-edge: error: ") if proc.returncode == 2 else None)

    for name, opts in jobs:
        path = models / f"{name}{'.quick' if args.quick else ''}.gguf"
        if path.exists() and not args.redo:
            continue
        while len(running) >= args.jobs:
            wait_one()
        cmd = [sys.executable, "-m", "pbs2p_edge.cli", "export", args.model, str(path), *opts, *calib,
               "--threads", "1", "--quiet"]
        running.append((name, time.perf_counter(), subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                                                    stderr=subprocess.PIPE, text=True)))
    while running:
        wait_one()
    return failed


def refusals_file(out: Path) -> Path:
    return out / "quality_vs_size" / "refused.json"


def keep_refusal(out: Path, name: str, why: str | None) -> None:
    """Records (or, why None, forgets) that the export `name` was refused (exit 2: a budget below the smallest file
    its tiers make), so a --cached table still says which budgets make no file."""
    f = refusals_file(out)
    kept = json.loads(f.read_text()) if f.exists() else {}
    kept.pop(name, None)
    if why is not None:
        kept[name] = why
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(dict(sorted(kept.items())), indent=1) + "\n")
    os.replace(tmp, f)


def peer_bytes(peer_dir: Path) -> dict[str, int]:
    """llama.cpp file path -> its size, from bench/peer.py's table (the files themselves are not committed)."""
    f = peer_dir / "peer.json"
    return {r["file"]: r["file_bytes"] for r in json.loads(f.read_text()) if "file_bytes" in r} if f.exists() else {}


def windows_of(args, data: str) -> int:
    """The windows evaluated on `data`: --windows on the main text, --other-windows on the other."""
    return args.windows if data == args.data else args.other_windows


def _child(kind: str, path: str, args, data: str) -> dict:
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, path, "--model", args.model, "--data", data,
           "--seqlen", str(args.seqlen), "--windows", str(windows_of(args, data)), "--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} {path}: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def row_file(rows_dir: Path, name: str, data: str, args) -> Path:
    """Where the row of `name` on `data` is kept; the main text's rows keep the names they had before other texts."""
    slug = "".join(c if c.isalnum() else "_" for c in name)
    text = "" if data == MAIN_DATA else "." + "".join(c if c.isalnum() else "_" for c in data)
    return rows_dir / f"{slug}{text}.w{windows_of(args, data)}.s{args.seqlen}.json"


def collect(args, data: str) -> list[dict]:
    """Every row on the text `data`: llama.cpp's files, our GGUF files and, on the main text, the torch rows."""
    describe = _bench_module("peer").describe

    rows_dir = args.out / "quality_vs_size" / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    # a quick run's windows are not the quality table's, nor another text's: its torch rows are left out
    torch_rows = args.quality_dir.exists() and not args.quick and data == args.data
    points = quality_rows(args.quality_dir) if torch_rows else []
    jobs = []
    peer_json = args.peer_dir / "peer.json"
    for r in json.loads(peer_json.read_text()) if peer_json.exists() else []:
        if "error" not in r and (not args.quick or r["name"] in ("F16", "Q4_0")):
            jobs.append(("llama", f"llama.cpp {r['name']}", r["file"]))
    for f in sorted((args.out / "models").glob("*.gguf")) if (args.out / "models").exists() else []:
        if args.quick == f.name.endswith(".quick.gguf"):
            jobs.append(("pbs2p", f"ours {f.name.removesuffix('.gguf').removesuffix('.quick')} (libpbs2p)", str(f)))
    from pbs2p_edge import commands

    for kind, name, path in jobs:
        f = row_file(rows_dir, name, data, args)
        if args.cached and not f.exists():
            print(f"{name} on {data}: not evaluated (--cached)", file=sys.stderr)
            continue
        if not f.exists() or args.redo:
            t0 = time.perf_counter()
            try:
                res = _child(kind, path, args, data)
            except RuntimeError as exc:
                print(f"{name}: failed: {exc}", file=sys.stderr)
                continue
            info = describe(Path(path)) if kind == "llama" else commands.inspect(path)
            row = {"engine": "llama.cpp" if kind == "llama" else "ours (libpbs2p)", "name": name,
                   "bits_per_weight": info["bits_per_weight"], "file": path, "data": data, **res}
            if kind == "pbs2p":
                row["file_bytes"] = os.path.getsize(path)
                row["tiers"] = info["tiers"]
                # the runtime's arithmetic changes with the code (e.g. a4f4f1b)
                row["measured_at"] = _bench_module("checkout").commit()
            tmp = f.with_name(f".{f.name}.tmp")
            tmp.write_text(json.dumps(row, indent=1) + "\n")
            os.replace(tmp, f)
            print(f"{name} on {data}: ppl {res['ppl']:.2f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
        row = json.loads(f.read_text())
        if kind == "pbs2p" and "tiers" not in row and row.get("file_bytes") == os.path.getsize(path):
            row["tiers"] = commands.inspect(path)["tiers"]  # a row kept from before tiers were recorded, same file
            f.write_text(json.dumps(row, indent=1) + "\n")
        points.append(row)
    if args.cached:  # our exports are not kept in git: their rows are, whether or not the files are still here
        seen = {p["name"] for p in points}
        for f in sorted(rows_dir.glob(f"ours_*.w{windows_of(args, data)}.s{args.seqlen}.json")):
            r = json.loads(f.read_text())
            if r["name"] not in seen and r.get("data", MAIN_DATA) == data and f == row_file(rows_dir, r["name"], data, args):
                points.append(r)
    sizes = peer_bytes(args.peer_dir)
    for p in points:
        if p.get("file_bytes") is None and p.get("file") in sizes:
            p["file_bytes"] = sizes[p["file"]]
    return points




def pareto_front(points: list[dict]) -> set[str]:
    """Names of the points no other point beats on both bits per weight and perplexity."""
    front = set()
    for p in points:
        if not any(q["bits_per_weight"] <= p["bits_per_weight"] and q["ppl"] <= p["ppl"]
                   and (q["bits_per_weight"], q["ppl"]) != (p["bits_per_weight"], p["ppl"]) for q in points):
            front.add(p["name"])
    return front


def write_results(out: Path, points: list[dict], meta: dict, other: list[dict] | None = None) -> Path:
    """OUT/quality_vs_size.{json,md}: the main text's rows, each file's perplexity on the other text beside it
    (`other`: rows on meta['other_data']), and the dominance checks on both texts."""
    from pbs2p_edge.cli import DEFAULT_BPW

    out.mkdir(parents=True, exist_ok=True)
    other = other or []
    tmp = out / f".quality_vs_size.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"meta": meta, "rows": points, "other_rows": other}, indent=1) + "\n")
    os.replace(tmp, out / "quality_vs_size.json")
    front = pareto_front(points)
    params = meta["parameters"]
    lines = [f"# Quality vs size: {meta['model_name']}, our methods and llama.cpp's types", "",
             f"Command: `{meta['command']}`", "",
             f"Perplexity on non-overlapping {meta['seqlen']}-token windows of `{meta['data']}` (first "
             f"{meta['windows']} for the llama.cpp and libpbs2p rows; the torch rows keep their own window count, "
             f"shown). Same token ids for all ({meta['model_name']}'s HF tokenizer). bits/weight: honest, decoder-block "
             "linears as stored. * = on the Pareto front (no point has both fewer bits and lower perplexity).", "",
             "file MB: the file's size as `ls` gives it, in 10^6 bytes (- where the row has no file: torch rows, and "
             f"earlier exports not kept); bits/param: file bits per model parameter ({params / 1e6:.1f} M).", "",
             f"Our files: `budget-B[-no-pbs2p][-recoverS]` is `pbs2p-edge export {meta['model']} OUT --bpw B "
             "--recover S` (S 0 when absent; -no-pbs2p: `--tiers` without the binary tier), `default` the export with "
             f"no option (budget {DEFAULT_BPW:g}); 32 x 512 tokens of Emma, seed 0.", "",
             f"PPL (other): the same file's perplexity on the first {meta.get('other_windows', meta['windows'])} windows of "
             f"`{meta.get('other_data') or '-'}`, a text of another kind (calibration is on Austen's Emma; - where "
             "not evaluated).", "",
             "measured at: the commit whose libpbs2p computed our file's row (from a4f4f1b on, the grid tiers' and a "
             "block-type head's products run on int8-quantized activations, as llama.cpp's do; rows measured before "
             "it used float activations and differ by about 0.3 % in perplexity; from b692799 on the KV cache holds "
             "float16, as llama.cpp's does, within 0.1 % of the float32 cache's perplexity).", "",
             "| engine | model | file MB | bits/param | bits/weight | PPL | PPL (other) | windows | front | measured at |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    other_ppl = {p["name"]: p["ppl"] for p in other}
    for p in sorted(points, key=lambda p: (p.get("file_bytes") or 1e18, p["bits_per_weight"])):
        size = p.get("file_bytes")
        mb, bpp = (f"{size / 1e6:.1f}", f"{8 * size / params:.2f}") if size else ("-", "-")
        o = f"{other_ppl[p['name']]:.2f}" if p["name"] in other_ppl else "-"
        lines.append(f"| {p['engine']} | {p['name']} | {mb} | {bpp} | {p['bits_per_weight']:.3f} | {p['ppl']:.2f} | "
                     f"{o} | {p['windows']} | {'*' if p['name'] in front else ''} | {p.get('measured_at', '-')} |")
    from pbs2p_edge.report import binary_tier, dominance

    lines += ["", f"Dominance on `{meta['data']}` (lower perplexity at no larger file):", *dominance(points)]
    if other:
        lines += ["", f"Dominance on `{meta['other_data']}`:", *dominance(other)]
    earn = binary_tier(points, other, meta.get("refused"))
    if earn:
        lines += ["", "Does the binary tier earn its place? At each bit budget, our best file with PBS2P layers "
                  "against our best without (the allocator's own choice, recovery and the ablation without the tier):",
                  "", *earn]
    if meta.get("refused"):
        lines += ["", "Budgets that make no file:", *(f"- {name}: {why}" for name, why in meta["refused"].items())]
    path = out / "quality_vs_size.md"
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    import shlex

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"{DEFAULT_MODEL} (default) or gemma3-270m: the token ids' "
                   "tokenizer, the parameter count and the model our budget files are exported from")
    p.add_argument("--out", type=Path, default=None, help=f"the model's results folder (default bench/results, "
                   f"{DEFAULT_MODEL}'s; another model names its own, e.g. bench/results/gemma3)")
    p.add_argument("--quality-dir", type=Path, default=None,
                   help="the model's bench/quality.py results (default OUT/quality)")
    p.add_argument("--peer-dir", type=Path, default=None, help="the model's bench/peer.py results (default OUT/peer)")
    p.add_argument("--data", default=MAIN_DATA)
    p.add_argument("--other-data", default=OTHER_DATA, help="a text of another kind, evaluated beside ('' for none)")
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--windows", type=int, default=16, help="first K windows (16: the -16w quality table)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--redo", action="store_true")
    p.add_argument("--quick", action="store_true", help="1 window of 256 tokens, F16 + Q4_0 and quick exports")
    p.add_argument("--budgets", type=lambda t: [float(x) for x in t.split(",") if x], default=list(BUDGETS),
                   help="bit budgets (file bits per parameter) to export, comma-separated ('' for none)")
    floats = lambda t: [float(x) for x in t.split(",") if x]  # noqa: E731
    p.add_argument("--no-recovery-budgets", type=floats, default=list(NO_RECOVERY_BUDGETS),
                   help="budgets also exported with --recover 0 where the CLI recovers by default ('' for none)")
    p.add_argument("--no-binary-budgets", type=floats, default=list(NO_BINARY_BUDGETS),
                   help=f"budgets also exported without the binary tier (--tiers {','.join(NO_BINARY_TIERS)})")
    p.add_argument("--other-windows", type=int, default=None, help="windows of --other-data (default: --windows)")
    p.add_argument("--jobs", type=int, default=2, help="exports run at once")
    p.add_argument("--cached", action="store_true", help="export and evaluate nothing: the table from the rows kept")
    p.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.seqlen, args.windows, args.other_windows = 256, 1, 1
    args.other_windows = args.other_windows or args.windows
    if args.child:
        fn = llama_perplexity if args.child[0] == "llama" else pbs2p_perplexity
        print(json.dumps(fn(args.child[1], args.data, args.seqlen, args.windows, args.threads, args.model)))
        return 0
    if args.out is None:
        if args.model != DEFAULT_MODEL:
            p.error(f"--model {args.model}: give its results folder with --out (bench/results holds {DEFAULT_MODEL}'s)")
        args.out = Path("bench/results")
    table = args.out / "quality_vs_size.json"
    kept_model = json.loads(table.read_text())["meta"].get("model", DEFAULT_MODEL) if table.exists() else args.model
    if kept_model != args.model:  # its rows and exports would pass for this model's (tables before --model: SmolLM2's)
        p.error(f"{args.out} holds the results of {kept_model}, not {args.model}: give --out another folder")
    parameters = model_parameters(args.model)  # before any export: the model's source is there
    args.quality_dir = args.quality_dir or args.out / "quality"
    args.peer_dir = args.peer_dir or args.out / "peer"
    command = shlex.join(["python", "bench/pareto.py", *(argv if argv is not None else sys.argv[1:])])
    if not args.cached:
        make_budget_models(args)
    kept = json.loads(refusals_file(args.out).read_text()) if refusals_file(args.out).exists() else {}
    refused = {name: kept[name] for name, _ in budget_jobs(args) if name in kept} if not args.quick else {}
    points = collect(args, args.data)
    other = collect(args, args.other_data) if args.other_data else []
    meta = {"command": command, "model": args.model,
            "model_name": _bench_module("peer").MODEL_NAMES.get(args.model, args.model), "parameters": parameters,
            "data": args.data, "other_data": args.other_data, "seqlen": args.seqlen, "windows": args.windows,
            "other_windows": args.other_windows, "threads": args.threads, "quick": args.quick, "refused": refused}
    print(write_results(args.out, points, meta, other))
    return 0


if __name__ == "__main__":
    sys.exit(main())
