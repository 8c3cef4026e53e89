"""Compress a whole model block by block: capture inputs, accumulate Hessians, compress every linear, propagate."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..algo.config import CompressConfig
from ..algo.methods import METHODS
from ..algo.gptq_grid import FloatResult, GridResult, gptq_grid, round_f16
from ..algo.result import LayerResult
from ..pack.tiers import BINARY, tier
from ..calib.hessian import accumulate_hessians
from ..errors import ConfigError
from .arch import ArchSpec, arch_for, block_linears, check_seqlen, decoder_blocks, run_block
from .capture import capture_inputs
from .head_input import head_hessian
from .heap import release_free_heap
from .held import hold_as_stored, release_weight, widened
from .stream import StreamedWeights

log = logging.getLogger(__name__)


@dataclass
class CompressionRun:
    """What compress_model did.

    results: full module name ("model.layers.0.self_attn.q_proj") -> LayerResult (binary tier), GridResult
             (grid tiers) or FloatResult (f16), on CPU.
    tiers: the same names -> tier name (pbs2p_edge.pack.tiers; "pbs2p" for the binary tier).
    layer_n: the same names -> N kept per M-group in that layer.
    importance: per block, CFS importance 1/mean cos(block input, output) of the FP model on the
                first cfg.cfs_windows windows ([] when CFS is off); block_n: N_l per block.
    recovery: per block, block-wise recovery's error on all windows before and after and whether it was kept
              ([] when cfg.recover_steps is 0).
    block_params: a streamed model's compressed blocks' other parameters (norms, biases; recovery changes them), by
                  state-dict name, on CPU: the blocks themselves are released ({} for a model held in memory).
    block_seconds: wall seconds of each block this run compressed (not those a resumed run loaded).
    head_hessian: the output head input's H (D, D) on the compressed model's activations (model/head_input.py), for
                  storing the head (checkpoint/head.py); None when only the first blocks were compressed.
    seconds: wall time of compress_model; peak_memory_bytes: CUDA peak allocated on a CUDA device,
             else the process's peak resident set size (includes the model itself).
    config: the resolved config that was used.
    """

    results: dict[str, LayerResult | GridResult | FloatResult]
    tiers: dict[str, str]
    layer_n: dict[str, int]
    importance: list[float]
    block_n: list[int]
    seconds: float
    peak_memory_bytes: int
    config: CompressConfig
    recovery: list[dict] = dataclasses.field(default_factory=list)
    block_params: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    block_seconds: list[float] = dataclasses.field(default_factory=list)
    head_hessian: torch.Tensor | None = None


def _peak_memory(device: torch.device) -> int:
    """CUDA: peak bytes allocated on device since compress_model started; CPU: the process's peak
    resident set size in bytes (ru_maxrss: KiB on Linux, bytes on macOS), 0 where `resource` does not exist."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        import resource
    except ImportError:  # Windows
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def uses_cfs(cfg: CompressConfig) -> bool:
    """CFS' coarse stage (per-block N) applies to a method that uses it (algo/methods.py: PBS2P) when the config
    prunes and cfg.cfs is on."""
    return METHODS[cfg.method].uses_cfs and cfg.cfs and cfg.prunes


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _fetch(block: nn.Module, name: str, device: torch.device, weights: StreamedWeights | None) -> torch.device | None:
    """Block `name` on `device`: read from the shards of a streamed model (returns None), else moved there from where
    it was (returned, for _put_back)."""
    if weights is not None:
        weights.load(block, name, device)
        return None
    home = _device_of(block)
    block.to(device)
    return home


def _put_back(block: nn.Module, home: torch.device | None) -> None:
    """Undo _fetch: a streamed block is released, any other goes home."""
    if home is None:
        StreamedWeights.release(block)
    else:
        block.to(home)


def _other_params(block: nn.Module, linears: dict) -> dict[str, torch.Tensor]:
    """The block's parameters other than its linears' weights (norms, biases), by their name in the block, on CPU."""
    weights = {f"{name}.weight" for name in linears}
    return {k: p.detach().cpu().clone() for k, p in block.named_parameters() if k not in weights}


def _to_cpu(result, device: str | torch.device = "cpu"):
    """The result with its tensors on `device` (CPU unless told)."""
    moved = {
        f.name: getattr(result, f.name).to(device)
        for f in dataclasses.fields(result)
        if isinstance(getattr(result, f.name), torch.Tensor)
    }
    return dataclasses.replace(result, **moved)


