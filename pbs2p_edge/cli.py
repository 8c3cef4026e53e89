"""The `pbs2p-edge` command line: the only argument parser of the package.

Each sub-command parses and checks its arguments, then calls one function of `pbs2p_edge.commands`.
Every Pbs2pError, bad argument or unreadable/unwritable file the user named prints one line
`pbs2p-edge: error: ...` on stderr and exits 2; Ctrl-C exits 130. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

from . import __version__
from .algo.config import RECOVER_BELOW_BPW, RECOVER_STEPS
from .commands import ACTIVATION_DTYPES
from .errors import ConfigError, Pbs2pError
from .free_cores import bounded_spinning
from .pack.tiers import EMBED_TIERS

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_NM = "6:8"  # the binary path's N:M when --method/--preset is given without --nm
# The default recipe: the bit budget (file bits per model parameter) that bench/pareto.py shows best at a file no
# larger than llama.cpp's Q4_0 of the same model (bench/results/quality_vs_size.md).
DEFAULT_BPW = 5.0


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit code 2, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _int_at_least(minimum: int, maximum: int | None = None):
    """argparse type: a whole number >= minimum (and <= maximum)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)
_c_int = _int_at_least(1, 2**31 - 1)  # a count libpbs2p takes as int32_t (context length)
_seed = _int_at_least(0, 2**64 - 1)  # a seed of torch.Generator / libpbs2p's sampler (uint64)


