"""Quality benchmark: perplexity, honest bits per weight, compression time and peak memory per method.

Every row is one method at one N:M on the same model, the same calibration windows and the same
evaluation windows. Each row runs in its own child process, so its peak memory (ru_maxrss) is its
own; its result is kept as JSON in the results folder, so an interrupted run resumes where it
stopped and the table is rebuilt from whatever rows exist.

    python bench/quality.py --out bench/results/quality --threads 1   # every row, the committed protocol (16 windows)
    python bench/quality.py --out /tmp/q --quick                   # smoke run: 2 rows, tiny protocol

The table goes to OUT/quality.md, one JSON per row to OUT/rows/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer  # noqa: E402  (the table's model name)

# (row name, method, N:M); FP is the uncompressed model.
ROWS = [
    ("fp", None, None),
    ("rtn", "rtn", "8:8"),
    ("magnitude 4:8", "magnitude", "4:8"),
    ("billm", "billm", "8:8"),
    ("arb", "arb", "8:8"),
    ("arb-rc", "arb-rc", "8:8"),
    ("stbllm 6:8", "stbllm", "6:8"),
    ("stbllm 5:8", "stbllm", "5:8"),
    ("stbllm 4:8", "stbllm", "4:8"),
    ("pbs2p 6:8", "pbs2p", "6:8"),
    ("pbs2p 5:8", "pbs2p", "5:8"),
    ("pbs2p 4:8", "pbs2p", "4:8"),
    # the edge-size structure (--preset compact): one alpha/mu per row, ~1.4 honest bits/weight
    ("pbs2p compact 6:8", "pbs2p", "6:8"),
    ("pbs2p compact 4:8", "pbs2p", "4:8"),
]
QUICK_ROWS = ["rtn", "pbs2p 4:8"]


def _slug(name: str) -> str:
    return name.replace(" ", "_").replace(":", "of")


def run_row(name: str, args: argparse.Namespace) -> dict:
    """Compress (unless FP), evaluate; runs inside the child process."""
    from pbs2p_edge import commands
    from pbs2p_edge.algo.config import PRESETS, CompressConfig, parse_nm

    method, nm = {r[0]: (r[1], r[2]) for r in ROWS}[name]
    preset = PRESETS["compact" if "compact" in name else "paper"]
    row: dict = {"row": name, "method": method or "fp", "nm": nm or "-"}
    with tempfile.TemporaryDirectory(prefix="pbs2p-bench-") as tmp:
        source = args.model
        if method is not None:
            n, m = parse_nm(nm)
            cfg = CompressConfig(method=method, n=n, m=m, seed=args.seed, **preset)
            ckpt = os.path.join(tmp, "ckpt")
            summary = commands.compress(args.model, ckpt, cfg, calib=args.calib, nsamples=args.nsamples,
                                        seqlen=args.calib_seqlen, progress=False)
            info = commands.inspect(ckpt)
            row.update(seconds=summary["seconds"], bits_per_weight=info["bits_per_weight"],
                       mean_n=summary["mean_n"])
            source = ckpt
            # the same checkpoint as our GGUF file, run by libpbs2p on the same windows: the C runtime against PyTorch
            gguf = os.path.join(tmp, "model.gguf")
            commands.export(ckpt, gguf, cfg, calib=args.calib, nsamples=args.nsamples, seqlen=args.calib_seqlen,
                            progress=False)
            ev_c = commands.evaluate(gguf, args.data, args.eval_seqlen, args.max_windows or None,
                                     threads=args.threads or None)
            row.update(ppl_libpbs2p=ev_c["ppl"], gguf_bytes=os.path.getsize(gguf))
        ev = commands.evaluate(source, args.data, args.eval_seqlen, args.max_windows or None)
        row.update(ppl=ev["ppl"], windows=ev["windows"], tokens=ev["tokens"], eval_seconds=ev["seconds"])
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def _checks(by: dict[str, dict]) -> list[str]:
    """The issue's claims, checked on whichever rows exist: the paper's PPL ordering and PBS2P's
    compression time against arb-rc's."""
    out = []

    def ppl(name):
        return by[name]["ppl"] if name in by else None

    def verdict(ok):
        return "holds" if ok else "does NOT hold"

    chain = ["pbs2p 6:8", "arb-rc", "billm"]
    if all(ppl(n) is not None for n in chain):
        vals = " < ".join(f"{n} {ppl(n):.2f}" for n in chain)
        out.append(f"- Paper ordering PBS2P 6:8 < ARB-RC < BiLLM: {verdict(ppl(chain[0]) < ppl(chain[1]) < ppl(chain[2]))} ({vals}).")
    for nm in ("6:8", "5:8", "4:8"):
        a, b = ppl(f"pbs2p {nm}"), ppl(f"stbllm {nm}")
        if a is not None and b is not None:
            out.append(f"- PBS2P {nm} < STBLLM-style {nm}: {verdict(a < b)} ({a:.2f} vs {b:.2f}).")
    base = by.get("arb-rc", {}).get("seconds")
    for name in ("pbs2p 6:8", "pbs2p 5:8", "pbs2p 4:8"):
        secs = by.get(name, {}).get("seconds")
        if base and secs:
            out.append(f"- Compression time {name} / arb-rc: {secs / base:.2f}x ({secs:.0f} s vs {base:.0f} s; target <= 1.5x).")
    return ["", "Checks:", ""] + out if out else []