@torch.no_grad()
def _restore_weights(linears: dict[str, nn.Linear], results: dict) -> None:
    """Each linear's weight <- its result dequantized (bit for bit the values the fit compensated for), in its dtype
    and on its device."""
    for name, lin in linears.items():
        lin.weight.data = results[name].dequantize().to(device=lin.weight.device, dtype=lin.weight.dtype)


def _late_linears(linears: dict[str, nn.Linear]) -> set[str]:
    """The linears of a streamed block whose Hessian comes from a second forward: those of the block's widest input
    (a Llama MLP's down_proj, K = intermediate), when some other linear's input is narrower. [choice] Their K x K
    Hessian is most of a block's (0.82 GB of 0.98 at the Llama-3-8B shape); made in the first forward it would sit
    beside every weight and through every other fit. A second forward costs a block's forward (a few percent of its
    time) and its weights read again from the shards; a model held in memory has no full-precision copy to re-run,
    so there (where memory is not the limit) one forward makes every Hessian."""
    widest = max(lin.in_features for lin in linears.values())
    late = {n for n, lin in linears.items() if lin.in_features == widest}
    return late if len(late) < len(linears) else set()


def _late_hessians(block: nn.Module, linears: dict[str, nn.Linear], late: set[str], prefix: str, x: torch.Tensor,
                   kwargs: dict, weights: StreamedWeights, held: dict[str, torch.Tensor]) -> dict:
    """The late linears' Hessians (_late_linears), from a forward of the full-precision block, the same H bit for bit
    as one forward of the uncompressed block gives. The fitted linears' weights (released after their fits) are read
    again as stored and, with the late ones (`held`, as stored), widened: this forward does not hold every float32
    weight beside the largest H."""
    held = {**{n: weights.read_stored(f"{prefix}.{n}.weight", x.device) for n in linears if n not in late},
            **{n: held[n] for n in late}}
    with widened(linears, held), accumulate_hessians({n: linears[n] for n in linears if n in late}) as hessians:
        _run_all(block, x, kwargs, None)
    del held
    release_free_heap()
    return hessians


@torch.no_grad()
def _run_all(block: nn.Module, x: torch.Tensor, kwargs: dict, out: torch.Tensor | None) -> torch.Tensor | None:
    """out[j] = block(x[j]) for every window j, batch 1; out may be x itself (windows are
    independent), or None to run only for the hooks' sake and keep nothing. The block runs at float32 (a window kept
    at bfloat16 or float16, compress_model's act_dtype, is widened for it; out keeps its own dtype)."""
    for j in range(x.shape[0]):
        y = run_block(block, x[j : j + 1].float(), kwargs)
        if out is not None:
            out[j : j + 1] = y
    return out


@torch.no_grad()
def _block_importances(blocks: nn.ModuleList, spec: ArchSpec, x: torch.Tensor, block_kwargs: list[dict], device,
                       weights: StreamedWeights | None) -> list[float]:
    """CFS importance of every block of the full-precision model, one pass over all windows; a streamed block's
    linears held as stored and widened one at a time (hold_as_stored)."""
    from ..algo.cfs import block_importance

    importance = []
    h = x.clone()
    for i, block in enumerate(blocks):
        prefix = f"{spec.blocks}.{i}"
        home = _fetch(block, prefix, device, weights)
        linears = block_linears(block, spec)
        with widened(linears, hold_as_stored(linears, weights, prefix)):
            out = _run_all(block, h, block_kwargs[i], torch.empty_like(h))
        _put_back(block, home)
        release_free_heap()  # the block's and its forward's memory, before the next block is read
        importance.append(float(block_importance(h, out)))
        h = out
    return importance


def _allocate(blocks: nn.ModuleList, spec: ArchSpec, importance: list[float], cfg: CompressConfig) -> list[int]:
    """N_l per block: allocate_n over blocks weighted by each block's linear parameter count, so the
    parameter-weighted mean of N_l is cfg.n. Every linear of block l gets that block's N_l."""
    from ..algo.cfs import allocate_n

    params = [sum(lin.weight.numel() for lin in block_linears(b, spec).values()) for b in blocks]
    return [int(v) for v in allocate_n(importance, params, cfg.n, cfg.m, cfg.cfs_low, cfg.cfs_high)]


