"""Block-wise recovery: what it gains in perplexity and what it costs in compression time, per bit budget.

Each point (budget B, recovery steps S) is the product's own path: `pbs2p-edge compress smollm2-135m CK --bpw B
--recover S` on the quality table's calibration (32 x 512 tokens of Emma, seed 0, one torch thread), then
`pbs2p-edge eval CK` (torch, the checkpoint's fake-quant model, which libpbs2p matches; tests/test_cli.py checks
that) on the first --windows 2048-token windows of Pride and Prejudice and of the Debian Reference (a text of
another kind). Points run as child processes, --jobs at a time; each row is kept as JSON, so a run resumes and
--cached only rebuilds the table. Seconds are wall time on a shared 2-core machine: compare rows of one run.

    python bench/recovery.py --out bench/results                       # OUT/recovery.{md,json}
    python bench/recovery.py --out /tmp/r --points 3:0,3:8 --windows 1  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POINTS = ((3.0, 0), (3.0, 64), (5.0, 0), (5.0, 32))
CALIB = ("--calib", "austen:emma", "--nsamples", "32", "--seqlen", "512", "--seed", "0")
TEXTS = ("austen:prideprejudice", "debian-reference")


def _cli(*args: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "pbs2p_edge.cli", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"pbs2p-edge {' '.join(args[:2])}: {res.stderr.strip()[-1000:]}")
    return json.loads(res.stdout)


def run_point(bpw: float, steps: int, windows: int) -> dict:
    """Compress at (bpw, steps) into a temporary checkpoint and evaluate it on every text."""
    with tempfile.TemporaryDirectory(prefix="pbs2p-recovery-") as tmp:
        ck = os.path.join(tmp, "ck")
        t0 = time.perf_counter()
        summary = _cli("compress", "smollm2-135m", ck, "--bpw", f"{bpw:g}", "--recover", str(steps), *CALIB,
                       "--threads", "1", "--quiet")
        wall = time.perf_counter() - t0
        ppl = {t: _cli("eval", ck, "--data", t, "--seqlen", "2048", "--max-windows", str(windows), "--threads", "1",
                       "--json")["ppl"] for t in TEXTS}
    return {"bpw": bpw, "steps": steps, "windows": windows, "ppl": ppl, "compress_seconds": summary["seconds"],
            "plan_seconds": summary.get("plan_seconds"), "wall_seconds": round(wall, 1),
            "peak_memory_bytes": summary["peak_memory_bytes"], "recovered_blocks": summary.get("recovered_blocks", 0),
            "tiers": summary.get("tiers"), "embed_tier": summary.get("embed_tier")}


def write_results(out: Path, rows: list[dict], command: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["bpw"], r["steps"]))
    (out / "recovery.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    base = {r["bpw"]: r for r in rows if r["steps"] == 0}
    lines = ["# Block-wise recovery on SmolLM2-135M: perplexity gained, compression time paid", "",
             f"Command: `{command}`", "",
             "Each row: `pbs2p-edge compress smollm2-135m CK --bpw B --recover S` (32 x 512 tokens of Emma, one "
             "thread), then `pbs2p-edge eval` (torch) on the first windows of 2048 tokens of each text. Time is the "
             "compression's own (planning included), wall clock on a shared 2-core machine; peak memory is the "
             "process's RSS. Recovered blocks: blocks whose fit lowered their error and was kept (of 30).", "",
             "| bits/param budget | recovery steps | PPL Pride and Prejudice | PPL Debian Reference | windows | "
             "compress s | vs no recovery | peak RSS GB | recovered blocks |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = base.get(r["bpw"])
        ratio = f"{r['compress_seconds'] / b['compress_seconds']:.1f}x" if b and r["steps"] else "-"
        lines.append(f"| {r['bpw']:g} | {r['steps']} | {r['ppl'][TEXTS[0]]:.2f} | {r['ppl'][TEXTS[1]]:.2f} | "
                     f"{r['windows']} | {r['compress_seconds']:.0f} | {ratio} | {r['peak_memory_bytes'] / 1e9:.2f} | "
                     f"{r['recovered_blocks']} |")
    path = out / "recovery.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--points", default=",".join(f"{b:g}:{s}" for b, s in POINTS), help="B:STEPS,... ")
    p.add_argument("--windows", type=int, default=4, help="evaluation windows of 2048 tokens per text")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cached", action="store_true", help="run nothing: the table from the rows kept")
    p.add_argument("--child", nargs=2, type=float, metavar=("B", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_point(args.child[0], int(args.child[1]), args.windows)))
        return 0
    command = shlex.join(["python", "bench/recovery.py", *(argv if argv is not None else sys.argv[1:])])
    rows_dir = args.out / "recovery" / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    points = [(float(b), int(s)) for b, s in (x.split(":") for x in args.points.split(",") if x)]
    todo = [(b, s) for b, s in points if not (rows_dir / f"b{b:g}_s{s}.w{args.windows}.json").exists()]
    running: list = []

    def wait_one() -> None:
        (b, s), proc = running.pop(0)
        out, err = proc.communicate()
        if proc.returncode:
            print(f"{b:g}:{s} failed: {err.strip()[-1000:]}", file=sys.stderr)
            return
        f = rows_dir / f"b{b:g}_s{s}.w{args.windows}.json"
        f.write_text(out.strip().splitlines()[-1] + "\n")
        print(f"{b:g}:{s} done: {out.strip().splitlines()[-1][:200]}", file=sys.stderr, flush=True)

    for b, s in [] if args.cached else todo:
        while len(running) >= args.jobs:
            wait_one()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", f"{b:g}", str(s), "--windows", str(args.windows)]
        running.append(((b, s), subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    while running:
        wait_one()
    rows = [json.loads(f.read_text()) for f in sorted(rows_dir.glob(f"*.w{args.windows}.json"))]
    print(write_results(args.out, [r for r in rows if (r["bpw"], r["steps"]) in points], command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
