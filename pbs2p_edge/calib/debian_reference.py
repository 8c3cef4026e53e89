"""Built-in offline corpus `debian-reference`: the Debian Reference manual (plain English text) from Debian's
debian-reference-en package.

An evaluation text of another kind than the Austen novels: present-day technical prose on system administration, with
shell commands, file paths and tables. Calibrating on one novel and evaluating on another flatters every method; this
text tells whether a conclusion holds outside 19th-century fiction.
"""

from __future__ import annotations

import gzip
import re

from ..errors import DataError
from .debian_deb import atomic_write_text, cache_dir, unpacked

NAME = "debian-reference"
DEB_PACKAGE = "debian-reference-en"
_TEXT_IN_DEB = "usr/share/debian-reference/debian-reference.en.txt.gz"
# The manual's body begins at its first chapter's heading ("Chapter 1." and the title, the spaces no-break ones);
# before it come the title page and the tables of contents, lists of headings unlike the rest of the text.
BODY_START = re.compile(r"^Chapter\s1\.\s", re.MULTILINE)


def body(manual: str) -> str:
    """The manual from its first chapter's heading on; DataError when there is none."""
    found = BODY_START.search(manual)
    if found is None:
        raise DataError("the Debian Reference text has no 'Chapter 1.' heading")
    return manual[found.start():]


def debian_reference_text() -> str:
    """The manual's body, cached as UTF-8 in <cache>/debian-reference.txt."""
    path = cache_dir() / f"{NAME}.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    packed = unpacked(DEB_PACKAGE, _TEXT_IN_DEB)
    try:
        text = body(gzip.decompress(packed.read_bytes()).decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {packed}: {exc}") from exc
    atomic_write_text(path, text)
    return text
