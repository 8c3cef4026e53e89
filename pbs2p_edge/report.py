"""Redraw the benchmark plots and the headline summary from a results folder (`pbs2p-edge report RESULTS_DIR`).

Reads whatever of these the folder holds (each written by a script of bench/) and skips the rest:
  1. e2e.json             {"meta": {...}, "rows": [{engine, name, bits_per_weight, file_bytes, prompt_tps,
                           decode_tps, peak_rss_mib, model_rss_mib}]}            (bench/e2e.py)
  2. quality_vs_size.json {"meta": {...}, "rows": [{engine, name, bits_per_weight, ppl, windows, file_bytes}]}
     (bench/pareto.py)
  3. compress_cost.json   {"meta": {...}, "rows": [{shape, method, seconds_per_block, full_model_seconds,
                           peak_rss_mib}]}                                        (bench/compress_cost.py)
  4. kernels.json         {"meta": {bandwidth_gbs: {copy: {threads: GB/s}}, l3_bytes, ...}, "records": [{shape,
                           linear, bytes, runs: [{kernel, threads, tokens, seconds}]}]}  (bench/kernel_speed.py)
Writes e2e.png, pareto.png, compress_cost.png, kernels.png and summary.md (the headline ratios) next to
them, each atomically. matplotlib (the `bench` extra) is imported only here, with the Agg backend.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from pathlib import Path

from .errors import ConfigError, DataError

DECODE_TARGET = 1.5     # our decode tok/s / llama.cpp's fastest type's
BANDWIDTH_TARGET = 0.8  # a decode pass's GB/s over linears read from memory / the measured copy bandwidth (issue 15)
LLAMA_1BIT_REFERENCE = {"IQ1_S": 1.56, "TQ1_0": 1.69}  # llama.cpp's nominal bits/weight of its smallest types


def _load(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def kernel_rows(doc: dict) -> list[dict]:
    """Decode rows of bench/kernel_speed.py's kernels.json, {label, linear, gbs, fraction (of the copy bandwidth at
    the run's threads), of_stream (of the read stream; None if not measured), from_memory}: per record and thread
    count the fastest variant's one-token pass. Only the records whose pass outgrows the L3 (weights read from
    memory) when there are any: only they measure bandwidth."""
    meta, records = doc["meta"], doc["records"]
    l3, stream = meta.get("l3_bytes") or 0, meta["bandwidth_gbs"].get("stream")
    big = [r for r in records if r["bytes"] > l3] or records
    rows = []
    for rec in big:
        for t in sorted({r["threads"] for r in rec["runs"]}):
            decode = [r for r in rec["runs"] if r["threads"] == t and r["tokens"] == 1]
            if not decode:
                continue
            best = min(decode, key=lambda r: r["seconds"])
            gbs = best["bytes"] / best["seconds"] / 1e9  # the variant's own layout (kept signs or planes)
            rows.append({"label": f"{rec['shape']} {rec['linear']} {t}t {best['kernel']}", "linear": rec["linear"],
                         "gbs": gbs, "fraction": gbs / meta["bandwidth_gbs"]["copy"][str(t)],
                         "of_stream": gbs / stream[str(t)] if stream else None, "from_memory": rec["bytes"] > l3})
    return rows


def _savefig(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def _plot_e2e(plt, e2e: dict, out: Path) -> Path:
    rows = [r for r in e2e["rows"] if "error" not in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.5))
    labels = [f"{r['engine']}: {r['name']}" for r in rows]
    colors = ["tab:orange" if r["engine"].startswith("pbs2p") else "tab:blue" for r in rows]
    for ax, key, title in ((axes[0], "decode_tps", "decode tokens/s"), (axes[1], "prompt_tps", "prompt tokens/s")):
        ax.barh(labels, [r[key] for r in rows], color=colors)
        ax.set_xlabel(title)
        ax.invert_yaxis()
    axes[1].set_yticklabels([])
    m = e2e.get("meta", {})
    fig.suptitle(f"{m.get('model_name', 'SmolLM2-135M')}, {m.get('threads', '?')} threads, "
                 f"{m.get('prompt_tokens', '?')}-token prompt, "
                 f"{m.get('decode_tokens', '?')} decode steps (orange: ours, blue: llama.cpp)")
    path = _savefig(fig, out / "e2e.png")
    plt.close(fig)
    return path


def _plot_pareto(plt, q: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 6))
    for engine, marker, color in (("llama.cpp", "s", "tab:blue"), ("ours (torch eval)", "o", "tab:orange"),
                                  ("ours (libpbs2p)", "^", "tab:red")):
        pts = [r for r in q["rows"] if r["engine"] == engine and r["ppl"] > 0 and math.isfinite(r["ppl"])
               and r.get("file_bytes")]  # a point needs its file: torch rows and unkept exports are table-only
        if not pts:
            continue
        ax.scatter([p["file_bytes"] / 1e6 for p in pts], [p["ppl"] for p in pts], marker=marker, color=color,
                   label=engine)
        for p in pts:
            ax.annotate(p["name"].replace("llama.cpp ", "").replace(" (libpbs2p)", ""),
                        (p["file_bytes"] / 1e6, p["ppl"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("file size (MB, as ls gives it)")
    ax.set_ylabel("perplexity (lower is better)")
    m = q.get("meta", {})
    ax.set_title(f"Quality vs size: {m.get('model_name', 'SmolLM2-135M')}, {m.get('windows', '?')} x "
                 f"{m.get('seqlen', '?')} tokens of {m.get('data', '?')}")
    ax.legend()
    path = _savefig(fig, out / "pareto.png")
    plt.close(fig)
    return path


def _plot_cost(plt, c: dict, out: Path) -> Path:
    rows = c["rows"]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(shapes), 1)
    for i, shape in enumerate(shapes):
        by = {r["method"]: r for r in rows if r["shape"] == shape}
        xs = [j + i * width for j in range(len(methods))]
        axes[0].bar(xs, [by[m]["full_model_seconds"] if m in by else 0 for m in methods], width, label=shape)
        axes[1].bar(xs, [by[m]["peak_rss_mib"] if m in by else 0 for m in methods], width, label=shape)
    for ax, ylabel in ((axes[0], "full-depth seconds (estimated from blocks run)"), (axes[1], "peak RSS MiB")):
        ax.set_xticks([j + width * (len(shapes) - 1) / 2 for j in range(len(methods))])
        ax.set_xticklabels(methods, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("Compression cost per method and model shape")
    path = _savefig(fig, out / "compress_cost.png")
    plt.close(fig)
    return path


def _plot_kernels(plt, rows: list[dict], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar([r["label"] for r in rows], [r["fraction"] for r in rows], color="tab:orange",
           label="decode pass, fastest variant")
    ax.axhline(1.0, color="black", linestyle="--", label="copy bandwidth at the same threads")
    ax.axhline(BANDWIDTH_TARGET, color="gray", linestyle=":", label=f"{BANDWIDTH_TARGET:.0%} of copy")
    ax.set_ylabel("fraction of the copy bandwidth")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["label"] for r in rows], rotation=45, ha="right", fontsize=7)
    ax.legend()
    ax.set_title("Linears as a model multiplies them: GB/s read / measured copy bandwidth")
    path = _savefig(fig, out / "kernels.png")
    plt.close(fig)
    return path


def headlines(e2e: dict | None, q: dict | None, krows: list[dict]) -> list[str]:
    """The issue's headline ratios as Markdown bullet lines, each saying what it is computed from."""
    lines = []
    if e2e:
        done = [r for r in e2e["rows"] if "error" not in r]  # engines that failed carry only an error
        ours = [r for r in done if r["engine"].startswith("pbs2p")]
        peers = [r for r in done if r["engine"] == "llama.cpp"]
        if ours and peers:
            best_o = max(ours, key=lambda r: r["decode_tps"])
            best_p = max(peers, key=lambda r: r["decode_tps"])
            ratio = best_o["decode_tps"] / best_p["decode_tps"]
            lines.append(f"- Decode: ours {best_o['decode_tps']:.1f} tok/s ({best_o['engine']}, {best_o['name']}) / "
                         f"llama.cpp's fastest {best_p['decode_tps']:.1f} tok/s ({best_p['name']}) = **{ratio:.2f}x** "
                         f"(target >= {DECODE_TARGET}: {'met' if ratio >= DECODE_TARGET else 'not met'}).")
    if krows:
        worst = min(krows, key=lambda r: r["fraction"])
        med = statistics.median(r["fraction"] for r in krows)
        where = ("read from memory" if all(r["from_memory"] for r in krows)
                 else "held in the caches (no pass outgrew the L3)")
        lines.append(f"- Kernel bandwidth (decode passes over linears {where}, fastest variant): median "
                     f"**{med:.2f}** of the copy bandwidth over {len(krows)} rows, lowest {worst['fraction']:.2f} "
                     f"({worst['label']}) (target >= {BANDWIDTH_TARGET} for every row: "
                     f"{'met' if worst['fraction'] >= BANDWIDTH_TARGET else 'not met'})"
                     + (f"; median {statistics.median(r['of_stream'] for r in krows):.2f} of the read stream."
                        if all(r["of_stream"] for r in krows) else "."))
    if q:
        ours = [r for r in q["rows"] if r["engine"].startswith("ours") and "4:8" in r["name"]
                and ("compact" in r["name"] or "4of8" in r["name"])]
        for r in sorted(ours, key=lambda r: r["bits_per_weight"]):
            refs = ", ".join(f"{k} {v}" for k, v in LLAMA_1BIT_REFERENCE.items())
            lines.append(f"- {r['name']} ({r['engine']}): **{r['bits_per_weight']:.3f} bits/weight** vs llama.cpp's "
                         f"nominal {refs}; PPL {r['ppl']:.2f}.")
        peers = [r for r in q["rows"] if r["engine"] == "llama.cpp"]
        compact = [r for r in ours if "compact" in r["name"]]
        ref = min(compact or ours, key=lambda r: r["bits_per_weight"]) if ours else None
        if ref and peers:
            cells = "; ".join(f"{p['name'].replace('llama.cpp ', '')} {p['ppl']:.4g} at {p['bits_per_weight']:.2f} bits "
                              f"(ratio {ref['ppl'] / p['ppl']:.3g})" for p in sorted(peers, key=lambda p: p["bits_per_weight"]))
            lines.append(f"- PPL of {ref['name']} ({ref['ppl']:.4g}) vs each llama.cpp type (ours / theirs): {cells}.")
        lines += [f"- Frontier {line[2:]}" for line in dominance(q["rows"])]
    return lines


