"""A file shipped in a Debian package, without installing it: `apt-get download` the .deb into our cache and unpack it
there once (the built-in offline corpora come this way)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import DataError


def cache_dir() -> Path:
    """$PBS2P_EDGE_CACHE, else ~/.cache/pbs2p-edge (not created here)."""
    env = os.environ.get("PBS2P_EDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pbs2p-edge"


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is readable like any other file
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def fetch_deb(package: str, cache: Path) -> Path:
    """A .deb of the package: one already in the cache, else `apt-get download` into the cache."""
    found = sorted(glob.glob(str(cache / f"{package}_*.deb")))
    if found:
        return Path(found[-1])
    if shutil.which("apt-get") is None:
        raise DataError(f"this corpus needs Debian's {package}: apt-get is not available (install the package, "
                        f"or put its .deb in {cache})")
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    found = sorted(glob.glob(str(cache / f"{package}_*.deb")))
    if proc.returncode != 0 or not found:
        reason = (proc.stderr.strip().splitlines() or ["no .deb produced"])[-1]
        raise DataError(f"apt-get download {package} failed ({reason}); run apt-get update or put the .deb in {cache}")
    return Path(found[-1])


def unpacked(package: str, member: str, cache: Path | None = None) -> Path:
    """Path of `member` (a path inside the package, without the leading /) in the package's .deb unpacked into
    <cache>/<package>-deb, unpacking it there first if needed."""
    cache = cache or cache_dir()
    root = cache / f"{package}-deb"
    if (root / member).exists():
        return root / member
    deb = fetch_deb(package, cache)
    if shutil.which("dpkg-deb") is None:
        raise DataError(f"cannot unpack {deb.name}: dpkg-deb is not available")
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f"{package}-deb."))
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0 or not (tmp / member).exists():
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{deb.name} did not unpack to {member}: {proc.stderr.strip() or 'missing file'}")
    try:
        os.replace(tmp, root)
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return root / member
