"""The cffi declarations (runtime/_ffi.py) cover the public header native/include/pbs2p.h exactly."""

from __future__ import annotations

import re
from pathlib import Path

from pbs2p_edge.runtime._ffi import CDEF, lib

HEADER = Path(__file__).resolve().parents[2] / "native" / "include" / "pbs2p.h"
FUNC = re.compile(r"\b(pbs2p_[a-z0-9_]+)\s*\(")


def test_every_header_function_is_declared_for_cffi():
    declared_in_header = set(FUNC.findall(HEADER.read_text()))
    declared_for_cffi = set(FUNC.findall(CDEF))
    assert declared_in_header == declared_for_cffi
    for name in declared_in_header:
        assert callable(getattr(lib, name))


def test_status_codes_match_the_header():
    text = HEADER.read_text()
    for name, value in re.findall(r"(PBS2P_(?:OK|ERR_[A-Z_]+)) = (\d+)", text):
        assert getattr(lib, name) == int(value)
