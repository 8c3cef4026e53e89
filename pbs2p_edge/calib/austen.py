"""Built-in offline corpora `austen:<novel>`: Jane Austen's six novels from Debian's r-cran-janeaustenr package."""

from __future__ import annotations

import gzip
import struct
import warnings
import zlib
from pathlib import Path

from ..errors import DataError
from .debian_deb import atomic_write_text, cache_dir, unpacked

NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
DEB_PACKAGE = "r-cran-janeaustenr"
SYSTEM_DATA = Path("/usr/lib/R/site-library/janeaustenr/data")
_DATA_IN_DEB = Path("usr/lib/R/site-library/janeaustenr/data")


def find_rdata_dir(cache: Path | None = None) -> Path:
    """Directory holding Rdata.rdx/Rdata.rdb: the installed R package, else its .deb unpacked into the cache."""
    if (SYSTEM_DATA / "Rdata.rdx").is_file():
        return SYSTEM_DATA
    return unpacked(DEB_PACKAGE, str(_DATA_IN_DEB / "Rdata.rdx"), cache).parent


def _parse_r(raw: bytes):
    from ..extras import require

    require("corpora", "the austen:* texts")  # lazily: only the austen corpora need rdata
    import rdata

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
        atomic_write_text(cache / "austen" / f"{name}.txt", lines)
        if name == novel:
            text = lines
    return text
