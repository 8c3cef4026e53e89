"""One entry command for every benchmark of the report: kernels, llama.cpp peer files, end to end, quality vs size,
compression cost, then the plots and headline summary (`pbs2p-edge bench all --out bench/results`).

Each step is its own script (run alone to redo one figure; see bench/README.md) and runs here as a child
process, so a failing step is reported and the others still run. --quick forwards each script's smoke mode.

    python bench/all.py --out bench/results            # the committed figures (about 1.5-2 h on 2 idle cores)
    python bench/all.py --out /tmp/b --quick           # smoke run of every step (minutes)
    python bench/all.py --out bench/results --steps e2e,report
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = ["kernels", "peer", "e2e", "pareto", "compress_cost", "report"]


def step_command(step: str, out: Path, quick: bool, threads: int) -> list[str]:
    py = [sys.executable]
    q = ["--quick"] if quick else []
    if step == "kernels":  # the kernel table at 1 and 2 threads, as committed
        return py + [str(HERE / "kernel_speed.py"), "--out", str(out), *q]
    if step == "peer":
        return py + [str(HERE / "peer.py"), "--out", str(out / "peer"), "--threads", str(threads), *q]
    if step in ("e2e", "pareto", "compress_cost"):
        return py + [str(HERE / f"{step}.py"), "--out", str(out), "--threads", str(threads), *q]
    return py + ["-c", "import sys; from pbs2p_edge.report import report; "
                 "[print(p) for p in report(sys.argv[1])]", str(out)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ", ".join(STEPS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="each script's --quick smoke mode")
    args = p.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",")]
    bad = set(steps) - set(STEPS)
    if bad:
        p.error(f"unknown steps {sorted(bad)}; known: {STEPS}")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for step in steps:
        cmd = step_command(step, args.out, args.quick, args.threads)
        print(f"== {step}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd).returncode
        print(f"== {step}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(step)
    if failed:
        print(f"failed steps: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