def dominance(points: list[dict]) -> list[str]:
    """For each llama.cpp type: our best (lowest perplexity) file no larger than its file, and whether it wins."""
    ours = [p for p in points if p["engine"] == "ours (libpbs2p)" and p.get("file_bytes")]
    lines = []
    for q in sorted((p for p in points if p["engine"] == "llama.cpp" and p.get("file_bytes")),
                    key=lambda p: p["file_bytes"]):
        fits = [p for p in ours if p["file_bytes"] <= q["file_bytes"]]
        best = min(fits, key=lambda p: p["ppl"], default=None)
        if best is None:
            lines.append(f"- {q['name']} ({q['file_bytes'] / 1e6:.1f} MB, PPL {q['ppl']:.2f}): no file of ours this small")
            continue
        verdict = "dominated" if best["ppl"] < q["ppl"] else "NOT dominated"
        lines.append(f"- {q['name']} ({q['file_bytes'] / 1e6:.1f} MB, PPL {q['ppl']:.2f}): {verdict} by "
                     f"{best['name']} ({best['file_bytes'] / 1e6:.1f} MB, PPL {best['ppl']:.2f})")
    return lines


def binary_tier(points: list[dict], other: list[dict] = (), refused: dict[str, str] | None = None) -> list[str]:
    """Table lines: for each recipe of our files (`ours budget-B[-no-pbs2p][-recoverS] (libpbs2p)`, the default export
    as budget-DEFAULT_BPW), the lowest-perplexity file with PBS2P layers against the lowest without, the same budget
    and recovery (a file's name less `-no-pbs2p`), with each file's perplexity on the other text (`other`: rows of
    the same names). refused: export name (`budget-B-no-pbs2p[-recoverS]`) -> why no file could be made; a recipe
    with binary files whose file without the tier was refused gets a line too (only the binary tier reaches that
    size). Files whose tiers are not recorded are left out; [] when no recipe has both."""
    from .cli import DEFAULT_BPW
    from .pack.tiers import BINARY

    def short(name: str) -> str:
        return name.removeprefix("ours ").removesuffix(" (libpbs2p)")

    def recipe(name: str) -> str | None:
        s = short(name)
        if s == "default":
            return f"budget-{DEFAULT_BPW:g}"
        return s.replace("-no-pbs2p", "") if s.startswith("budget-") else None

    other_ppl = {p["name"]: p["ppl"] for p in other}
    groups: dict[str, list[dict]] = {}
    for p in points:
        r = recipe(p["name"])
        if r is not None and p.get("tiers") is not None and p.get("file_bytes"):
            groups.setdefault(r, []).append(p)

    def cell(p: dict) -> str:
        o = other_ppl.get(p["name"])
        return f"{short(p['name'])} | {p['file_bytes'] / 1e6:.1f} | {p['ppl']:.2f} | {'-' if o is None else f'{o:.2f}'}"

    def order(r: str) -> tuple[float, str]:
        return float(re.match(r"budget-(\d+(?:\.\d+)?)", r).group(1)), r

    lines = []
    for r in sorted(groups, key=order):
        binary = [p for p in groups[r] if p["tiers"].get(BINARY, 0) > 0]
        plain = [p for p in groups[r] if p["tiers"].get(BINARY, 0) == 0]
        without = r.replace("-recover", "-no-pbs2p-recover") if "-recover" in r else f"{r}-no-pbs2p"
        if binary and plain:
            a, b = (min(g, key=lambda p: p["ppl"]) for g in (binary, plain))
            lines.append(f"| {r} | {cell(a)} | {cell(b)} | {'binary' if a['ppl'] < b['ppl'] else 'no binary'} |")
        elif binary and without in (refused or {}):
            a = min(binary, key=lambda p: p["ppl"])
            lines.append(f"| {r} | {cell(a)} | {without}: refused ({refused[without]}) | - | - | - | binary only |")
    if not lines:
        return []
    return ["| recipe | with PBS2P layers | MB | PPL | PPL (other) | without | MB | PPL | PPL (other) | better |",
            "|---|---|---:|---:|---:|---|---:|---:|---:|---|", *lines]