def compress_model(
    model: nn.Module,
    calib_ids: torch.Tensor,
    cfg: CompressConfig,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_blocks: int | None = None,
    plan: dict[str, str] | None = None,
    governor=None,
    progress_store=None,
    weights: StreamedWeights | None = None,
    compact=None,
    act_dtype: torch.dtype = torch.float32,
) -> CompressionRun:
    """Compress every linear of every decoder block of `model` in place (weights ← dequantized result).

    calib_ids: (nsamples, seqlen) int64 calibration windows. Only one block and the activations of
    all windows at that block, (nsamples, seqlen, D) on `device`, are on `device` at a time; the
    rest of the model stays where it is. num_blocks: compress only the first num_blocks blocks
    (quick looks and tests; CFS still allocates N over all blocks), None = all.
    plan: full linear name -> tier name (pbs2p_edge.pack.tiers) for a mixed-tier model; a linear it does not
    name takes the binary tier ("pbs2p", compressed by cfg). With a plan, CFS is off: the plan's allocator already
    spent the bits per layer, and the binary layers keep cfg.n.
    governor: a free_cores.ThreadGovernor whose adjust() sets torch's threads to the free cores before the CFS
    pass and each block (None: the threads stay as they are).
    progress_store: a model.progress.Progress: every finished block is saved there, and the blocks it already holds
    are loaded instead of compressed again (a resumed run).
    weights: the shards of a model built on the meta device (model/stream.py): each block (and the embedding, for
    the capture) is read from them when its turn comes and released after, so memory holds one block at a time;
    None: the model is in memory.
    compact: applied to each linear's result as soon as nothing needs it whole (at once; after the block's recovery
    when there is one), the value kept in the run's results: checkpoint.save.stored_result keeps them packed, a few
    bits per weight instead of the bytes per weight of a LayerResult (26 GB for a 7B model's; 0.6 GB within one 7B
    block); None: results stay as the math made them. With a progress_store too, a finished block's packed results
    are read back from it when the checkpoint is written (progress.kept), so memory does not grow with depth.
    act_dtype: the calibration activations' dtype between blocks (and recovery's targets): bfloat16 or float16 hold
    them in half float32's memory (a 7B model's 128 x 2048 windows: 2.1 GB instead of 4.3 GB per copy) at the cost of
    their rounding; each window is widened to float32 for the block's forward, so the Hessians, the fits and
    recovery's losses are float32 math.

    Per block (GPTQ order): hooks accumulate one H per linear while the block runs on every window;
    [choice] every linear of the block gets its H from that same forward of the *uncompressed* block
    (GPTQ's --true-sequential re-run after each sub-layer is not done: one forward per block is
    cheaper, and the MLP's H then reflects the FP attention output, as in GPTQ's default); then every linear is compressed with
    compress_layer(W, H, cfg, N_l) and its weight replaced by the dequantized result; with cfg.recover_steps,
    the block's continuous parameters are then fitted to the full-precision block's outputs on the full-precision
    activations (algo/recover.py); then the compressed block re-runs on every window to produce the next block's
    inputs.
    """
    from ..algo.compress_layer import compress_layer

    if calib_ids.dim() != 2 or calib_ids.shape[0] < 1 or calib_ids.shape[1] < 1:
        raise ConfigError(f"calibration ids must be (nsamples >= 1, seqlen >= 1), got shape {tuple(calib_ids.shape)}")
    spec = arch_for(model)
    check_seqlen(model, calib_ids.shape[1])
    cfg = cfg.resolved()
    blocks = decoder_blocks(model, spec)
    if num_blocks is not None and not 1 <= num_blocks <= len(blocks):
        raise ConfigError(f"num_blocks must be in 1..{len(blocks)}, got {num_blocks}")
    device = torch.device(device)
    start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.eval()

    release_free_heap()  # what loading and tokenizing freed (0.1 GB of the tokenizer's, for a novel) goes back first
    inputs = capture_inputs(model, calib_ids, spec, device, weights, act_dtype)
    x, block_kwargs = inputs.hidden, inputs.block_kwargs
    plan = dict(plan or {})
    for t in set(plan.values()) - {BINARY}:
        tier(t)  # ConfigError for an unknown tier name, before any work
    adjust = governor.adjust if governor is not None else torch.get_num_threads
    kept = progress_store.start() if progress_store is not None else None
    if kept is not None:
        importance, block_n = kept["importance"], kept["block_n"]
    elif uses_cfs(cfg) and not plan:
        adjust()
        importance = _block_importances(blocks, spec, x[: cfg.cfs_windows], block_kwargs, device, weights)
        block_n = _allocate(blocks, spec, importance, cfg)
    else:
        importance, block_n = [], [cfg.n] * len(blocks)
    if progress_store is not None and kept is None:
        progress_store.save_start(importance, block_n)

    results: dict[str, LayerResult | GridResult | FloatResult] = {}
    tiers: dict[str, str] = {}
    layer_n: dict[str, int] = {}
    recovery: list[dict] = []
    block_params: dict[str, torch.Tensor] = {}
    block_seconds: list[float] = []
    x_fp = x.clone() if cfg.recover_steps else None  # the full-precision model's activations, recovery's targets
    total = num_blocks or len(blocks)
    done = min(progress_store.finished(), total) if progress_store is not None else 0
    keep = compact if compact is not None else (lambda r: r)
    for i in range(done):
        _restore_block(blocks[i], spec, i, progress_store.block(i), results, tiers, layer_n, recovery,
                       block_params if weights is not None else None)
        results.update({n: keep(r) for n, r in (progress_store.kept(i) if compact is not None else
                                                {n: results[n] for n in _names(spec, i)}).items()})
    if done:
        x, saved_fp = (t.to(device) if t is not None else None for t in progress_store.activations(done - 1))
        x_fp = saved_fp if x_fp is not None else None
    bar = tqdm(range(done, total), desc=f"compress {cfg.method}", unit="block", disable=not progress, initial=done,
               total=total)
    for i in bar:
        t0 = time.perf_counter()
        threads = adjust()
        block, kwargs = blocks[i], block_kwargs[i]
        home = _fetch(block, f"{spec.blocks}.{i}", device, weights)
        linears = block_linears(block, spec)
        late = _late_linears(linears) if weights is not None else set()
        held = hold_as_stored(linears, weights, f"{spec.blocks}.{i}")  # each widened only while it runs or is fitted
        with widened(linears, held):
            with accumulate_hessians({n: lin for n, lin in linears.items() if n not in late}) as hessians:
                _run_all(block, x, kwargs, None)
            release_free_heap()  # the forward's intermediates, before the fits' peak
            if x_fp is not None:
                _run_all(block, x_fp, kwargs, x_fp)  # before any linear is quantized: this block's FP outputs
        for name in [n for n in linears if n not in late] + [n for n in linears if n in late]:
            lin = linears[name]
            if name in late and name not in hessians:  # the first late fit: every other one is done
                hessians.update(_late_hessians(block, linears, late, f"{spec.blocks}.{i}", x, kwargs, weights, held))
            full = f"{spec.blocks}.{i}.{name}"
            t = plan.get(full, BINARY)
            if name in held:
                lin.weight.data = held.pop(name).to(lin.weight.dtype)
            W = lin.weight.detach().float()
            h = hessians.pop(name)
            last = not any(other is h for other in hessians.values())  # H's last user factors U in its buffer
            # W is the module's own weight when it is float32: the fit works in it (its last use: the result
            # replaces it below), one R x K fewer in memory
            if t == BINARY:
                result = compress_layer(W, h.H, cfg, block_n[i], overwrite_h=last, overwrite_w=True)
            elif t == "f16":
                result = round_f16(W)
            else:
                result = gptq_grid(W, h.H, tier(t), cfg.percdamp, overwrite_h=last, overwrite_w=True)
            tiers[full] = t
            results[full] = _to_cpu(result) if x_fp is not None else keep(_to_cpu(result))  # recovery needs them whole
            layer_n[full] = block_n[i]
            log.debug("%s: %s N=%d loss=%.4g", full, t, block_n[i], result.loss)
            # the weight is not used again until the block's last fit is done (every H came from one forward): its
            # R x K goes now and is remade from the result after (0.6 GB of a 7B block's during down_proj's fit); one H
            # fewer once its last sharer is done (down_proj's alone is 0.5 GB at a 7B width); this result whole not kept
            # through the next linear's fit (4 bytes per weight)
            release_weight(lin)
            del h, result, W
            release_free_heap()
        _restore_weights(linears, {name: results[f"{spec.blocks}.{i}.{name}"] for name in linears})
        if x_fp is not None:
            recovery.append(_recover(block, linears, spec.blocks, i, results, x, x_fp, kwargs, cfg))
        _run_all(block, x, kwargs, x)  # in place: window j's output depends on window j's input only
        params = _other_params(block, linears)
        if weights is not None:
            block_params.update({f"{spec.blocks}.{i}.{k}": p for k, p in params.items()})
        _put_back(block, home)
        release_free_heap()
        results.update({n: keep(results[n]) for n in _names(spec, i)})
        if progress_store is not None:
            progress_store.save_block(i, _block_record(_names(spec, i), params, results, tiers, layer_n,
                                                       recovery[-1] if x_fp is not None else None), x, x_fp)
            if compact is not None:  # their stored forms are on disk now: memory keeps only where to read them
                results.update(progress_store.kept(i))
        block_seconds.append(round(time.perf_counter() - t0, 2))
        bar.set_postfix(N=block_n[i], threads=threads, peak=f"{_peak_memory(device) / 2**30:.2f}GiB")
    # x: the last block's output on every window (a resumed run's from the progress store)
    head_h = head_hessian(model, spec, x, weights) if total == len(blocks) else None

    return CompressionRun(
        results=results,
        tiers=tiers,
        layer_n=layer_n,
        importance=importance,
        block_n=block_n,
        seconds=time.perf_counter() - start,
        peak_memory_bytes=_peak_memory(device),
        config=cfg,
        recovery=recovery,
        block_params=block_params,
        block_seconds=block_seconds,
        head_hessian=head_h,
    )


