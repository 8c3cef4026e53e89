"""Compression on a shared machine: `pbs2p-edge compress` with default settings beside one busy process, against
`--threads 1` alone (issue 16: the default must take at most 2x the time of --threads 1 alone).

Each run is `pbs2p-edge compress MODEL OUT --blocks 2 --method pbs2p --nsamples 32 --seqlen 512 --no-cfs --quiet` in
its own process, wall clock. The busy process is one Python loop that never sleeps (one core's worth of work, as
a one-thread build or evaluation is). Rows: default settings quiet and busy; `--threads 1` quiet and busy; and,
for comparison, libgomp's own spin count (GOMP_SPINCOUNT=300000, the default before free_cores.bounded_spinning)
busy. Medians of --reps runs, the configurations alternating.

    python bench/busy_machine.py --out bench/results            # ~8 min at --reps 1 on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (label, busy, extra argv, extra environment)
RUNS = [("default settings", False, [], {}), ("--threads 1", False, ["--threads", "1"], {}),
        ("default settings", True, [], {}), ("--threads 1", True, ["--threads", "1"], {}),
        ("libgomp's own spin count (GOMP_SPINCOUNT=300000)", True, [], {"GOMP_SPINCOUNT": "300000"})]


@contextlib.contextmanager
def busy_process(on: bool):
    """One process spinning on a core while inside (nothing when not on)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        time.sleep(1.0 if on else 0.0)
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def timed(model: str, extra: list[str], env: dict, busy: bool, work: Path) -> float:
    out = work / "ckpt"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(Path(sys.executable).with_name("pbs2p-edge")), "compress", model, str(out), "--blocks", "2", "--method",
           "pbs2p", "--nsamples", "32", "--seqlen", "512", "--no-cfs", "--quiet", *extra]
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    with busy_process(busy):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env={**clean, **env})
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from checkout import commit
    from e2e import _write_atomic, cpu_name

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    times: dict[int, list[float]] = {i: [] for i in range(len(RUNS))}
    with tempfile.TemporaryDirectory(prefix="pbs2p-busy-") as tmp:
        for rep in range(args.reps):
            for i, (label, busy, extra, env) in enumerate(RUNS):
                times[i].append(timed(args.model, extra, env, busy, Path(tmp)))
                print(f"rep {rep} {label} {'busy' if busy else 'quiet'}: {times[i][-1]:.1f} s", file=sys.stderr,
                      flush=True)
    med = {i: statistics.median(t) for i, t in times.items()}
    alone = med[1]  # --threads 1, quiet
    rows = [{"run": label, "busy": busy, "seconds": med[i], "all": [round(t, 1) for t in times[i]],
             "vs_threads_1_alone": med[i] / alone} for i, (label, busy, _, _) in enumerate(RUNS)]
    command = shlex.join(["python", "bench/busy_machine.py", *(argv if argv is not None else sys.argv[1:])])
    lines = ["# Compression beside a busy process", "", f"Command: `{command}` (measured at {commit()})", "",
             f"CPU: {cpu_name()}, {os.cpu_count()} cores. `pbs2p-edge compress {args.model} OUT --blocks 2 --method pbs2p "
             "--nsamples 32 --seqlen 512 --no-cfs --quiet`, wall seconds, medians of "
             f"{args.reps} run(s) each, alternating; busy: one Python loop spinning beside it. The issue's bound: "
             "default settings beside a busy process within 2x of `--threads 1` alone.", "",
             "| run | machine | seconds | / --threads 1 alone |", "|---|---|---:|---:|"]
    lines += [f"| {r['run']} | {'one busy process' if r['busy'] else 'quiet'} | {r['seconds']:.1f} | "
              f"{r['vs_threads_1_alone']:.2f} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    _write_atomic(args.out / "busy_machine.json", json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    _write_atomic(args.out / "busy_machine.md", "\n".join(lines) + "\n")
    print(args.out / "busy_machine.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
