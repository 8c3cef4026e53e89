"""Quality A/B of two trees of the compression engine: the first blocks of SmolLM2-135M, several calibration seeds.

A change to a layer algorithm moves a 1-bit model's perplexity by +-15 % through chaos alone (rounding
ties amplified by 30 GPTQ-compensated blocks), so one full-depth PPL cannot say whether it helped. This
compresses only the first --blocks blocks (CFS off, so both trees prune every layer to the same N), once
per calibration seed, with this tree and with --baseline (a directory holding an older copy of the
package as `pbs2p_edge`, e.g. from `git archive`), and reports per seed the PPL on the first --windows
2048-token windows of Pride and Prejudice and the sum of the layers' GPTQ losses, then geometric means.
Each run is its own child process; --jobs runs that many at once.

    python bench/quality_ab.py --baseline /tmp/old --out bench/results/quality_ab.md    # 4:8, 10 blocks, seeds 0-2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(n: int, blocks: int, windows: int, seed: int, threads: int) -> dict:
    import torch

    from pbs2p_edge import commands
    from pbs2p_edge.algo.config import CompressConfig
    from pbs2p_edge.calib.text import load_text
    from pbs2p_edge.calib.windows import calibration_windows
    from pbs2p_edge.model.perplexity import perplexity
    from pbs2p_edge.model.sequential import compress_model

    torch.set_num_threads(threads)
    model, tok, _ = commands._load_original("smollm2-135m", "compress")
    calib = calibration_windows(commands._tokenize(tok, load_text("austen:emma", split="train")), 32, 512, seed)
    run = compress_model(model, calib, CompressConfig(method="pbs2p", n=n, m=8, cfs=False), progress=False,
                         num_blocks=blocks)
    ids = commands._tokenize(tok, load_text("austen:prideprejudice", split="test"))
    res = perplexity(model, ids, 2048, max_windows=windows)
    return {"ppl": res.ppl, "loss": sum(r.loss for r in run.results.values()), "seconds": run.seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, help="directory holding the older package as pbs2p_edge")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality_ab.md")
    p.add_argument("--n", type=int, default=4, help="N of N:8 (default 4)")
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--child", nargs=2, metavar=("TREE", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        tree, seed = args.child
        if tree != "this":  # import the baseline copy instead of the installed package
            sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
            sys.path.insert(0, tree)
        print(json.dumps(child(args.n, args.blocks, args.windows, int(seed), args.threads)))
        return 0
    if args.baseline is None or not (args.baseline / "pbs2p_edge").is_dir():
        p.error("--baseline must be a directory holding an older copy of the package as pbs2p_edge/")
    seeds = [int(s) for s in args.seeds.split(",")]
    trees = {"this tree": "this", "baseline": str(args.baseline.resolve())}

    def run(job):
        name, seed = job
        cmd = [sys.executable, __file__, "--child", trees[name], str(seed), "--n", str(args.n),
               "--blocks", str(args.blocks), "--windows", str(args.windows), "--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd="/" if name == "baseline" else ROOT)
        if res.returncode != 0:
            raise RuntimeError(f"{name} seed {seed} failed:\n{res.stderr[-2000:]}")
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{name} seed {seed}: ppl {r['ppl']:.2f}, loss {r['loss']:.1f}, {r['seconds']:.0f} s", file=sys.stderr, flush=True)
        return job, r

    jobs = [(name, s) for s in seeds for name in trees]
    with ThreadPoolExecutor(args.jobs) as pool:
        out = dict(pool.map(run, jobs))
    command = shlex.join(["python", "bench/quality_ab.py", *(argv if argv is not None else sys.argv[1:])])
    lines = ["# Quality A/B: this tree against a baseline tree", "", f"Command: `{command}`", "",
             f"SmolLM2-135M, pbs2p {args.n}:8 with CFS off, the first {args.blocks} blocks compressed; calibration "
             f"32 x 512 of Emma per seed; PPL on the first {args.windows} 2048-token windows of Pride and Prejudice; "
             f"loss: sum of the layers' GPTQ losses; {args.threads} thread(s), {args.jobs} run(s) at a time.", "",
             "| seed | PPL this | PPL baseline | ratio | loss this | loss baseline | s this | s baseline |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in seeds:
        a, b = out[("this tree", s)], out[("baseline", s)]
        lines.append(f"| {s} | {a['ppl']:.2f} | {b['ppl']:.2f} | {a['ppl'] / b['ppl']:.3f} | {a['loss']:.1f} | "
                     f"{b['loss']:.1f} | {a['seconds']:.0f} | {b['seconds']:.0f} |")

    def gmean(name, key):
        return math.exp(sum(math.log(out[(name, s)][key]) for s in seeds) / len(seeds))

    lines += ["", f"Geometric means: PPL {gmean('this tree', 'ppl'):.2f} vs {gmean('baseline', 'ppl'):.2f} "
              f"({gmean('this tree', 'ppl') / gmean('baseline', 'ppl'):.3f}x); loss {gmean('this tree', 'loss'):.1f} vs "
              f"{gmean('baseline', 'loss'):.1f}; seconds {gmean('this tree', 'seconds'):.0f} vs {gmean('baseline', 'seconds'):.0f}."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
