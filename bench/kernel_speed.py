"""Kernel benchmark: libpbs2p GEMV/GEMM per kernel variant vs a numpy float32 matmul of the same shape.

For each shape (rows x cols of a linear) and N:M in 4:8, 5:8, 6:8, a random layer is packed by
pbs2p_edge.pack and prepared once; every kernel variant this CPU runs is timed on one token (GEMV) and
on a batch of tokens (GEMM), next to numpy's float32 W @ x on a dense matrix of the same shape.
Times are medians. Effective bandwidth = bytes the operation must read from memory (the prepared bit
planes + coefficients for libpbs2p, 4 bytes per weight for numpy) / time, shown against a STREAM-like
copy (numpy copy of a 256 MB buffer, read + write bytes) measured in the same run.

    python bench/kernel_speed.py                          # all shapes, 1 thread, writes bench/results/kernels.md
    python bench/kernel_speed.py --quick --out /tmp/k.md  # two small shapes, a smoke run
    python bench/kernel_speed.py --threads 4              # libpbs2p n_threads=4 and 4 BLAS threads for numpy
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="threads for libpbs2p and for numpy's BLAS (default 1)")
    p.add_argument("--tokens", type=int, default=16, help="tokens of the GEMM batch (default 16)")
    p.add_argument("--quick", action="store_true", help="only 576x576 and 1536x576, 4:8")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "kernels.md")
    p.add_argument("--budget", type=float, default=0.4, help="seconds of repeats per timing (default 0.4)")
    p.add_argument("--memory-gib", type=float, default=1.0,
                   help="GiB of prepared copies cycled by the 'from memory' GEMV rows (default 1.0)")
    return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:  # BLAS reads its thread count when numpy is first imported
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from pbs2p_edge.pack import pack_layer  # noqa: E402
from pbs2p_edge.pack.layout import VALUE_OF  # noqa: E402
from pbs2p_edge.runtime import available_kernels, prepare, select_kernel  # noqa: E402

SHAPES = [(576, 576), (192, 576), (1536, 576), (576, 1536), (4096, 4096), (11008, 4096)]
NS = (4, 5, 6)
M = 8
GROUP_SIZE = 128
REF_MAX_WEIGHTS = 3_000_000  # the scalar reference is too slow to time GEMM beyond this
FROM_MEMORY_MIN_WEIGHTS = 16_000_000  # shapes whose GEMV is also timed from memory (its planes not in any cache)


def random_packed(R: int, K: int, n: int, rng: np.random.Generator):
    """A valid random n:8 layer (one region, alpha + mu per 128 columns), through the public packer."""
    table = VALUE_OF[(n, M)]
    bitmaps = table[rng.integers(0, table.size, size=(R, K // M))].astype(np.uint32)
    mask = ((bitmaps[:, :, None] >> np.arange(M, dtype=np.uint32)) & 1).astype(bool).reshape(R, K)
    signs = (rng.random((1, R, K)) < 0.5) & mask
    G = -(-K // GROUP_SIZE)
    alpha = (0.01 + rng.random((1, 2, R, G))).astype(np.float16).astype(np.float32)
    mu = (rng.random((2, R, G)) - 0.5).astype(np.float16).astype(np.float32)
    return pack_layer(mask=mask, signs=signs, salient=np.zeros(K, bool), group=np.zeros((R, K), np.uint8),
                      alpha=alpha, mu=mu, col_scale=None, n=n, m=M, group_size=GROUP_SIZE)


def median_seconds(fn, budget: float, max_reps: int = 200) -> float:
    fn()  # warm caches and page in
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def from_memory_seconds(packed, layer, x, n_threads: int, args: argparse.Namespace) -> float:
    """Seconds of one GEMV whose planes come from memory: the layer prepared again until the copies hold
    --memory-gib, each product run on the next copy, so a copy's planes have left the caches when it comes round."""
    copies = [layer] + [prepare(packed) for _ in range(max(1, round(args.memory_gib * 2**30 / layer.nbytes)) - 1)]
    run_all = lambda: [c.gemv(x, n_threads) for c in copies]  # noqa: E731
    return median_seconds(run_all, args.budget * 4, max_reps=20) / len(copies)


def copy_bandwidth(budget: float) -> float:
    """GB/s of a numpy copy of 256 MB (bytes read + bytes written)."""
    src = np.ones(64 * 1024 * 1024, dtype=np.float32)
    dst = np.empty_like(src)
    t = median_seconds(lambda: np.copyto(dst, src), budget, max_reps=20)
    return 2 * src.nbytes / t / 1e9


