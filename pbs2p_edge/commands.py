"""What each CLI sub-command does, as plain functions returning JSON-able dicts (no argument parsing here).

These functions orchestrate: model loading, text, compression, checkpoint, export. The math lives
in `pbs2p_edge.algo`, the formats in `pbs2p_edge.pack` and `pbs2p_exporters`. Every check that a
user's input can fail is done before the expensive work (model load, calibration), in the order
cheapest first, and raises one typed Pbs2pError; outputs are written atomically.
"""

from __future__ import annotations

import collections
import importlib.metadata
import math
import os
import platform
import tempfile
import time
from pathlib import Path

from .errors import ConfigError, DataError, FormatError, ModelError, NativeError, OutputError, Pbs2pError
from .files.path_problem import path_problem


def _tokenize(tokenizer, text: str):
    from .calib.tokens import encode

    if not text.strip():
        raise DataError("the text is empty")
    return encode(tokenizer, text)


# the calibration activations' dtypes compress / export --dtype offers (torch's names); the first is the default
ACTIVATION_DTYPES = ("float32", "bfloat16", "float16")


def check_device(device: str) -> None:
    """ConfigError unless `device` is 'cpu' or a CUDA device this torch build can use."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda or cuda:<index>") from None
    if dev.type == "cpu":
        return
    if dev.type != "cuda":
        raise ConfigError(f"device {device!r} is not supported; use cpu, cuda or cuda:<index>")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available to this torch ({torch.__version__})")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def _check_output_dir(path: str) -> None:
    """OutputError unless the directory that will hold `path` exists, is a directory and is writable."""
    parent = Path(path).resolve().parent
    if not parent.exists():
        raise OutputError(f"output directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {parent} is not writable")


def _check_checkpoint_target(out_dir: str) -> None:
    """OutputError when out_dir exists and save_checkpoint would refuse to replace it (checked before
    compressing, so a long run does not fail at its very end)."""
    from .pack.checkpoint_dir import is_checkpoint

    _check_output_dir(out_dir)
    out = Path(out_dir)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{out_dir} exists and is not a directory")
    if not (is_checkpoint(out) or not any(out.iterdir())):
        raise OutputError(f"{out_dir}: exists and is not a checkpoint of ours; refusing to replace it")


def _check_widths(model, m: int) -> None:
    """ConfigError naming the first linear whose input width is not a multiple of M (N:M groups run
    along the input dimension), before any calibration work."""
    from .model.arch import arch_for, block_linears, decoder_blocks

    spec = arch_for(model)
    for i, block in enumerate(decoder_blocks(model, spec)):
        for name, lin in block_linears(block, spec).items():
            if lin.in_features % m:
                raise ConfigError(f"M={m} does not divide the input width {lin.in_features} of "
                                  f"{spec.blocks}.{i}.{name}; choose an M that divides it")


def _check_gguf_tokenizer(tokenizer, source: str) -> None:
    """FormatError, before compressing, when the GGUF export at the end would refuse the tokenizer: the checkpoint's
    tokenizer.json is this tokenizer's own serialization (save_pretrained), read by gguf_tokenizer."""
    import json

    from pbs2p_exporters.gguf_tokenizer import tokenizer_layout

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise FormatError(f"{source}: no fast tokenizer (tokenizer.json); GGUF export needs one")
    tokenizer_layout(json.loads(backend.to_str()), f"{source} tokenizer")