def write_table(out: Path, args: argparse.Namespace, command: str) -> Path:
    rows = []
    for name, _, _ in ROWS:
        f = out / "rows" / f"{_slug(name)}.json"
        if f.exists():
            rows.append(json.loads(f.read_text()))
    lines = [
        f"# Quality: {peer.MODEL_NAMES.get(args.model, args.model)}, PBS2P and baselines",
        "",
        f"Protocol: calibration {args.nsamples} x {args.calib_seqlen} tokens from `{args.calib}` (seed {args.seed}); "
        f"evaluation on non-overlapping {args.eval_seqlen}-token windows of `{args.data}`"
        + (f" (first {args.max_windows})" if args.max_windows else " (all)") + ".",
        f"Torch threads: {args.threads or 'default'}. Bits per weight: honest, everything stored for the linear layers / their weight count. "
        "Time: compression wall time on this machine; memory: the row's peak RSS.",
        "",
        f"Command: `{command}`",
        *([f"", args.note] if getattr(args, "note", None) else []),
        "",
        "PPL: PyTorch on the fake-quantized model; PPL (libpbs2p): the same checkpoint exported to GGUF and run by the C "
        "runtime on the same windows (- for rows measured before the column existed, and for FP).",
        "",
        "| row | PPL | PPL (libpbs2p) | bits/weight | mean N | compress s | peak RSS MiB | windows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        bits = f"{r['bits_per_weight']:.3f}" if "bits_per_weight" in r else "32 (fp32)"
        mean_n = f"{r['mean_n']:.3f}" if "mean_n" in r else "-"
        secs = f"{r['seconds']:.0f}" if "seconds" in r else "-"
        c = f"{r['ppl_libpbs2p']:.2f}" if "ppl_libpbs2p" in r else "-"
        lines.append(f"| {r['row']} | {r['ppl']:.2f} | {c} | {bits} | {mean_n} | {secs} | {r['peak_rss_mib']:.0f} "
                     f"| {r['windows']} |")
    lines += _checks({r["row"]: r for r in rows})
    missing = [n for n, _, _ in ROWS if not (out / "rows" / f"{_slug(n)}.json").exists()]
    if missing:
        lines += ["", f"Rows not run yet: {', '.join(missing)}."]
    path = out / "quality.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results/quality")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--calib", default="austen:emma")
    p.add_argument("--nsamples", type=int, default=32)
    p.add_argument("--calib-seqlen", type=int, default=512)
    p.add_argument("--data", default="austen:prideprejudice")
    p.add_argument("--eval-seqlen", type=int, default=2048)
    p.add_argument("--max-windows", type=int, default=16, help="evaluation windows (default 16, the windows bench/pareto.py uses; 0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", default="all", help="comma-separated row names, or all")
    p.add_argument("--quick", action="store_true", help="2 rows, 8 x 128 calibration, 2 windows of 256")
    p.add_argument("--redo", action="store_true", help="recompute rows that already have results")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per row (default: torch's; 1 is much faster on a busy machine)")
    p.add_argument("--note", help="a line of conditions to print under the command (e.g. what else ran)")
    p.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row in this process
    args = p.parse_args()
    if args.quick:
        args.nsamples, args.calib_seqlen, args.eval_seqlen, args.max_windows = 8, 128, 256, 2
        if args.rows == "all":
            args.rows = ",".join(QUICK_ROWS)
    out = Path(args.out)
    if args.row:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(run_row(args.row, args)))
        return 0
    names = [r[0] for r in ROWS] if args.rows == "all" else [s.strip() for s in args.rows.split(",")]
    unknown = set(names) - {r[0] for r in ROWS}
    if unknown:
        p.error(f"unknown rows {sorted(unknown)}; known: {[r[0] for r in ROWS]}")
    (out / "rows").mkdir(parents=True, exist_ok=True)
    child_args = ["--model", args.model, "--calib", args.calib, "--nsamples", str(args.nsamples),
                  "--calib-seqlen", str(args.calib_seqlen), "--data", args.data,
                  "--eval-seqlen", str(args.eval_seqlen), "--seed", str(args.seed)]
    child_args += ["--max-windows", str(args.max_windows)]
    if args.threads:
        child_args += ["--threads", str(args.threads)]
    # the table states the protocol; which rows one invocation ran (--rows, --redo) is not part of it
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a in ("--rows", "--note"):
            skip = True
        elif not (a.startswith(("--rows=", "--note=")) or a == "--redo"):
            argv.append(a)
    command = shlex.join(["python", "bench/quality.py", *argv])
    for name in names:
        f = out / "rows" / f"{_slug(name)}.json"
        if f.exists() and not args.redo:
            continue
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, __file__, *child_args, "--row", name],
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(f"row {name} failed:\n{res.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        f.write_text(json.dumps(row, indent=1) + "\n")
        print(f"{name}: ppl {row['ppl']:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        write_table(out, args, command)
    print(write_table(out, args, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
