"""Built-in offline corpora `austen:<novel>`: Jane Austen's six novels from Debian's r-cran-janeaustenr package."""

from __future__ import annotations

import glob
import gzip
import os
import shutil
import struct
import subprocess
import tempfile
import warnings
import zlib
from pathlib import Path

from ..errors import DataError

NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
DEB_PACKAGE = "r-cran-janeaustenr"
SYSTEM_DATA = Path("/usr/lib/R/site-library/janeaustenr/data")
_DATA_IN_DEB = Path("usr/lib/R/site-library/janeaustenr/data")


def cache_dir() -> Path:
    """$PBS2P_EDGE_CACHE, else ~/.cache/pbs2p-edge (not created here)."""
    env = os.environ.get("PBS2P_EDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pbs2p-edge"


def _atomic_write_text(path: Path, text: str) -> None:
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


def _fetch_deb(cache: Path) -> Path:
    """A .deb of the package: one already in the cache, else `apt-get download` into the cache."""
    found = sorted(glob.glob(str(cache / f"{DEB_PACKAGE}_*.deb")))
    if found:
        return Path(found[-1])
    if shutil.which("apt-get") is None:
        raise DataError(f"austen corpora need Debian's {DEB_PACKAGE}: apt-get is not available (install the package, or put its .deb in {cache})")
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=cache, capture_output=True, text=True)
    found = sorted(glob.glob(str(cache / f"{DEB_PACKAGE}_*.deb")))
    if proc.returncode != 0 or not found:
        reason = (proc.stderr.strip().splitlines() or ["no .deb produced"])[-1]
        raise DataError(f"apt-get download {DEB_PACKAGE} failed ({reason}); run apt-get update or put the .deb in {cache}")
    return Path(found[-1])


def find_rdata_dir(cache: Path | None = None) -> Path:
    """Directory holding Rdata.rdx/Rdata.rdb: the installed R package, else a .deb extracted into the cache."""
    if (SYSTEM_DATA / "Rdata.rdx").is_file():
        return SYSTEM_DATA
    cache = cache or cache_dir()
    root = cache / "janeaustenr-deb"
    if (root / _DATA_IN_DEB / "Rdata.rdx").is_file():
        return root / _DATA_IN_DEB
    deb = _fetch_deb(cache)
    if shutil.which("dpkg-deb") is None:
        raise DataError(f"cannot unpack {deb.name}: dpkg-deb is not available")
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix="janeaustenr-deb."))
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0 or not (tmp / _DATA_IN_DEB / "Rdata.rdx").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{deb.name} did not unpack to {_DATA_IN_DEB}/Rdata.rdx: {proc.stderr.strip() or 'missing file'}")
    try:
        os.replace(tmp, root)
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return root / _DATA_IN_DEB


def _parse_r(raw: bytes):
    import rdata  # lazily: only the austen corpora need it

    with warnings.catch_warnings():  # rdata warns "Unknown file type: assumed RDS" for these headerless streams
        warnings.simplefilter("ignore")
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def read_rdata_lines(data_dir: Path, name: str) -> list[str]:
    """The character vector `name` of an R lazy-load database (Rdata.rdx index + Rdata.rdb blobs).

    .rdx: gzip of an R serialization, {'variables': {name: [offset, length]}, ...}.
    .rdb at [offset, offset+length): 4-byte big-endian uncompressed size, then a zlib stream of the
    R serialization of that object.
    """
    try:
        index = _parse_r(gzip.decompress((data_dir / "Rdata.rdx").read_bytes()))
        variables = {str(k): v for k, v in index["variables"].items()}
        if name not in variables:
            raise DataError(f"{data_dir}/Rdata.rdx has no object {name!r}; it has {sorted(variables)}")
        offset, length = (int(v) for v in variables[name])
        with open(data_dir / "Rdata.rdb", "rb") as f:
            f.seek(offset)
            blob = f.read(length)
        (size,) = struct.unpack(">I", blob[:4])
        raw = zlib.decompress(blob[4:])
        if len(raw) != size:
            raise DataError(f"Rdata.rdb object {name!r}: {len(raw)} bytes after zlib, header says {size}")
        lines = _parse_r(raw)
    except (OSError, zlib.error, struct.error, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"cannot read {name!r} from {data_dir}: {exc}") from exc
    return [str(line) for line in lines]


def austen_text(novel: str) -> str:
    """Full text of one novel, lines joined with "\\n"; cached as UTF-8 in <cache>/austen/<novel>.txt."""
    if novel not in NOVELS:
        raise DataError(f"unknown Austen novel {novel!r}; choose one of {', '.join(NOVELS)}")
    cache = cache_dir()
    path = cache / "austen" / f"{novel}.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    data_dir = find_rdata_dir(cache)
    text = ""
    for name in NOVELS:  # extract all six at once: the .deb is already unpacked
        lines = "\n".join(read_rdata_lines(data_dir, name))
        _atomic_write_text(cache / "austen" / f"{name}.txt", lines)
        if name == novel:
            text = lines
    return text
