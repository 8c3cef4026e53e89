"""The shared library is found where pip put it, and PBS2P_LIBRARY overrides the search."""

from __future__ import annotations

import os
import subprocess
import sys

from pbs2p_edge.runtime import library_path
from pbs2p_edge.runtime.library import library_filename


def test_loaded_library_exists_and_is_versioned():
    path = library_path()
    assert path.is_file() and path.name == library_filename()
    from pbs2p_edge.runtime._ffi import ffi, lib
    assert ffi.string(lib.pbs2p_version()) == b"0.1.0"


def test_bad_override_is_a_native_error():
    env = {**os.environ, "PBS2P_LIBRARY": "/nonexistent/libpbs2p.so"}
    code = ("from pbs2p_edge.errors import NativeError\n"
            "try:\n    import pbs2p_edge.runtime\nexcept NativeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "PBS2P_LIBRARY=/nonexistent/libpbs2p.so does not name a file" in out.stdout