def _float_in(low: float, high: float, low_open: bool):
    """argparse type: a finite number in [low, high] ((low, high] when low_open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {text}")
        return value
    return parse


def _add_compress_options(p: argparse.ArgumentParser, default_nm: str) -> None:
    from .algo.methods import METHODS

    g = p.add_argument_group("compression")
    budget = g.add_mutually_exclusive_group()
    budget.add_argument("--bpw", type=_float_in(0.0, 32.0, True), default=None,
                        help="bit budget: file bits per model parameter; a tier per linear and for the embedding "
                             f"is chosen from measured sensitivity (the default, at {DEFAULT_BPW:g}, unless a "
                             "--method, --nm or structure option is given)")
    budget.add_argument("--size", type=_size, default=None, help="bit budget as a file size: 60MB, 57.5MiB, 1.2GB")
    g.add_argument("--tiers", type=_tier_list, default=None,
                   help="the tiers the bit budget may give a linear, comma-separated (default: "
                        "q8_0,q4_s16,q3_s16,q2_s16,pbs2p; also q4_0,q3_g64,q2_g64,f16)")
    g.add_argument("--method", default=None, help=f"one of: {', '.join(METHODS)}: every linear binarized (default pbs2p)")
    g.add_argument("--nm", default=None, help=f"N:M, N kept of every M (default {default_nm})")
    g.add_argument("--calib", default="austen:emma", help="calibration text: austen:<novel>, debian-reference, wikitext2, c4, ptb or a file")
    g.add_argument("--nsamples", type=_positive_int, default=128, help="calibration windows (default 128)")
    g.add_argument("--seqlen", type=_positive_int, default=2048, help="tokens per calibration window (default 2048)")
    g.add_argument("--seed", type=_seed, default=0, help="calibration windows and recovery order (0..2^64-1)")
    g.add_argument("--preset", choices=("paper", "compact"), default=None,
                   help="structure: paper (salient columns + split groups, ~3.5 bits/weight) or compact "
                        "(one alpha/mu per row, ~1.4 bits/weight); the options below override it")
    g.add_argument("--block-size", type=_non_negative_int, default=None,
                   help="GPTQ column block and scale group (default 128; 0 = whole row)")
    g.add_argument("--salient", choices=("auto", "on", "off"), default="auto", help="salient columns (2nd-order)")
    g.add_argument("--split-groups", type=int, choices=(1, 2, 3), default=None, help="non-salient magnitude groups")
    g.add_argument("--intra-block-update", choices=("auto", "on", "off"), default="auto",
                   help="GPTQ error feedback between columns inside a block")
    g.add_argument("--no-cfs", action="store_true", help="PBS2P: same N in every layer (no coarse CFS stage)")
    g.add_argument("--recover", type=_non_negative_int, default=None, metavar="STEPS",
                   help="block-wise recovery: Adam steps per block fitting the scales, means and norm weights to the "
                        f"full-precision block's output (0: off; default with the bit budget: {RECOVER_STEPS} below "
                        f"{RECOVER_BELOW_BPW:g} bits per parameter, else 0; 0 with --method/--nm/structure options)")
    g.add_argument("--recover-codes", choices=("on", "off"), default=None,
                   help="on: recovery also trains the codes and signs through their rounding (straight-through; "
                        "N:M masks stay); lowers the calibration error but overfits the default calibration (off by "
                        "default: scales, means and norms only)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (one block on the device at a time)")
    g.add_argument("--dtype", choices=ACTIVATION_DTYPES, default=ACTIVATION_DTYPES[0],
                   help="the calibration activations kept between blocks: bfloat16 or float16 take half float32's "
                        "memory (a 7B model at the default 128 x 2048 windows: 2.1 GB instead of 4.3 per copy), "
                        "rounded; the block math stays float32 (default float32)")
    g.add_argument("--threads", type=_threads_or_auto, default=None,
                   help="CPU threads for torch (default: torch's choice), or auto: the cores other processes leave "
                        "free, measured again before each block (fast on a busy machine; torch's sums, and so the "
                        "last bits of the result, may then differ from run to run)")
    g.add_argument("--resume", action="store_true",
                   help="go on from the blocks a killed run with the same options finished (each finished block is "
                        "kept in .<output name>.progress beside the output until the output is written)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def _size(text: str) -> int:
    """argparse type: a file size in bytes from '60MB', '57.5MiB', '1.2GB' or '60000000'."""
    import re

    mt = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]i?b|b)?\s*", text.lower())
    value = float(mt.group(1)) * _UNITS[mt.group(2) or "b"] if mt else 0.0
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"expected a size such as 60MB or 57.5MiB, got {text!r}")
    return int(value)


def _tier_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated tier names of pbs2p_edge.pack.tiers (pbs2p: the binary tier)."""
    from .pack.tiers import BINARY, GRID_TIERS

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in names if t not in (*GRID_TIERS, BINARY)]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected tiers among {', '.join((*GRID_TIERS, BINARY))}, got {text!r}")
    return names


_BINARY_OPTIONS = ("method", "nm", "preset", "block_size", "split_groups")


def _binary_options(args: argparse.Namespace) -> list[str]:
    """The binary-structure options the user gave (they choose the binary PBS2P path)."""
    binary = [f"--{o.replace('_', '-')}" for o in _BINARY_OPTIONS if getattr(args, o) is not None]
    binary += [f"--{o.replace('_', '-')}" for o in ("salient", "intra_block_update") if getattr(args, o) != "auto"]
    return binary + (["--no-cfs"] if args.no_cfs else [])


def _budget_from_args(args: argparse.Namespace) -> dict:
    """{'bpw': B} or {'size_bytes': S} for the bit-budget recipe, {} for the binary (PBS2P paper) path: the budget
    is the default unless a binary-structure option is given; the two cannot be combined."""
    binary = _binary_options(args)
    if args.bpw is not None or args.size is not None:
        if binary:
            raise ConfigError(f"{binary[0]} sets the binary structure; the bit budget (--bpw/--size) chooses "
                              "the tiers itself: give one or the other")
        budget = {"bpw": args.bpw} if args.bpw is not None else {"size_bytes": args.size}
        return {**budget, "tiers": args.tiers, "recover": args.recover}
    if args.tiers and binary:
        raise ConfigError("--tiers belongs to the bit budget; --method/--nm and the structure options to the binary path")
    return {} if binary else {"bpw": DEFAULT_BPW, "tiers": args.tiers, "recover": args.recover}


