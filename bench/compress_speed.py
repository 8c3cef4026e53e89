"""Compression speed benchmark: seconds per compress_layer call, per method, on SmolLM2-shaped layers.

Each method compresses a random layer (tests/algo/conftest.py's make_layer: correlated inputs with
uneven column scales) of the shapes of SmolLM2-135M's MLP (1536x576 gate/up, 576x1536 down) with
its default structure; pruning methods at 6:8. Times are medians of --repeats runs. With
--baseline DIR (a directory holding an older copy of the package, importable as
`<--baseline-name>.algo`) the same calls are timed on that copy in the same run, interleaved, and
the table gets a speed-up column; every compared LayerResult is also checked for bit equality
(and, where it differs, by how much: the GPTQ loss and the share of differing signs).

    python bench/compress_speed.py                              # 1 thread, writes bench/results/compress_speed.md
    python bench/compress_speed.py --threads 2                  # torch intra-op threads
    python bench/compress_speed.py --baseline /tmp/old --baseline-name pbs2p_old
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["rtn", "magnitude", "billm", "arb", "arb-rc", "stbllm", "pbs2p"]
SHAPES = [(1536, 576), (576, 1536)]
FIELDS = ["mask", "signs", "salient", "group", "alpha", "mu", "col_scale"]


def make_layer(R: int, K: int, seed: int = 0, tokens: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """W (R, K) and H = 2/n X^T X, the same construction as tests/algo/conftest.py."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(tokens, K, generator=g) * (0.2 + 2 * torch.rand(K, generator=g))
    X = X + torch.randn(tokens, 8, generator=g) @ torch.randn(8, K, generator=g)
    return torch.randn(R, K, generator=g) * 0.02, 2 / tokens * X.T @ X


def _same(a, b) -> bool:
    fields = all((getattr(a, f) is None and getattr(b, f) is None) or torch.equal(getattr(a, f), getattr(b, f))
                 for f in FIELDS)
    return fields and a.loss == b.loss


def _compare(a, b) -> str:
    """'yes' when bit-equal; otherwise how far apart: the GPTQ loss and the share of differing signs."""
    if _same(a, b):
        return "yes"
    signs = float((a.signs != b.signs).float().mean())
    return f"no: loss {a.loss / b.loss - 1:+.1e}, signs {signs:.1e} differ"


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def run(args: argparse.Namespace) -> list[dict]:
    from pbs2p_edge.algo.compress_layer import compress_layer
    from pbs2p_edge.algo.config import CompressConfig
    old = None
    if args.baseline:
        sys.path.insert(0, str(args.baseline))
        old_cl = importlib.import_module(f"{args.baseline_name}.algo.compress_layer")
        old_cfg = importlib.import_module(f"{args.baseline_name}.algo.config")
        old = (old_cl.compress_layer, old_cfg.CompressConfig)
    rows = []
    for R, K in SHAPES:
        W, H = make_layer(R, K, seed=args.seed)
        for method in args.methods:
            n = args.n if method in ("magnitude", "stbllm", "pbs2p") else 8
            new_t, old_t, equal = [], [], "yes"
            for _ in range(args.repeats):
                t, res = _timed(compress_layer, W, H, CompressConfig(method=method, n=args.n), n)
                new_t.append(t)
                if old is not None:
                    t, res_old = _timed(old[0], W, H, old[1](method=method, n=args.n), n)
                    old_t.append(t)
                    equal = _compare(res, res_old)
            row = {"method": method, "shape": f"{R}x{K}", "new": statistics.median(new_t)}
            if old is not None:
                row.update(old=statistics.median(old_t), equal=equal)
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    s = f"| {row['method']} | {row['shape']} | {row['new']:.2f} |"
    if "old" in row:
        s += f" {row['old']:.2f} | {row['old'] / row['new']:.1f}x | {row['equal']} |"
    return s


def _ratios(rows: list[dict]) -> list[str]:
    """pbs2p's time over arb-rc's per shape (issue 2's target: at most 1.5x)."""
    out = []
    for shape in dict.fromkeys(r["shape"] for r in rows):
        by = {r["method"]: r for r in rows if r["shape"] == shape}
        if "pbs2p" in by and "arb-rc" in by:
            line = f"- {shape}: pbs2p / arb-rc = {by['pbs2p']['new'] / by['arb-rc']['new']:.2f}x"
            if "old" in by["pbs2p"]:
                line += f" (baseline {by['pbs2p']['old'] / by['arb-rc']['old']:.2f}x)"
            out.append(line)
    return out + [""] if out else []


def table(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    has_old = "old" in rows[0]
    head = "| method | shape | s (median) |" + (" baseline s | speed-up | same result as baseline |" if has_old else "")
    sep = "|---" * (6 if has_old else 3) + "|"
    lines = [
        "# compress_layer speed",
        "",
        f"Command: `{command}`",
        "",
        f"torch {torch.__version__}, {args.threads} intra-op thread(s), {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}; median of {args.repeats}; "
        f"pruning methods at {args.n}:8, others dense; seed {args.seed}.",
        "",
        head,
        sep,
        *[_line(r) for r in rows],
        "",
        *_ratios(rows),
    ]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=6, help="N of N:8 for the pruning methods (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--baseline", type=Path, help="directory holding an older copy of the package to compare with")
    p.add_argument("--baseline-name", default="pbs2p_edge_old", help="that copy's package name")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compress_speed.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args)
    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    text = table(rows, args, command)
    print(text)
    write_atomic(args.out, text)


if __name__ == "__main__":
    main()
