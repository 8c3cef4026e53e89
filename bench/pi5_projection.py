"""Raspberry Pi 5 projection, derived from bench/large_shapes.py's results: PROJECTED decode tok/s, not measured.

Decode is memory-bound on a Pi 5: a step reads the weights once, as the engine holds them, so tok/s <= bandwidth /
bytes read per token (the roofline). Those bytes are the file's for llama.cpp (its weights are the mapped file) and
more than the file's for ours (large_shapes.json's read_bytes_per_token: the packed linears are held at 1.5 bits per
weight, a kept-column plane and the file's kept-order signs, where the file stores 11 bits per 8 weights; the NEON
kernel holds and reads the same layout). Public Pi 5 figures put llama.cpp close to that bound (Ollama Q4_K_M Llama-3.2-3B: 4.88 tok/s
x about 2 GB per token is about 10 GB/s). So the table gives, per file:

- the Pi 5 roofline (an upper bound for every engine);
- the projection at the fraction of the read roofline (read bandwidth / bytes read) the file reached on the measured
  machine (large_shapes.json):
  a lower estimate, since that machine has 4-5x the bandwidth and leaves the kernels compute-bound there;
- for our files, the fraction of the Pi's roofline our (NEON, never timed on hardware) kernels must reach to
  match each llama.cpp file of the same shape running at its roofline: the break-even.

Nothing of ours has run on a Pi; the NEON kernels are checked under qemu only. Rows whose measured peak RSS exceeds
the board's memory are marked: they would not run at all.

    python bench/pi5_projection.py --out bench/results        # reads bench/results/large_shapes.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Public Pi 5 figures people quote (../shared/FRONTIER.md, "Edge speed anchors"): measured by others, shown beside
# the projection as a sanity check, never mixed into it.
QUOTED = [
    ("T-MAC, Llama-2-7B 2-bit, 2 threads", 5.92, "T-MAC README (2024 build)"),
    ("llama.cpp Q2_K, Llama-2-7B, 2 threads", 1.31, "T-MAC README (2024 build)"),
    ("Ollama Q4_K_M, Llama-3.2-3B", 4.88, "public Ollama-on-Pi-5 reports"),
    ("Ollama Q4_K_M, Llama-3.1-8B", 2.17, "public Ollama-on-Pi-5 reports"),
]


def project(rows: list[dict], threads: int, bandwidth_gbs: float, ram_gib: float) -> list[dict]:
    out = []
    for r in rows:
        if r.get("threads") != threads or "error" in r or not r.get("read_bytes_per_token"):
            continue
        roofline = bandwidth_gbs * 1e9 / r["read_bytes_per_token"]
        out.append({"shape": r["shape"], "engine": r["engine"], "type": r["type"],
                    "file_gib": r["file_bytes"] / 2**30, "mib_per_token": r["read_bytes_per_token"] / 2**20,
                    "fraction": r["fraction_of_read_roofline"], "measured_tps": r["decode_tps"],
                    # a fraction above 1 means the measured machine's caches held part of the weights (a Pi 5's
                    # 2 MB L2 would not): the roofline bounds the projection
                    "roofline_tps": roofline, "projected_tps": min(r["fraction_of_read_roofline"], 1.0) * roofline,
                    "peak_gib": r["peak_rss_mib"] / 1024, "fits": r["peak_rss_mib"] / 1024 <= ram_gib})
    return out


def write(out: Path, rows: list[dict], meta: dict, args) -> Path:
    lines = ["# Raspberry Pi 5, PROJECTED decode speed (nothing here ran on a Pi)", "",
             f"Command: `{meta['command']}`", "",
             f"Derived from `large_shapes.json` (random weights; measured on: {meta['machine']}, {args.threads} "
             f"threads). MiB read/token: what a decode step reads as the engine holds the weights (llama.cpp: the "
             "file; ours: the packed linears at 1.5 bits per weight, a kept-column plane and the file's kept-order signs, as "
             "the AVX-512 and NEON kernels hold them: more than the file). Pi 5 roofline: "
             f"{args.bandwidth_gbs:g} GB/s (the rate public llama.cpp figures read a Pi 5's memory at) / MiB read per "
             "token, an upper bound for every engine. At measured fraction: the roofline x the fraction of its read "
             "roofline (read bandwidth / MiB read per token) the file reached on the measured machine, at most 1 (above 1 "
             "the measured machine's caches held part of the weights, which a Pi 5's would not); a kernel that "
             "is compute-bound there may do better or worse on a Pi, whose cores are slower too. Break-even: the "
             "fraction of the Pi's roofline our file must reach to match the llama.cpp file of the same shape at its "
             "roofline. Our NEON "
             f"kernels are checked under qemu only, never timed. Peak RSS is the measured machine's; a row over "
             f"{args.ram_gib:g} GiB would not run on an {args.ram_gib:g} GB board.", "",
             "| shape | engine | file | file GiB | MiB read/token | Pi 5 roofline tok/s | fraction measured | at measured "
             "fraction tok/s | break-even vs Q4_0 / Q2_K / TQ1_0 | peak RSS GiB | fits |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        peers = {p["type"]: p["roofline_tps"] for p in rows if p["shape"] == r["shape"] and p["engine"] != "pbs2p"}
        even = " / ".join(f"{peers[t] / r['roofline_tps']:.2f}" if t in peers else "-" for t in ("Q4_0", "Q2_K", "TQ1_0"))
        lines.append(f"| {r['shape']} | {r['engine']} | {r['type']} | {r['file_gib']:.2f} | {r['mib_per_token']:.0f} | "
                     f"{r['roofline_tps']:.1f} | {r['fraction']:.2f} | {r['projected_tps']:.1f} | "
                     f"{even if r['engine'] == 'pbs2p' else ''} | {r['peak_gib']:.2f} | {'yes' if r['fits'] else 'no'} |")
    lines += ["", "Quoted Pi 5 figures (measured by others, other models and builds; for scale only):", ""]
    lines += [f"- {name}: {tps} tok/s ({src})" for name, tps, src in QUOTED]
    path = out / "pi5_projection.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    jtmp = out / "pi5_projection.json.tmp"
    jtmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    jtmp.replace(out / "pi5_projection.json")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="holds large_shapes.json; gets the table")
    p.add_argument("--threads", type=int, default=2, help="the measured rows to project from")
    p.add_argument("--bandwidth-gbs", type=float, default=10.0, help="the rate a Pi 5's memory is read at")
    p.add_argument("--ram-gib", type=float, default=8.0, help="the board's memory")
    p.add_argument("--quick", action="store_true", help="the same (it only reads a results file)")
    args = p.parse_args(argv)
    src = args.out / "large_shapes.json"
    if not src.is_file():
        print(f"pi5_projection: {src} not found; run bench/large_shapes.py --out {args.out} first", file=sys.stderr)
        return 2
    data = json.loads(src.read_text())
    rows = project(data["rows"], args.threads, args.bandwidth_gbs, args.ram_gib)
    if not rows:
        print(f"pi5_projection: {src} has no rows at {args.threads} threads", file=sys.stderr)
        return 2
    command = " ".join(["python", "bench/pi5_projection.py", *(argv if argv is not None else sys.argv[1:])])
    machine = f"{data['meta'].get('cpu', 'unknown')}, {data['meta'].get('cpus', '?')} CPUs"
    meta = {"command": command, "machine": machine, "threads": args.threads, "bandwidth_gbs": args.bandwidth_gbs,
            "ram_gib": args.ram_gib}
    print(write(args.out, rows, meta, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
