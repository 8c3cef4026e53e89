"""The dependency directions of the README's "Layout" section hold, import by import (module-level and inside
functions alike), read from the source with `ast`: each layer imports only what its row allows.

    errors, files, extras     nothing of ours but errors (files: safe writes; extras: what needs an optional extra)
    algo                      errors, and the tiers' value grids (pack.tiers) that GPTQ rounds onto: no I/O
    pack (the packed format)  the base, and the compression record a checkpoint stores (algo.config, torch-free)
    runtime                   the base and pack: the packed format only
    pbs2p_exporters           the base, pack, and runtime's library locator (onnx_read registers the ORT op)
    calib, checkpoint, model  the compression pipeline (PyTorch): the base, pack, algo and each other
    cli, commands, report     anything: the one place that joins compression, export and the runtime
"""

from __future__ import annotations

import ast
import functools
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"pbs2p_edge": ROOT / "pbs2p_edge", "pbs2p_exporters": ROOT / "exporters" / "pbs2p_exporters"}

BASE = ("pbs2p_edge.errors", "pbs2p_edge.files", "pbs2p_edge.extras")
PIPELINE = (*BASE, "pbs2p_edge.pack", "pbs2p_edge.algo", "pbs2p_edge.calib", "pbs2p_edge.checkpoint", "pbs2p_edge.model",
            "pbs2p_edge.free_cores")
# layer (a module name prefix) -> the prefixes of ours it may import (its own always)
ALLOWED: dict[str, tuple[str, ...]] = {
    "pbs2p_edge.errors": (),
    "pbs2p_edge.files": ("pbs2p_edge.errors",),
    "pbs2p_edge.extras": ("pbs2p_edge.errors",),
    "pbs2p_edge.free_cores": (),
    "pbs2p_edge.algo": ("pbs2p_edge.errors", "pbs2p_edge.pack.tiers"),
    "pbs2p_edge.pack": (*BASE, "pbs2p_edge.algo.config", "pbs2p_edge.algo.methods"),
    "pbs2p_edge.runtime": (*BASE, "pbs2p_edge.pack"),
    "pbs2p_exporters": (*BASE, "pbs2p_edge.pack", "pbs2p_edge.runtime.library"),
    "pbs2p_edge.calib": PIPELINE,
    "pbs2p_edge.checkpoint": PIPELINE,
    "pbs2p_edge.model": PIPELINE,
}
TOP = ("pbs2p_edge.cli", "pbs2p_edge.commands", "pbs2p_edge.report", "pbs2p_edge")  # may import anything


def _modules():
    for top, path in PACKAGES.items():
        for f in sorted(path.rglob("*.py")):
            rel = f.relative_to(path).with_suffix("")
            parts = [top, *rel.parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            yield ".".join(parts), is_package, f


def _imports(name: str, is_package: bool, path: Path) -> set[str]:
    """Every module of ours `name` imports, absolute (a module of ours that does not exist is kept: an error)."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # `from . import x` / `from pkg import sub`: a submodule when it is one of ours
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in _ours())
    return {m for m in found if m.split(".")[0] in PACKAGES}


@functools.cache
def _ours() -> frozenset[str]:
    return frozenset(m for m, _, _ in _modules())


def _layer(name: str) -> str | None:
    best = [p for p in ALLOWED if name == p or name.startswith(p + ".")]
    return max(best, key=len) if best else None


def test_every_module_has_a_layer():
    unplaced = [m for m, _, _ in _modules() if _layer(m) is None and m not in TOP]
    assert not unplaced, f"modules in no layer of tests/test_layering.py (and the README's Layout): {unplaced}"


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for name, is_package, path in _modules():
        layer = _layer(name)
        if layer is None:
            continue  # the command line: anything
        allowed = (layer, *ALLOWED[layer])
        for imported in sorted(_imports(name, is_package, path)):
            if imported not in _ours():
                wrong.append(f"{name} imports {imported}, which does not exist")
            elif not any(imported == p or imported.startswith(p + ".") for p in allowed):
                wrong.append(f"{name} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_layout_table_names_every_package_and_top_level_folder():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout"):]
    table = table[:table.index("\n\n", table.index("| path |"))]
    cells = [c.strip().strip("`").rstrip("/") for row in table.splitlines() if row.startswith("| `")
             for c in row.split("|")[1].split(", ")]
    # `cli.py`, `commands.py`: a bare file name follows the first cell's folder
    named = {f"pbs2p_edge/{c}" if "/" not in c and c.endswith(".py") else c for c in cells}
    packages = {f"pbs2p_edge/{p.name}" for p in (ROOT / "pbs2p_edge").iterdir()
                if p.is_dir() and (p / "__init__.py").is_file()}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    folders = {f.split("/")[0] for f in tracked if "/" in f and not f.startswith(".")} or {
        p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}  # outside a git checkout
    missing = sorted(p for p in packages if p not in named) + sorted(
        f for f in folders if not any(n == f or n.startswith(f + "/") for n in named))
    assert not missing, f"the README's Layout table does not name {missing}"
    gone = sorted(n for n in named if "*" not in n and not (ROOT / n).exists())
    assert not gone, f"the README's Layout table names paths that do not exist: {gone}"
