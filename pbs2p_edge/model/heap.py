"""Give the C heap's free pages back to the system between the large steps of a compression.

Why: the GPTQ loops allocate and free many tensors of a few MB (a 11008 x 128 column block is 5.6 MB). glibc serves
those from its heaps, and a freed chunk below a live one is not returned, so a process that has compressed a 7B
model's MLP keeps about 0.6 GB it no longer uses (measured: peak 4.99 GiB per block against 4.36 with every chunk
over 1 MB mapped on its own). malloc_trim(0) releases every free page of every heap; it changes no value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _trim():
    """glibc's malloc_trim, or None (another C library, another system)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_heap() -> None:
    """Return the heaps' free pages to the system where the C library can (glibc); a no-op elsewhere."""
    trim = _trim()
    if trim is not None:
        trim(0)