def _config_from_args(args: argparse.Namespace):
    from .algo.config import PRESETS, CompressConfig, parse_nm

    n, m = parse_nm(args.nm or DEFAULT_NM)
    fields = dict(PRESETS[args.preset or "paper"])
    if args.block_size is not None:
        fields["block_size"] = args.block_size
    if args.salient != "auto":
        fields["salient"] = args.salient == "on"
    if args.split_groups is not None:
        fields["split_groups"] = args.split_groups
    if args.intra_block_update != "auto":
        fields["intra_block_update"] = args.intra_block_update == "on"
    if args.recover is not None:
        fields["recover_steps"] = args.recover  # the budget path takes it from _budget_from_args
    if args.recover_codes is not None:
        fields["recover_codes"] = args.recover_codes == "on"
    return CompressConfig(method=args.method or "pbs2p", n=n, m=m, cfs=not args.no_cfs, seed=args.seed, **fields)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pbs2p-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("compress", help="compress a Hugging Face causal LM into a checkpoint directory")
    p.add_argument("model", help=f"model source: alias ({DEFAULT_MODEL}), local dir, .gguf file or hub id")
    p.add_argument("out_dir", help="checkpoint directory to write (replaced atomically)")
    _add_compress_options(p, default_nm=DEFAULT_NM)
    p.add_argument("--blocks", type=_positive_int, default=None, metavar="K",
                   help="compress only the first K decoder blocks: cost measurements and quick looks (the "
                        "checkpoint evaluates, the others keeping full precision, but does not export)")

    p = sub.add_parser("eval", help="perplexity of a model or compressed checkpoint")
    p.add_argument("model", help="model source or compressed checkpoint directory")
    p.add_argument("--data", default="austen:prideprejudice", help="evaluation text (default austen:prideprejudice)")
    p.add_argument("--seqlen", type=_positive_int, default=2048)
    p.add_argument("--max-windows", type=_positive_int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for torch, or for libpbs2p with a pbs2p GGUF (default: all CPUs)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("run", help="generate text from a pbs2p GGUF file with libpbs2p")
    p.add_argument("model", help=".gguf file written by `pbs2p-edge export`")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("-p", "--prompt", help="prompt text")
    prompt.add_argument("-f", "--file", dest="prompt_file", help="UTF-8 file holding the prompt")
    p.add_argument("-n", "--n-predict", type=_non_negative_int, default=64, help="tokens to generate at most (64)")
    p.add_argument("-t", "--threads", dest="n_threads", type=_positive_int, default=None,
                   help="libpbs2p threads (default: all CPUs; the output does not depend on it)")
    p.add_argument("--temp", type=_float_in(-1e6, 1e6, False), default=0.0,
                   help="sampling temperature; <= 0 is greedy arg-max, as in pbs2p-run (default 0)")
    p.add_argument("--top-k", type=_non_negative_int, default=0, help="keep the k most likely tokens (0: all)")
    p.add_argument("--top-p", type=_float_in(0.0, 1.0, True), default=1.0,
                   help="keep the most likely tokens up to this probability mass (1: all)")
    p.add_argument("--seed", type=_seed, default=0, help="sampling seed (same seed, same tokens)")
    p.add_argument("--ctx", type=_c_int, default=None,
                   help="KV cache positions (default min(2048, the model's context length))")
    p.add_argument("--kv", choices=("f16", "f32"), default="f16",
                   help="KV cache entries: float16 (default; half the memory, as llama.cpp) or float32")
    p.add_argument("--no-eos", action="store_true", help="keep generating past the end-of-sequence token")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (text, tokens, timings) instead of streaming the text")

    p = sub.add_parser("export", help="compress if needed, then write a GGUF or ONNX file")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"model source or checkpoint (default {DEFAULT_MODEL})")
    p.add_argument("out", help="output file: .gguf or .onnx")
    p.add_argument("--embed-type", choices=EMBED_TIERS, default=None,
                   help="embedding / head storage (default: the bit budget's choice, f16 for a binary model)")
    p.add_argument("--onnx-flavor", choices=("custom", "portable"), default="custom",
                   help="ONNX: custom ai.pbs2p PackedLinear op, or stock operators only (docs/ONNX.md)")
    _add_compress_options(p, default_nm=DEFAULT_NM)

    p = sub.add_parser("inspect", help="describe a GGUF file, ONNX file or checkpoint: layers, N:M, honest bits per "
                                       "weight (an ONNX file is first checked as onnxruntime with libpbs2p runs it)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("info", help="versions, the native library libpbs2p and its kernel variants")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("report", help="redraw the benchmark plots and summary.md from a results directory")
    p.add_argument("results_dir")

    p = sub.add_parser("bench", help="run the benchmarks of bench/ (a source checkout) side by side with llama.cpp")
    p.add_argument("what", choices=("all",), help="all: kernels, peer files, end to end, quality vs size, cost")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="passed to bench/all.py (--out, --steps, --quick ...)")
    return parser


