"""C status codes become NativeError with the library's one-line message and the numeric status."""

from __future__ import annotations

import pytest

from pbs2p_edge.errors import NativeError, Pbs2pError
from pbs2p_edge.runtime._ffi import ffi, lib
from pbs2p_edge.runtime.status import check


def test_ok_passes():
    check(lib.PBS2P_OK, "nothing")


def test_failure_carries_the_c_detail_and_status():
    desc = ffi.new("pbs2p_layer_desc *")
    desc.format_version, desc.rows, desc.cols, desc.n, desc.m = 1, 4, 12, 4, 8
    desc.group_size, desc.split = 8, 1
    status = lib.pbs2p_layer_sizes_of(desc, ffi.NULL)
    with pytest.raises(NativeError, match=r"^sizes: layer 4x12: .*multiple of M=8 \(status 2\)$") as e:
        check(status, "sizes")
    assert e.value.status == lib.PBS2P_ERR_ARGUMENT
    assert isinstance(e.value, Pbs2pError)


def test_version_mismatch_is_its_own_status():
    desc = ffi.new("pbs2p_layer_desc *")
    desc.format_version = 2
    assert lib.pbs2p_layer_sizes_of(desc, ffi.NULL) == lib.PBS2P_ERR_VERSION
    assert ffi.string(lib.pbs2p_status_str(lib.PBS2P_ERR_VERSION)) == b"unsupported packed format version"