def check_source(source: str, output: str | None = None) -> None:
    """Cheapest first: a local model directory's config.json against the architecture table (for the `output`
    format too: ".gguf" / ".onnx"), before torch or transformers is even imported. load_model checks every source
    again, from the config transformers completes with its defaults, before reading a weight."""
    import json

    from .errors import one_line
    from .pack.architectures import check_config
    from .model.sources import resolve_source
    from .pack.checkpoint_dir import is_checkpoint

    if is_checkpoint(source):
        return
    src = resolve_source(source)
    if src.kind != "hf_dir":
        return
    try:
        config = json.loads(Path(src.location, "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{source}: unreadable config.json: {one_line(exc)}") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{source}: config.json does not hold a JSON object")
    check_config(config, output if output in EXPORT_FORMATS else None)


def require_extras(command: str, source: str | None = None, out: str | None = None) -> bool:
    """MissingExtra (one line) when `command` on `source` (its output `out`) needs an extra that is not installed,
    before anything else is read; returns whether it needs PyTorch (the [compress] extra). Running, inspecting and
    evaluating our GGUF files needs only the core."""
    from .extras import require
    from .pack.checkpoint_dir import is_checkpoint

    gguf_source = source is not None and Path(source).suffix.lower() == ".gguf" and Path(source).is_file()
    checkpoint = source is not None and is_checkpoint(source)
    needs = []
    if command == "compress" or (command == "eval" and not gguf_source):
        needs.append("compress")
    elif command == "export":
        needs.append("compress")  # reading a checkpoint (safetensors) and, for an original model, compressing it
        if Path(out).suffix.lower() == ".onnx":
            needs.append("onnx")
    elif command == "inspect":
        if checkpoint:
            needs.append("compress")
        elif Path(source).suffix.lower() == ".onnx":
            needs.append("onnx")
    for extra in needs:
        require(extra, f"pbs2p-edge {command}" + (f" of {source}" if source else ""))
    return "compress" in needs


def _gguf_keys(path) -> list[str]:
    """The metadata keys of a GGUF file as libpbs2p's reader finds them, FormatError (one line) for a file it refuses.
    Every GGUF a user names is opened by it before gguf-py reads it: its counts and lengths are checked against the
    file's size first (gguf-py would walk a forged array of 2^40 elements until memory runs out)."""
    from .runtime.gguf_file import GGUFFile

    try:
        with GGUFFile(path) as f:
            return f.keys()
    except NativeError as e:
        raise FormatError(f"{path}: not a readable GGUF file ({e})") from None


def _is_pbs2p_gguf(source: str) -> bool:
    """True when `source` names a GGUF file written by pbs2p-edge (it holds pbs2p.format_version); FormatError
    (one line) for a .gguf file that is not a readable GGUF, which no other loader would read either."""
    path = Path(source).expanduser()
    if not (path.is_file() and path.suffix.lower() == ".gguf"):
        return False
    return "pbs2p.format_version" in _gguf_keys(path)


def _load_original(source: str, what: str, output: str | None = None, stream: bool = False, budget: bool = False):
    """(model, tokenizer, weights) of an uncompressed model source; a clear ModelError for one of our own outputs, or
    for an architecture the `output` format (".gguf" / ".onnx") cannot carry. weights: with `stream`, a directory of
    safetensors shards or a GGUF opens on the meta device with its StreamedWeights (model/stream.py); None for a model
    loaded whole (any other source, stream False, or with `budget` one whose bit budget cannot be planned streamed,
    model/budget_stream.py: then _check_budget_memory first)."""
    from .pack.checkpoint_dir import is_checkpoint
    from .model.load import load_model, open_model_streamed

    if is_checkpoint(source):
        raise ModelError(f"{source} is a compressed checkpoint; {what} needs the original model")
    # A GGUF path the user named (not the alias) is checked before transformers tries to dequantize it:
    # reading its metadata takes about a second, far less than the failing load would.
    if _is_pbs2p_gguf(source):
        raise ModelError(f"{source} is a pbs2p GGUF (run it with libpbs2p); {what} needs the original "
                         "model or a checkpoint directory")
    opened = open_model_streamed(source, output) if stream else None
    if opened is not None and budget:
        from .model.budget_stream import streams

        opened = opened if streams(opened[0]) else None
    if opened is None and budget:
        _check_budget_memory(source)
    return opened if opened is not None else (*load_model(source, device="cpu", output=output), None)


# [choice] a bit budget's plan on a model in memory (model/budget.py) holds the whole model at float32, a gradient and a
# Fisher accumulator of every weight it plans: three times the float32 weights, before activations
_BUDGET_COPIES = 3


def _available_memory() -> int | None:
    """Bytes this machine can still give a process (MemAvailable + SwapFree of /proc/meminfo); None off Linux."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return sum(int(fields[k].split()[0]) * 1024 for k in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError):
        return None


def _check_budget_memory(source: str) -> None:
    """ConfigError, before any weight is read, when a bit budget's plan on a model that does not stream (_load_original)
    cannot fit in this machine's memory (a directory of safetensors shards, whose size the headers give; other sources
    are not checked)."""
    from .model.sources import resolve_source
    from .model.stream import stored_parameters

    src = resolve_source(source)
    available = _available_memory()
    if src.kind != "hf_dir" or available is None:
        return
    need = _BUDGET_COPIES * 4 * stored_parameters(Path(src.location))
    if need > available:
        raise ConfigError(f"a bit budget plans this model (it cannot be read block by block) in memory: about "
                          f"{need / 1e9:.0f} GB for this "
                          f"model, and {available / 1e9:.0f} GB are available; compress it with --method pbs2p (or "
                          "another method), which reads one block at a time, or on a machine with more memory")


def compress(source: str, out_dir: str, cfg, *, calib: str, nsamples: int, seqlen: int,
             device: str = "cpu", progress: bool = True, bpw: float | None = None,
             size_bytes: int | None = None, tiers: tuple[str, ...] | None = None, recover: int | None = None,
             output: str | None = None, blocks: int | None = None, adapt_threads: bool = False,
             resume: bool = False, progress_path: str | None = None, dtype: str = ACTIVATION_DTYPES[0]) -> dict:
    """Compress `source` with `cfg` on `nsamples` windows of `calib`; write a checkpoint to out_dir.

    With a budget (bpw: file bits per model parameter, or size_bytes: the file's size), model.budget plans a tier
    per linear and for the embedding / head on the same windows, and the linears are quantized by GPTQ onto them.
    tiers: the linears' candidate tiers (None: model.budget.LINEAR_TIERS). recover: block-wise recovery steps per
    block on the budget path (None: algo.config.default_recover_steps of the budget); without a budget, cfg's.
    output: the format (".gguf" / ".onnx") the checkpoint is for, whose architecture checks run before loading.
    blocks: compress only the first `blocks` decoder blocks (cost measurements, quick looks: the checkpoint
    evaluates, but does not export); None: all. adapt_threads: torch's threads follow the cores other processes
    leave free, re-measured before the plan and each block (free_cores.py; the CLI's --threads auto), else they stay.
    Every finished block is saved in progress_path (default: model.progress.progress_dir(out_dir)), removed once
    the checkpoint is written; resume: go on from the blocks a killed run of the same options left there.
    dtype: the calibration activations' dtype between blocks, one of ACTIVATION_DTYPES (model.sequential's
    act_dtype: bfloat16 / float16 halve their memory; the block math stays float32)."""
    check_source(source, output)
    import torch

    from .calib.text import load_text
    from .calib.windows import calibration_windows
    from .checkpoint import save_checkpoint
    from .checkpoint.save import dense_of_streamed, stored_result
    from .free_cores import ThreadGovernor
    from .model.arch import check_seqlen, decoder_blocks
    from .model.progress import Progress, progress_dir
    from .model.sequential import compress_model

    if nsamples < 1:
        raise ConfigError(f"nsamples must be >= 1, got {nsamples}")
    if dtype not in ACTIVATION_DTYPES:
        raise ConfigError(f"unknown activation dtype {dtype!r}; use one of {', '.join(ACTIVATION_DTYPES)}")
    check_device(device)
    _check_checkpoint_target(out_dir)
    text = load_text(calib, split="train")  # before the model: unknown corpus / empty / not UTF-8 fail fast
    governor = ThreadGovernor() if adapt_threads else None  # its first measure spans the model's loading
    budgeted = bpw is not None or size_bytes is not None
    # a model stored as safetensors shards or a GGUF streams, one block in memory at a time: the compression, and a
    # budget's plan, whose gradients are then taken block by block (model/budget_stream.py)
    model, tokenizer, weights = _load_original(source, "compress", output, stream=True, budget=budgeted)
    if tokenizer is None:
        raise ModelError(f"{source} has no tokenizer; calibration text cannot be tokenized")
    if output == ".gguf":
        _check_gguf_tokenizer(tokenizer, source)
    _check_widths(model, cfg.m)
    check_seqlen(model, seqlen)
    n_blocks = len(decoder_blocks(model))
    if blocks is not None and not 1 <= blocks <= n_blocks:
        raise ConfigError(f"--blocks {blocks}: this model has {n_blocks} decoder blocks")
    if budgeted:
        import dataclasses

        from .algo.config import default_recover_steps
        from .model.budget import BINARY_CONFIG, LINEAR_TIERS, Plan, check_budget, model_parameters, plan_budget

        if size_bytes is not None:
            bpw = 8 * size_bytes / model_parameters(model)
        # the binary tier's structure; the seed and the recovery are the user's (by default, the budget's)
        cfg = dataclasses.replace(BINARY_CONFIG, seed=cfg.seed,
                                  recover_steps=default_recover_steps(bpw) if recover is None else recover,
                                  recover_lr=cfg.recover_lr, recover_batch=cfg.recover_batch,
                                  recover_codes=cfg.recover_codes, recover_code_lr=cfg.recover_code_lr)
        linear_tiers = tuple(tiers) if tiers else LINEAR_TIERS
        check_budget(model, tokenizer, bpw, linear_tiers)
    windows = calibration_windows(_tokenize(tokenizer, text), nsamples, seqlen, cfg.seed)
    run_key = {"source": os.path.abspath(source) if os.path.exists(source) else source, "calib": calib,
               "nsamples": nsamples, "seqlen": seqlen, "config": cfg.to_dict(), "blocks": blocks, "device": device,
               "bpw": bpw, "tiers": list(linear_tiers) if budgeted else None, "progress_format": 2,
               **({"dtype": dtype} if dtype != ACTIVATION_DTYPES[0] else {})}  # the default: runs before --dtype
    store = Progress.open(Path(progress_path) if progress_path else progress_dir(out_dir), run_key, resume)
    resumed = store.finished()
    try:
        plan = None
        if budgeted:
            t0 = time.perf_counter()
            kept = store.plan()
            if kept is not None:
                plan = Plan(**kept)
            else:
                if governor is not None:
                    governor.adjust()
                plan = plan_budget(model, tokenizer, windows, bpw, linear_tiers, weights=weights, scratch=store.path,
                                   progress=progress)
                store.save_plan(dataclasses.asdict(plan))
            plan_seconds = time.perf_counter() - t0
        run = compress_model(model, windows, cfg, device=device, progress=progress, num_blocks=blocks,
                             plan=None if plan is None else plan.linears, governor=governor, progress_store=store,
                             weights=weights, compact=stored_result, act_dtype=getattr(torch, dtype))
    finally:
        if governor is not None:
            governor.close()
    stats = {
        "source": source, "calib": calib, "nsamples": nsamples, "seqlen": seqlen, "activation_dtype": dtype,
        "seconds": round(run.seconds, 2), "peak_memory_bytes": run.peak_memory_bytes,
        "importance": run.importance, "recovery": run.recovery,
    }
    if plan is not None:
        stats["plan"] = {**plan.to_dict(), "seconds": round(plan_seconds, 2)}
    save_checkpoint(out_dir, model, tokenizer, run.results, cfg, run.layer_n, stats,
                    embed_tier=None if plan is None else plan.embed, head_hessian=run.head_hessian,
                    dense=None if weights is None else dense_of_streamed(model, weights, run.block_params,
                                                                          {f"{n}.weight" for n in run.results}))
    store.remove()
    summary = {"checkpoint": str(Path(out_dir).resolve()), "layers": len(run.results), "seconds": stats["seconds"],
               "peak_memory_bytes": run.peak_memory_bytes,
               "blocks": {"compressed": blocks or n_blocks, "total": n_blocks}, "resumed_blocks": resumed,
               "block_seconds": run.block_seconds, "streamed": weights is not None}
    if run.recovery:
        summary["recovered_blocks"] = sum(r["kept"] for r in run.recovery)
    if plan is None:
        return {**summary, "method": cfg.method, "nm": f"{cfg.n}:{cfg.m}", "mean_n": _weighted_mean_n(run)}
    counts = collections.Counter(run.tiers.values())
    return {**summary, "bpw_budget": round(plan.bpw, 4), "estimated_bytes": plan.estimated_bytes,
            "tiers": dict(sorted(counts.items())), "embed_tier": plan.embed,
            "plan_seconds": stats["plan"]["seconds"]}


def _weighted_mean_n(run) -> float:
    binary = {k: r.shape[0] * r.shape[1] for k, r in run.results.items() if run.tiers[k] == "pbs2p"}
    return sum(run.layer_n[k] * w for k, w in binary.items()) / max(sum(binary.values()), 1)


def _load_for_eval(source: str, device: str):
    from .checkpoint import is_checkpoint, to_fake_quant_model

    if is_checkpoint(source):
        model, tokenizer = to_fake_quant_model(source)
    else:
        model, tokenizer, _ = _load_original(source, "eval")
    if tokenizer is None:
        raise ModelError(f"{source} has no tokenizer; the evaluation text cannot be tokenized")
    return model.to(device), tokenizer


def default_threads() -> int:
    """Threads libpbs2p uses when none are asked for: the CPUs this process may run on (results do not depend
    on the count)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    from .runtime.model import MAX_THREADS

    return max(1, min(n, MAX_THREADS))


def _evaluate_gguf(source: str, data: str, seqlen: int, max_windows: int | None, device: str,
                   threads: int | None) -> dict:
    """Perplexity of one of our GGUF files with libpbs2p: the file's own tokenizer over the whole text in one
    call (BOS / EOS iff its add_bos / add_eos rules, as calib.tokens.encode gets from a Hugging Face tokenizer),
    n_ctx = seqlen."""
    from .calib.text import load_text
    from .runtime.model import Model

    if device != "cpu":
        raise ConfigError(f"{source} is a pbs2p GGUF, run by libpbs2p on the CPU; --device {device} does not apply")
    text = load_text(data, split="test")
    if not text.strip():
        raise DataError("the text is empty")
    with Model(source, n_threads=threads or default_threads(), n_ctx=seqlen) as model:
        ids = model.tokenize(text, add_bos=None, add_eos=None)
        if not ids:
            raise DataError("the text tokenizes to no tokens")
        t0 = time.perf_counter()
        res = model.perplexity(ids, seqlen, max_windows)
        seconds = time.perf_counter() - t0
    return {"ppl": res.ppl, "windows": res.windows, "tokens": res.tokens, "seqlen": seqlen, "data": data,
            "model": source, "seconds": round(seconds, 2), "runtime": "libpbs2p"}


def evaluate(source: str, data: str, seqlen: int, max_windows: int | None, device: str = "cpu",
             threads: int | None = None) -> dict:
    """Perplexity of a model source, compressed checkpoint (PyTorch) or pbs2p GGUF file (libpbs2p, `threads`
    threads) on non-overlapping windows of `data`."""
    check_source(source)
    from .calib.text import load_text

    if seqlen < 2:
        raise ConfigError(f"evaluation seqlen must be >= 2 (a window predicts seqlen-1 tokens), got {seqlen}")
    if _is_pbs2p_gguf(source):
        return _evaluate_gguf(source, data, seqlen, max_windows, device, threads)
    check_device(device)
    from .model.perplexity import perplexity

    text = load_text(data, split="test")
    model, tokenizer = _load_for_eval(source, device)
    ids = _tokenize(tokenizer, text)
    t0 = time.perf_counter()
    res = perplexity(model, ids, seqlen, max_windows=max_windows, device=device)
    if not math.isfinite(res.ppl):  # as libpbs2p's PBS2P_ERR_NONFINITE: never a NaN as an answer
        raise DataError(f"{source}: the perplexity is not finite ({res.ppl}): the model holds non-finite weights")
    return {"ppl": res.ppl, "windows": res.windows, "tokens": res.tokens, "seqlen": seqlen,
            "data": data, "model": source, "seconds": round(time.perf_counter() - t0, 2), "runtime": "pytorch"}


def _prompt_text(prompt: str | None, prompt_file: str | None) -> str:
    """The prompt given inline or as a UTF-8 file (exactly one of them)."""
    if (prompt is None) == (prompt_file is None):
        raise ConfigError("give the prompt either inline (-p) or as a file (-f), not both or neither")
    if prompt_file is not None:
        from .files.text_file import read_text_file

        prompt = read_text_file(prompt_file, "prompt file")
    if not prompt:
        raise ConfigError("the prompt is empty")
    return prompt


def run(source: str, prompt: str | None = None, *, prompt_file: str | None = None, n_predict: int = 64,
        threads: int | None = None, sampler=None, n_ctx: int | None = None, stop_at_eos: bool = True,
        on_text=None, kv: str = "f16") -> dict:
    """Generate up to n_predict tokens after the prompt with libpbs2p from one of our GGUF files.

    sampler: runtime.sampling.SamplerParams (None: greedy). kv: the KV cache's entries, f16 or f32. on_text(str) receives the generated text as it
    comes, whole UTF-8 characters only. Returns the keys of the C CLI pbs2p-run's JSON (rates None when
    undefined, as its null).
    """
    import codecs
    import dataclasses

    from .runtime import selected_kernel
    from .runtime.model import Model, encode_text
    from .runtime.sampling import SamplerParams
    from .runtime.tokenizer import Tokenizer

    sampler = SamplerParams() if sampler is None else sampler
    text = _prompt_text(prompt, prompt_file)
    path = Path(source).expanduser()
    problem = path_problem(path)
    if problem:
        raise ModelError(f"{source}: {problem}")
    if not path.is_file():
        raise ModelError(f"{source} is not a file (run takes a .gguf file written by pbs2p-edge export)")
    decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a piece may end inside a UTF-8 character

    def on_token(_token: int, piece: bytes | None) -> None:
        if on_text is not None and piece:
            chunk = decoder.decode(piece)
            if chunk:
                on_text(chunk)

    # the prompt against the context from the file's header, before the load reads and prepares every weight
    prompt_ids = encode_text(Tokenizer(path), text)
    Model.peek(path, n_threads=threads or default_threads(), n_ctx=n_ctx, kv=kv, prompt_tokens=len(prompt_ids))
    with Model(path, n_threads=threads or default_threads(), n_ctx=n_ctx, kv=kv) as model:
        res = model.generate(prompt_ids, n_predict, stop_at_eos=stop_at_eos, on_token=on_token,
                             **dataclasses.asdict(sampler))
        info = model.info
    rest = decoder.decode(b"", final=True)
    if on_text is not None and rest:
        on_text(rest)
    kernel = selected_kernel()  # the model ran, so a kernel was selected
    return {"text": res.text, "tokens": res.tokens, "prompt_ids": prompt_ids, "prompt_tokens": res.n_prompt,
            "n_generated": len(res.tokens), "stop_reason": res.stop_reason,
            "prompt_tokens_per_second": res.prompt_tokens_per_second,
            "decode_tokens_per_second": res.decode_tokens_per_second, "prompt_seconds": res.prompt_seconds,
            "decode_seconds": res.decode_seconds, "model": source, "kernel": kernel, "threads": info.n_threads,
            "ctx": info.n_ctx, "kv": info.kv}


EXPORT_FORMATS = (".gguf", ".onnx")


def _write_export(checkpoint_dir, out: str, suffix: str, embed_type: str, onnx_flavor: str) -> None:
    """One exporter per output extension, each writing `out` atomically from a checkpoint directory."""
    if suffix == ".onnx":
        from pbs2p_exporters.onnx_export import export_onnx

        export_onnx(checkpoint_dir, out, flavor=onnx_flavor)
    else:
        from pbs2p_exporters.gguf_export import export_gguf

        export_gguf(checkpoint_dir, out, embed_type=embed_type)


def export(source: str, out: str, cfg, *, calib: str, nsamples: int, seqlen: int, device: str = "cpu",
           progress: bool = True, embed_type: str | None = None, onnx_flavor: str = "custom",
           bpw: float | None = None, size_bytes: int | None = None, tiers: tuple[str, ...] | None = None,
           recover: int | None = None, adapt_threads: bool = False, resume: bool = False,
           dtype: str = ACTIVATION_DTYPES[0]) -> dict:
    """Write `out` (.gguf or .onnx) from a checkpoint, compressing `source` first when it is not one (compress()'s
    budget, tiers, recover, adapt_threads, resume and dtype; the compression's progress is kept beside `out`).

    Every output check runs before compressing. The compression goes to a temporary checkpoint next
    to `out`, removed afterwards (also on error or Ctrl-C). embed_type None: the checkpoint's embedding tier
    (chosen by the budget), else f16.
    """
    suffix = Path(out).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise OutputError(f"unknown output extension {suffix or '(none)'!r} for {out}; use one of {', '.join(EXPORT_FORMATS)}")
    check_source(source, suffix)
    from .pack.checkpoint_dir import is_checkpoint
    from .model.progress import progress_dir

    _check_output_dir(out)
    if Path(out).is_dir():
        raise OutputError(f"{out} is a directory")
    t0 = time.perf_counter()
    summary: dict = {"out": str(Path(out).resolve())}
    if is_checkpoint(source):
        _write_export(source, out, suffix, embed_type, onnx_flavor)
        summary["bits_per_weight"] = inspect(source)["bits_per_weight"]
    else:
        with tempfile.TemporaryDirectory(prefix=".pbs2p-ckpt-", dir=Path(out).resolve().parent) as tmp:
            ckpt = os.path.join(tmp, "checkpoint")
            summary["compress"] = compress(source, ckpt, cfg, calib=calib, nsamples=nsamples, seqlen=seqlen,
                                           device=device, progress=progress, bpw=bpw, size_bytes=size_bytes,
                                           tiers=tiers, recover=recover, output=suffix,
                                           adapt_threads=adapt_threads, resume=resume,
                                           progress_path=str(progress_dir(out)), dtype=dtype)
            summary["compress"].pop("checkpoint")
            _write_export(ckpt, out, suffix, embed_type, onnx_flavor)
            summary["bits_per_weight"] = inspect(ckpt)["bits_per_weight"]  # honest bits: same in every format
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["bytes"] = os.path.getsize(out)
    return summary


def inspect(path: str) -> dict:
    """inspect_file of a GGUF file, ONNX file or checkpoint directory; FormatError when `path` does not exist, or when
    a GGUF file is one libpbs2p would refuse to run: its loader's checks are the file's validation, so inspect
    describes only what eval and run accept (an ONNX file: onnx_read.check_onnx, onnxruntime with libpbs2p's op)."""
    from pbs2p_exporters.inspect import inspect_file

    problem = path_problem(path)
    if problem:
        raise FormatError(f"{path}: {problem}")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read(4) == b"GGUF":
                _gguf_keys(path)  # validated by libpbs2p's reader before gguf-py reads it
    described = inspect_file(path)
    if described["format"] == "gguf":
        from .runtime.model import Model

        try:
            with Model(path, n_threads=1, n_ctx=1):  # the smallest context: the checks, not a KV cache
                pass
        except NativeError as e:
            raise FormatError(f"{path}: libpbs2p refuses the file ({e})") from None
    return described


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def info() -> dict:
    """Versions and the native library: its absolute path, compiled and usable kernel variants, the
    one selected. When libpbs2p cannot be loaded (or PBS2P_KERNEL forces an unusable variant) the
    fields it would fill are null/empty and `error` says why; this never raises for that."""
    from . import __version__

    out: dict = {
        "version": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": _dist_version("torch"),  # from metadata: `info` does not import torch
        "transformers": _dist_version("transformers"),
        "gguf": _dist_version("gguf"),
        "native_library": None,
        "native_version": None,
        "kernel_variants": [],
        "available_kernels": [],
        "selected_kernel": None,
    }
    try:
        from . import runtime  # loads libpbs2p: NativeError when not built, OSError when not loadable

        out["native_library"] = str(runtime.library_path().resolve())
        out["native_version"] = runtime.native_version()
        out["kernel_variants"] = runtime.kernel_variants()
        out["available_kernels"] = runtime.available_kernels()
        out["selected_kernel"] = runtime.selected_kernel()
    except (Pbs2pError, OSError) as e:
        out["error"] = " ".join(str(e).split())
    return out


def format_info(d: dict) -> str:
    """Human-readable `info`: one `key: value` line each, lists comma-separated, null as `-`."""
    def show(v):
        if v is None:
            return "-"
        return ", ".join(v) if isinstance(v, list) else str(v)

    return "\n".join(f"{k}: {show(v)}" for k, v in d.items())


def format_inspect(d: dict) -> str:
    """Human-readable table of `inspect` output."""
    lines = [f"{k}: {v}" for k, v in d.items() if k != "layers" and not isinstance(v, (dict, list))]
    if "blocks" in d:
        lines.append(f"blocks: {d['blocks']['compressed']} of {d['blocks']['total']} compressed")
    lines.append("tiers: " + ", ".join(f"{t} x{n}" for t, n in d.get("tiers", {}).items()))
    if d.get("layers"):
        lines.append(f"{'layer':48} {'tier':>7} {'N:M':>5} {'rows':>6} {'cols':>6} {'bits/w':>7}")
    for layer in d.get("layers", []):
        lines.append(f"{layer['name']:48} {layer['tier']:>7} {layer['n']}:{layer['m']:<3} {layer['rows']:>6} "
                     f"{layer['cols']:>6} {layer['bits_per_weight']:>7.3f}")
    return "\n".join(lines)


__all__ = ["check_device", "compress", "default_threads", "evaluate", "export", "format_info", "format_inspect", "info",
           "inspect", "run"]


def bench(what: str, argv: list[str]) -> int:
    """`bench all`: bench/all.py of the source checkout this package runs from, in a child Python (the benchmarks
    are scripts of the repository, not part of the installed package); returns its exit status."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "all.py"
    if what != "all" or not script.is_file():
        raise ConfigError(f"the benchmarks live in a source checkout's bench/ (looked for {script}); clone the "
                          "repository and run `pbs2p-edge bench all` from an editable install")
    return subprocess.call([sys.executable, str(script), *argv])