def report(results_dir) -> list[Path]:
    """Redraw every plot the results in `results_dir` allow and write summary.md; returns the written paths."""
    out = Path(results_dir)
    if not out.is_dir():
        raise ConfigError(f"{out}: no such results directory")
    e2e = _load(out / "e2e.json")
    q = _load(out / "quality_vs_size.json")
    cost = _load(out / "compress_cost.json")
    kernels = _load(out / "kernels.json")
    krows = kernel_rows(kernels) if kernels else []
    if not any((e2e, q, cost, krows)):
        raise DataError(f"{out}: none of e2e.json, quality_vs_size.json, compress_cost.json, kernels.json is there")
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'pbs2p-edge[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if e2e and e2e.get("rows"):
        written.append(_plot_e2e(plt, e2e, out))
    if q and q.get("rows"):
        written.append(_plot_pareto(plt, q, out))
    if cost and cost.get("rows"):
        written.append(_plot_cost(plt, cost, out))
    if krows:
        written.append(_plot_kernels(plt, krows, out))
    text = ["# Benchmark summary", "", "Headline ratios, recomputed from the result files in this folder "
            "by `pbs2p-edge report`.", ""] + (headlines(e2e, q, krows) or ["- (no headline inputs yet)"])
    text += ["", "Figures: " + ", ".join(f"[{p.name}]({p.name})" for p in written)]
    summary = out / "summary.md"
    tmp = summary.with_name(f".summary.md.tmp{os.getpid()}")
    tmp.write_text("\n".join(text) + "\n")
    os.replace(tmp, summary)
    return written + [summary]
