"""The optional extras and what needs them: a device that only runs GGUF files installs the core (numpy, cffi, gguf).

pyproject.toml declares the same lists; tests/test_extras.py keeps the two equal. A command that needs a missing
extra stops before any work with one MissingExtra line naming what to install.
"""

from __future__ import annotations

import importlib.util

# extra -> the top-level modules it provides (the pip names are pyproject.toml's)
EXTRAS: dict[str, tuple[str, ...]] = {
    # compression, evaluating a model with PyTorch, checkpoints (safetensors) and exporting them
    "compress": ("torch", "transformers", "accelerate", "safetensors", "tokenizers", "tqdm", "rdata"),
    # the ONNX export and inspecting an .onnx file (onnxruntime runs it)
    "onnx": ("onnx", "onnxruntime"),
    # the built-in Jane Austen texts (R data files), for evaluating a GGUF where nothing else is installed
    "corpora": ("rdata",),
}


def missing(extra: str) -> list[str]:
    """The modules of `extra` this interpreter cannot import."""
    absent = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a finder that refuses it, or a module without a spec
            found = False
        if not found:
            absent.append(module)
    return absent


def require(extra: str, what: str) -> None:
    """MissingExtra unless every module of `extra` can be imported; `what` says what needs it."""
    from .errors import MissingExtra

    absent = missing(extra)
    if absent:
        hint = " (install torch==2.13.0 first for the CPU build)" if "torch" in absent else ""
        raise MissingExtra(f"{what} needs the [{extra}] extra, not installed here (missing: {', '.join(absent)}): "
                           f"pip install 'pbs2p-edge[{extra}]'{hint}")
