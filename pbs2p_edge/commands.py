"""What each CLI sub-command does, as plain functions returning JSON-able dicts (no argument parsing here).

These functions orchestrate: model loading, text, compression, checkpoint, export. The math lives
in `pbs2p_edge.algo`, the formats in `pbs2p_edge.pack` and `pbs2p_exporters`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from .errors import ConfigError, DataError, ModelError, OutputError


def _tokenize(tokenizer, text: str):
    from .calib.tokens import encode

    if not text.strip():
        raise DataError("the text is empty")
    return encode(tokenizer, text)


def _check_output_dir(path: str) -> None:
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")


def compress(source: str, out_dir: str, cfg, *, calib: str, nsamples: int, seqlen: int,
             device: str = "cpu", progress: bool = True) -> dict:
    """Compress `source` with `cfg` on `nsamples` windows of `calib`; write a checkpoint to out_dir."""
    from .calib.text import load_text
    from .calib.windows import calibration_windows
    from .checkpoint import save_checkpoint
    from .model.load import load_model
    from .model.sequential import compress_model

    _check_output_dir(out_dir)
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise OutputError(f"{out_dir} exists and is not a directory")
    model, tokenizer = load_model(source, device="cpu")
    if tokenizer is None:
        raise ModelError(f"{source} has no tokenizer; calibration text cannot be tokenized")
    ids = _tokenize(tokenizer, load_text(calib, split="train"))
    windows = calibration_windows(ids, nsamples, seqlen, cfg.seed)
    run = compress_model(model, windows, cfg, device=device, progress=progress)
    stats = {
        "source": source, "calib": calib, "nsamples": nsamples, "seqlen": seqlen,
        "seconds": round(run.seconds, 2), "peak_memory_bytes": run.peak_memory_bytes,
        "importance": run.importance,
    }
    save_checkpoint(out_dir, model, tokenizer, run.results, cfg, run.layer_n, stats)
    return {"checkpoint": str(Path(out_dir).resolve()), "method": cfg.method, "nm": f"{cfg.n}:{cfg.m}",
            "layers": len(run.results), "seconds": stats["seconds"],
            "mean_n": _weighted_mean_n(run), "peak_memory_bytes": run.peak_memory_bytes}


def _weighted_mean_n(run) -> float:
    total = sum(r.mask.numel() for r in run.results.values())
    return sum(run.layer_n[k] * r.mask.numel() for k, r in run.results.items()) / max(total, 1)


def _load_for_eval(source: str, device: str):
    from .checkpoint import is_checkpoint, to_fake_quant_model
    from .model.load import load_model

    if is_checkpoint(source):
        model, tokenizer = to_fake_quant_model(source)
        return model.to(device), tokenizer
    return load_model(source, device=device)


def evaluate(source: str, data: str, seqlen: int, max_windows: int | None, device: str = "cpu") -> dict:
    """Perplexity of a model source or compressed checkpoint on non-overlapping windows of `data`."""
    from .calib.text import load_text
    from .eval.perplexity import perplexity

    model, tokenizer = _load_for_eval(source, device)
    ids = _tokenize(tokenizer, load_text(data, split="test"))
    t0 = time.perf_counter()
    res = perplexity(model, ids, seqlen, max_windows=max_windows, device=device)
    return {"ppl": res.ppl, "windows": res.windows, "tokens": res.tokens, "seqlen": seqlen,
            "data": data, "model": source, "seconds": round(time.perf_counter() - t0, 2)}


EXPORT_FORMATS = (".gguf",)


def export(source: str, out: str, cfg, *, calib: str, nsamples: int, seqlen: int, device: str = "cpu",
           progress: bool = True, embed_type: str = "f16") -> dict:
    """Write `out` (.gguf) from a checkpoint, compressing `source` first when it is not one."""
    from pbs2p_exporters.gguf_export import export_gguf

    from .checkpoint import is_checkpoint

    suffix = Path(out).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise OutputError(f"unknown output extension {suffix or '(none)'!r} for {out}; use one of {', '.join(EXPORT_FORMATS)}")
    _check_output_dir(out)
    t0 = time.perf_counter()
    summary: dict = {"out": str(Path(out).resolve())}
    if is_checkpoint(source):
        export_gguf(source, out, embed_type=embed_type)
    else:
        with tempfile.TemporaryDirectory(prefix=".pbs2p-ckpt-", dir=Path(out).resolve().parent) as tmp:
            ckpt = os.path.join(tmp, "checkpoint")
            summary["compress"] = compress(source, ckpt, cfg, calib=calib, nsamples=nsamples, seqlen=seqlen,
                                           device=device, progress=progress)
            summary["compress"].pop("checkpoint")
            export_gguf(ckpt, out, embed_type=embed_type)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["bytes"] = os.path.getsize(out)
    info = inspect(out)
    summary["bits_per_weight"] = info["bits_per_weight"]
    return summary


def inspect(path: str) -> dict:
    from pbs2p_exporters.inspect import inspect_file

    if not os.path.exists(path):
        raise ModelError(f"{path} does not exist")
    return inspect_file(path)


def format_inspect(info: dict) -> str:
    """Human-readable table of `inspect` output."""
    lines = [f"{k}: {v}" for k, v in info.items() if k != "layers" and not isinstance(v, (dict, list))]
    lines.append(f"{'layer':48} {'N:M':>5} {'rows':>6} {'cols':>6} {'bits/w':>7}")
    for layer in info.get("layers", []):
        lines.append(f"{layer['name']:48} {layer['n']}:{layer['m']:<3} {layer['rows']:>6} {layer['cols']:>6} "
                     f"{layer['bits_per_weight']:>7.3f}")
    return "\n".join(lines)


__all__ = ["compress", "evaluate", "export", "inspect", "format_inspect", "ConfigError"]