@contextlib.contextmanager
def _quiet_transformers(progress: bool):
    """Keep stderr for our own lines: transformers' advisory warnings, the hub's retry warnings and transformers' own
    progress bars ("Loading weights", instant for the models we take) off; the hub's download bars kept only when
    `progress`. Everything is restored after, so calling main() in-process leaves the libraries as they were."""
    if importlib.util.find_spec("transformers") is None:
        yield  # the core install (no [compress] extra): a GGUF is evaluated without transformers
        return
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    level, hub_level = hf_logging.get_verbosity(), hub_utils.logging.get_verbosity()
    bars, hub_bars = hf_logging.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hub_utils.logging.set_verbosity_error()  # its retry lines ("Retrying in 1s"): the failure is our one line
    hf_logging.disable_progress_bar()  # also turns the hub's bars off
    if progress and hub_bars:
        hub_utils.enable_progress_bars()
    # The GGUF loader ("Converting and de-quantizing GGUF tensors...") uses a plain tqdm that no
    # transformers setting reaches; silence that one name while quiet.
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        with contextlib.suppress(ImportError):
            gguf_utils = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if not progress and gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        hf_logging.set_verbosity(level)
        hub_utils.logging.set_verbosity(hub_level)
        if bars:
            hf_logging.enable_progress_bar()  # also turns the hub's bars on
        if not hub_bars:
            hub_utils.disable_progress_bars()
        elif not bars:
            hub_utils.enable_progress_bars()


def _threads_or_auto(text: str):
    """argparse type of compress/export --threads: a positive count, or "auto"."""
    return "auto" if text == "auto" else _positive_int(text)


def _run(args: argparse.Namespace) -> int:
    from . import commands

    source = getattr(args, "model", None) or getattr(args, "file", None)
    args.uses_torch = commands.require_extras(args.command, source, getattr(args, "out", None))
    if args.uses_torch and getattr(args, "threads", None) and args.threads != "auto":
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        try:
            return _run_command(commands, args)
        finally:
            torch.set_num_threads(before)  # main() may be called in-process (tests, notebooks)
    return _run_command(commands, args)


def _check_export_options(args: argparse.Namespace) -> None:
    """A checkpoint is exported as it is: a compression option given with one would be silently ignored."""
    from .pack.checkpoint_dir import is_checkpoint

    if not is_checkpoint(args.model):
        return
    budget = ("bpw", "size", "tiers", "recover", "recover_codes")
    given = _binary_options(args) + [f"--{o.replace('_', '-')}" for o in budget if getattr(args, o) is not None]
    given += ["--resume"] if args.resume else []
    given += [f"--dtype {args.dtype}"] if args.dtype != ACTIVATION_DTYPES[0] else []
    if given:
        raise ConfigError(f"{args.model} is already compressed: {given[0]} applies only when exporting an original model")


