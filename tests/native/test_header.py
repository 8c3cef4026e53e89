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


def test_integer_defines_declared_for_cffi_match_the_header():
    declared = re.findall(r"#define (PBS2P_[A-Z_]+) (\d+)\n", CDEF)
    assert declared
    header = dict(re.findall(r"#define (PBS2P_[A-Z_]+) (\d+)\b", HEADER.read_text()))
    for name, value in declared:
        assert header[name] == value and getattr(lib, name) == int(value)


def test_status_codes_match_the_header():
    text = HEADER.read_text()
    for name, value in re.findall(r"(PBS2P_(?:OK|ERR_[A-Z_]+)) = (\d+)", text):
        assert getattr(lib, name) == int(value)


STRUCT = re.compile(r"typedef struct (pbs2p_[a-z0-9_]+) \{")


def test_every_struct_has_the_compiled_headers_layout(tmp_path):
    """In ABI mode cffi trusts CDEF's field list: a field reordered, resized or added in pbs2p.h would be misread
    silently. A C program compiled against the header prints each struct's size and each field's offset and size,
    and they must be cffi's, for every struct the header defines."""
    import shutil
    import subprocess

    from pbs2p_edge.runtime._ffi import ffi

    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "no C compiler: the native build needs one too"
    structs = STRUCT.findall(HEADER.read_text())
    assert len(structs) >= 10 and set(structs) <= set(STRUCT.findall(CDEF))
    lines, expected = [], []
    for s in structs:
        lines.append(f'printf("{s} %zu\\n", sizeof({s}));')
        expected.append(f"{s} {ffi.sizeof(s)}")
        for name, field in ffi.typeof(s).fields:
            lines.append(f'printf("{s}.{name} %zu %zu\\n", offsetof({s}, {name}), sizeof((({s} *)0)->{name}));')
            expected.append(f"{s}.{name} {field.offset} {ffi.sizeof(field.type)}")
    src = tmp_path / "layout.c"
    src.write_text('#include <stddef.h>\n#include <stdio.h>\n#include "pbs2p.h"\nint main(void) {\n'
                   + "\n".join(lines) + "\nreturn 0;\n}\n")
    subprocess.run([cc, "-std=c11", f"-I{HEADER.parent}", str(src), "-o", str(tmp_path / "layout")], check=True)
    got = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True, check=True).stdout.splitlines()
    assert got == expected