def run(args: argparse.Namespace) -> str:
    from e2e import cpu_name

    rng = np.random.default_rng(0)
    variants = available_kernels()
    shapes = SHAPES[:1] + SHAPES[2:3] if args.quick else SHAPES
    ns = (4,) if args.quick else NS
    T, nt = args.tokens, args.threads
    copy_gbs = copy_bandwidth(args.budget)
    rows = []
    for R, K in shapes:
        W = rng.standard_normal((R, K)).astype(np.float32)  # numpy's operand: values do not change its time
        x = rng.standard_normal(K).astype(np.float32)
        X = rng.standard_normal((T, K)).astype(np.float32)
        np_gemv = median_seconds(lambda: W @ x, args.budget)
        np_gemm = median_seconds(lambda: X @ W.T, args.budget)
        for n in ns:
            packed = random_packed(R, K, n, rng)
            layer = prepare(packed)
            ops = [("gemv", np_gemv, W.nbytes), (f"gemm T={T}", np_gemm, W.nbytes)]
            if R * K >= FROM_MEMORY_MIN_WEIGHTS:
                ops.insert(1, ("gemv, from memory", np_gemv, W.nbytes))
            for op, np_t, np_bytes in ops:
                ours = {}
                for v in variants:
                    if v == "ref" and (op == "gemv, from memory" or (op != "gemv" and R * K > REF_MAX_WEIGHTS)):
                        continue
                    select_kernel(v)
                    if op == "gemv, from memory":
                        ours[v] = from_memory_seconds(packed, layer, x, nt, args)
                        continue
                    fn = (lambda: layer.gemv(x, nt)) if op == "gemv" else (lambda: layer.gemm(X, nt))
                    ours[v] = median_seconds(fn, args.budget if v != "ref" else min(args.budget, 0.1))
                best = min((t, v) for v, t in ours.items())
                rows.append((f"{R}x{K}", f"{n}:{M}", op, np_t, ours, best, layer.nbytes, np_bytes))
                print(f"{R}x{K} {n}:{M} {op}: numpy {np_t * 1e3:.3f} ms, "
                      + ", ".join(f"{v} {t * 1e3:.3f} ms" for v, t in ours.items()), file=sys.stderr)
    select_kernel(None)

    out = [f"# libpbs2p kernels vs numpy float32 ({cpu_name()})", "",
           f"`python bench/kernel_speed.py{' --quick' if args.quick else ''} --threads {nt} --tokens {T} --budget {args.budget} --memory-gib {args.memory_gib:g}`; "
           f"{nt} thread(s) for libpbs2p and for numpy's BLAS; medians; variants on this CPU: {', '.join(variants)}.",
           f"STREAM-like copy in the same run: **{copy_gbs:.1f} GB/s** (numpy copy of 256 MB, read + write bytes).",
           "GB/s = bytes the operation reads (prepared bit planes + float32 coefficients for libpbs2p, 4 bytes per "
           "weight for numpy) / median time; % = of the copy bandwidth. Random layers, group size 128, alpha + mu. "
           f"'gemv, from memory': the layer prepared again into copies that hold {args.memory_gib:g} GiB and one GEMV "
           "per copy in turn, so the planes come from memory, not from a cache (numpy's column: its in-cache GEMV).", "",
           "| shape | N:M | op | numpy fp32 ms | " + " | ".join(f"{v} ms" for v in variants)
           + " | best vs numpy | best GB/s (% copy) | numpy GB/s (% copy) |",
           "|---|---|---|---:|" + "---:|" * len(variants) + "---:|---:|---:|"]
    for shape, nm, op, np_t, ours, (bt, bv), nbytes, np_bytes in rows:
        cells = [f"{ours[v] * 1e3:.3f}" if v in ours else "—" for v in variants]
        gbs, np_gbs = nbytes / bt / 1e9, np_bytes / np_t / 1e9
        out.append(f"| {shape} | {nm} | {op} | {np_t * 1e3:.3f} | " + " | ".join(cells)
                   + f" | {np_t / bt:.2f}x ({bv}) | {gbs:.1f} ({100 * gbs / copy_gbs:.0f}%) "
                   f"| {np_gbs:.1f} ({100 * np_gbs / copy_gbs:.0f}%) |")
    return "\n".join(out) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    table = run(ARGS)
    write_atomic(ARGS.out, table)
    print(table)
