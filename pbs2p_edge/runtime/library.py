"""Where the shared library libpbs2p is: PBS2P_LIBRARY, the installed package, or the editable install's wheel tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from ..errors import NativeError

ENV_VAR = "PBS2P_LIBRARY"  # explicit path to a libpbs2p shared library (e.g. a plain CMake build)


def library_filename() -> str:
    if sys.platform == "win32":
        return "pbs2p.dll"
    if sys.platform == "darwin":
        return "libpbs2p.dylib"
    return "libpbs2p.so"


def candidate_paths() -> list[Path]:
    """Places tried in order. pip install puts the library in pbs2p_edge/runtime/lib/; an editable
    install (scikit-build-core redirect mode) leaves the sources here and puts it in site-packages."""
    name = library_filename()
    out = [Path(__file__).resolve().parent / "lib" / name]
    for key in ("platlib", "purelib"):
        out.append(Path(sysconfig.get_paths()[key]) / "pbs2p_edge" / "runtime" / "lib" / name)
    return out


def find_library() -> Path:
    """The path of libpbs2p to load, or NativeError saying how to build it."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise NativeError(-1, f"{ENV_VAR}={explicit} does not name a file")
        return path
    tried = candidate_paths()
    for path in tried:
        if path.is_file():
            return path
    raise NativeError(-1, "libpbs2p is not built: run `pip install -e . --no-deps --no-build-isolation` (or "
                      f"`pip install .`) in the project, or set {ENV_VAR}; looked in "
                      + ", ".join(str(p.parent) for p in tried))


def find_cli() -> str | None:
    """The pbs2p-run to call: $PBS2P_RUN, pbs2p-run on PATH, or the newest CMake build under this source tree
    (build/*/native/) that runs on this machine (scripts/test-aarch64.sh leaves an AArch64 one there); None if none."""
    if os.environ.get("PBS2P_RUN"):
        return os.environ["PBS2P_RUN"]
    found = shutil.which("pbs2p-run")
    if found:
        return found
    builds = (Path(__file__).resolve().parents[2] / "build").glob("*/native/pbs2p-run")
    for built in sorted(builds, key=os.path.getmtime, reverse=True):
        try:
            subprocess.run([str(built), "--version"], capture_output=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError):
            continue
        return str(built)
    return None
