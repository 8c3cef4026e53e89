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
import json
import sys

from . import __version__
from .errors import ConfigError, Pbs2pError

DEFAULT_MODEL = "smollm2-135m"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit code 2, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _int_at_least(minimum: int):
    """argparse type: a whole number >= minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _add_compress_options(p: argparse.ArgumentParser, default_nm: str) -> None:
    from .algo.config import METHODS

    g = p.add_argument_group("compression")
    g.add_argument("--method", default="pbs2p", help=f"one of: {', '.join(METHODS)} (default pbs2p)")
    g.add_argument("--nm", default=default_nm, help=f"N:M, N kept of every M (default {default_nm})")
    g.add_argument("--calib", default="austen:emma", help="calibration text: austen:<novel>, wikitext2, c4, ptb or a file")
    g.add_argument("--nsamples", type=_positive_int, default=128, help="calibration windows (default 128)")
    g.add_argument("--seqlen", type=_positive_int, default=2048, help="tokens per calibration window (default 2048)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--preset", choices=("paper", "compact"), default="paper",
                   help="structure: paper (salient columns + split groups, ~3.5 bits/weight) or compact "
                        "(one alpha/mu per row, ~1.4 bits/weight); the options below override it")
    g.add_argument("--block-size", type=_non_negative_int, default=None,
                   help="GPTQ column block and scale group (default 128; 0 = whole row)")
    g.add_argument("--salient", choices=("auto", "on", "off"), default="auto", help="salient columns (2nd-order)")
    g.add_argument("--split-groups", type=int, choices=(1, 2, 3), default=None, help="non-salient magnitude groups")
    g.add_argument("--intra-block-update", choices=("auto", "on", "off"), default="auto",
                   help="GPTQ error feedback between columns inside a block")
    g.add_argument("--no-cfs", action="store_true", help="PBS2P: same N in every layer (no coarse CFS stage)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (one block on the device at a time)")
    g.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is faster when other jobs share the cores)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _config_from_args(args: argparse.Namespace):
    from .algo.config import PRESETS, CompressConfig, parse_nm

    n, m = parse_nm(args.nm)
    fields = dict(PRESETS[args.preset])
    if args.block_size is not None:
        fields["block_size"] = args.block_size
    if args.salient != "auto":
        fields["salient"] = args.salient == "on"
    if args.split_groups is not None:
        fields["split_groups"] = args.split_groups
    if args.intra_block_update != "auto":
        fields["intra_block_update"] = args.intra_block_update == "on"
    return CompressConfig(method=args.method, n=n, m=m, cfs=not args.no_cfs, seed=args.seed, **fields)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pbs2p-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("compress", help="compress a Hugging Face causal LM into a checkpoint directory")
    p.add_argument("model", help=f"model source: alias ({DEFAULT_MODEL}), local dir, .gguf file or hub id")
    p.add_argument("out_dir", help="checkpoint directory to write (replaced atomically)")
    _add_compress_options(p, default_nm="6:8")

    p = sub.add_parser("eval", help="perplexity of a model or compressed checkpoint")
    p.add_argument("model", help="model source or compressed checkpoint directory")
    p.add_argument("--data", default="austen:prideprejudice", help="evaluation text (default austen:prideprejudice)")
    p.add_argument("--seqlen", type=_positive_int, default=2048)
    p.add_argument("--max-windows", type=_positive_int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("export", help="compress if needed, then write a GGUF or ONNX file")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"model source or checkpoint (default {DEFAULT_MODEL})")
    p.add_argument("out", help="output file: .gguf or .onnx")
    p.add_argument("--embed-type", choices=("f16", "q8_0"), default="f16", help="embeddings/head storage")
    p.add_argument("--onnx-flavor", choices=("custom", "portable"), default="custom",
                   help="ONNX: custom ai.pbs2p PackedLinear op, or stock operators only (docs/ONNX.md)")
    _add_compress_options(p, default_nm="6:8")

    p = sub.add_parser("inspect", help="describe a GGUF file or checkpoint: layers, N:M, honest bits per weight")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("info", help="versions, the native library libpbs2p and its kernel variants")
    p.add_argument("--json", action="store_true")
    return parser


@contextlib.contextmanager
def _quiet_transformers(progress: bool):
    """Keep stderr for our own lines: transformers' advisory warnings and its own progress bars
    ("Loading weights", instant for the models we take) off; the hub's download bars kept only when
    `progress`. Everything is restored after, so calling main() in-process leaves the libraries as they were."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars, hub_bars = hf_logging.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # also turns the hub's bars off
    if progress and hub_bars:
        hub_utils.enable_progress_bars()
    # The GGUF loader ("Converting and de-quantizing GGUF tensors...") uses a plain tqdm that no
    # transformers setting reaches; silence that one name while quiet.
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        import importlib

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
        if bars:
            hf_logging.enable_progress_bar()  # also turns the hub's bars on
        if not hub_bars:
            hub_utils.disable_progress_bars()
        elif not bars:
            hub_utils.enable_progress_bars()


def _run(args: argparse.Namespace) -> int:
    from . import commands

    if getattr(args, "threads", None):
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        try:
            return _run_command(commands, args)
        finally:
            torch.set_num_threads(before)  # main() may be called in-process (tests, notebooks)
    return _run_command(commands, args)


def _run_command(commands, args: argparse.Namespace) -> int:
    if args.command == "compress":
        cfg = _config_from_args(args)
        with _quiet_transformers(progress=not args.quiet):
            summary = commands.compress(
                args.model, args.out_dir, cfg, calib=args.calib, nsamples=args.nsamples,
                seqlen=args.seqlen, device=args.device, progress=not args.quiet,
            )
        print(json.dumps(summary, indent=2))
    elif args.command == "eval":
        with _quiet_transformers(progress=False):
            res = commands.evaluate(args.model, args.data, args.seqlen, args.max_windows, args.device)
        if args.json:
            print(json.dumps(res))
        else:
            print(f"ppl {res['ppl']:.4f} over {res['windows']} windows ({res['tokens']} tokens predicted)")
    elif args.command == "export":
        cfg = _config_from_args(args)
        with _quiet_transformers(progress=not args.quiet):
            summary = commands.export(
                args.model, args.out, cfg, calib=args.calib, nsamples=args.nsamples, seqlen=args.seqlen,
                device=args.device, progress=not args.quiet, embed_type=args.embed_type,
                onnx_flavor=args.onnx_flavor,
            )
        print(json.dumps(summary, indent=2))
    elif args.command == "inspect":
        described = commands.inspect(args.file)
        print(json.dumps(described, indent=2) if args.json else commands.format_inspect(described))
    elif args.command == "info":
        d = commands.info()
        print(json.dumps(d, indent=2) if args.json else commands.format_info(d))
    return 0


def _error(message: str) -> int:
    """Print `message` as the one stderr line (newlines inside it folded) and return exit status 2."""
    print(f"pbs2p-edge: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except Pbs2pError as e:
        return _error(str(e))
    except OSError as e:  # a file the user named cannot be read or written
        return _error(str(e))
    except KeyboardInterrupt:
        print("pbs2p-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