def _run_command(commands, args: argparse.Namespace) -> int:
    if args.command in ("compress", "eval", "export"):  # before transformers is imported: a second, not three
        commands.check_source(args.model, Path(args.out).suffix.lower() if args.command == "export" else None)
    if args.command == "compress":
        cfg = _config_from_args(args)
        with _quiet_transformers(progress=not args.quiet):
            summary = commands.compress(
                args.model, args.out_dir, cfg, calib=args.calib, nsamples=args.nsamples,
                seqlen=args.seqlen, device=args.device, progress=not args.quiet, blocks=args.blocks,
                adapt_threads=args.threads == "auto", resume=args.resume, dtype=args.dtype, **_budget_from_args(args),
            )
        print(json.dumps(summary, indent=2))
    elif args.command == "eval":
        with _quiet_transformers(progress=False):
            res = commands.evaluate(args.model, args.data, args.seqlen, args.max_windows, args.device, args.threads)
        if args.json:
            print(json.dumps(res))
        else:
            print(f"ppl {res['ppl']:.4f} over {res['windows']} windows ({res['tokens']} tokens predicted)")
    elif args.command == "run":
        _generate(commands, args)
    elif args.command == "export":
        _check_export_options(args)
        cfg = _config_from_args(args)
        with _quiet_transformers(progress=not args.quiet):
            summary = commands.export(
                args.model, args.out, cfg, calib=args.calib, nsamples=args.nsamples, seqlen=args.seqlen,
                device=args.device, progress=not args.quiet, embed_type=args.embed_type,
                onnx_flavor=args.onnx_flavor, adapt_threads=args.threads == "auto", resume=args.resume,
                dtype=args.dtype, **_budget_from_args(args),
            )
        print(json.dumps(summary, indent=2))
    elif args.command == "inspect":
        described = commands.inspect(args.file)
        print(json.dumps(described, indent=2) if args.json else commands.format_inspect(described))
    elif args.command == "info":
        d = commands.info()
        print(json.dumps(d, indent=2) if args.json else commands.format_info(d))
    elif args.command == "report":
        from .report import report

        for path in report(args.results_dir):
            print(path)
    elif args.command == "bench":
        return commands.bench(args.what, args.bench_args)
    return 0


def _generate(commands, args: argparse.Namespace) -> None:
    """`run`: stream the generated text to stdout, then one stderr line of speeds; or one JSON object."""
    from .runtime.sampling import SamplerParams

    sampler = SamplerParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, seed=args.seed)

    def stream(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    res = commands.run(args.model, args.prompt, prompt_file=args.prompt_file, n_predict=args.n_predict,
                       threads=args.n_threads, sampler=sampler, n_ctx=args.ctx, stop_at_eos=not args.no_eos,
                       on_text=None if args.json else stream, kv=args.kv)
    if args.json:
        print(json.dumps(res))
        return
    print()
    sys.stdout.flush()
    print(f"prompt: {res['prompt_tokens']} tokens, {res['prompt_tokens_per_second'] or 0.0:.1f} tokens/s | "
          f"decode: {res['n_generated']} tokens, {res['decode_tokens_per_second'] or 0.0:.1f} tokens/s | "
          f"stop: {res['stop_reason']}", file=sys.stderr)  # the line pbs2p-run prints


def _error(message: str) -> int:
    """Print `message` as the one stderr line (newlines inside it folded) and return exit status 2."""
    print(f"pbs2p-edge: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    bounded_spinning()  # before torch is imported
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except Pbs2pError as e:
        return _error(str(e))
    except BrokenPipeError:  # the reader of our output went away (`inspect FILE | head -1`): not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 141  # 128 + SIGPIPE, as a tool killed by the signal reports it
    except OSError as e:  # a file the user named cannot be read or written
        return _error(str(e))
    except KeyboardInterrupt:
        print("pbs2p-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