def _names(spec: ArchSpec, i: int) -> list[str]:
    """Full names of block i's linears."""
    return [f"{spec.blocks}.{i}.{name}" for name in spec.linears]


def _block_record(names: list[str], params: dict, results: dict, tiers: dict, layer_n: dict,
                  recovery: dict | None) -> dict:
    """What model.progress keeps of a finished block (its linears' full `names`): their results, tiers and N, its
    recovery entry, and its other parameters (norms, biases: recovery changes them); the linears' weights are their
    results' values."""
    return {"results": {n: results[n] for n in names}, "tiers": {n: tiers[n] for n in names},
            "layer_n": {n: layer_n[n] for n in names}, "recovery": recovery, "params": params}


@torch.no_grad()
def _restore_block(block: nn.Module, spec: ArchSpec, i: int, record: dict, results: dict, tiers: dict, layer_n: dict,
                   recovery: list, block_params: dict | None) -> None:
    """Block i as the run that saved `record` left it, and its entries in the run's tables. block_params: a streamed
    model's table of released blocks' parameters, which takes the record's (the block itself stays unread)."""
    results.update(record["results"])
    tiers.update(record["tiers"])
    layer_n.update(record["layer_n"])
    if record["recovery"] is not None:
        recovery.append(record["recovery"])
    if block_params is not None:
        block_params.update({f"{spec.blocks}.{i}.{k}": t for k, t in record["params"].items()})
        return
    for name, lin in block_linears(block, spec).items():
        lin.weight.copy_(record["results"][f"{spec.blocks}.{i}.{name}"].dequantize().to(lin.weight.dtype))
    for k, t in record["params"].items():
        block.get_parameter(k).copy_(t)


def _recover(block: nn.Module, linears: dict[str, nn.Linear], prefix: str, i: int, results: dict,
             x: torch.Tensor, target: torch.Tensor, kwargs: dict, cfg: CompressConfig) -> dict:
    """Block-wise recovery of block i (algo/recover.py): results and the block's weights take the fitted values."""
    from ..algo.recover import recover_block

    names = {f"{prefix}.{i}.{name}": name for name in linears}
    weights = {f"{name}.weight" for name in linears}
    others = {k: p for k, p in block.named_parameters() if k not in weights}
    block.requires_grad_(False)  # only recovery's offsets take gradients
    run = lambda overrides, xb: run_block(block, xb.float(), kwargs, overrides)  # noqa: E731
    fit = recover_block(run, {names[f]: _to_cpu(results[f], x.device) for f in names}, {k: p.data for k, p in others.items()},
                        x, target, cfg)
    if fit.kept:
        with torch.no_grad():
            for full, name in names.items():
                results[full] = _to_cpu(fit.results[name])
                linears[name].weight.copy_(fit.results[name].dequantize().to(linears[name].weight.dtype))
            for k, p in others.items():
                p.copy_(fit.block_params[k].to(p.dtype))
    log.debug("block %d recovery: mse %.4g -> %.4g (%s)", i, fit.mse_before, fit.mse_after,
              "kept" if fit.kept else "not kept")
    return {"block": i, "mse_before": fit.mse_before, "mse_after": fit.mse_after, "kept": fit.kept, "codes": fit.codes}
