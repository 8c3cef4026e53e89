"""Kernel variant listing, automatic choice, select_kernel and the PBS2P_KERNEL environment variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pbs2p_edge.errors import NativeError
from pbs2p_edge.runtime import available_kernels, kernel_variants, select_kernel, selected_kernel


@pytest.fixture(autouse=True)
def automatic_kernel():
    select_kernel(None)
    yield
    select_kernel(None)


def test_reference_is_always_compiled_and_available():
    assert "ref" in kernel_variants()
    assert "ref" in available_kernels()
    assert set(available_kernels()) <= set(kernel_variants()) <= {"ref", "avx2", "avx512", "neon"}


def test_automatic_choice_is_the_fastest_available():
    assert selected_kernel() == available_kernels()[0]


def test_select_kernel_forces_and_resets():
    for name in available_kernels():
        select_kernel(name)
        assert selected_kernel() == name
    select_kernel(None)
    assert selected_kernel() == available_kernels()[0]


def test_unknown_variant_is_a_native_error():
    with pytest.raises(NativeError, match="unknown kernel variant 'sse9'") as e:
        select_kernel("sse9")
    assert e.value.status == 5  # PBS2P_ERR_NO_KERNEL
    with pytest.raises(NativeError, match="sse9"):
        selected_kernel()


def _run(code: str, kernel: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PBS2P_KERNEL": kernel}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_environment_variable_forces_a_variant():
    for name in available_kernels():
        out = _run("from pbs2p_edge.runtime import selected_kernel; print(selected_kernel())", name)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == name


def test_environment_variable_naming_a_missing_variant_fails_clearly():
    missing = "neon" if "neon" not in kernel_variants() else "avx512"
    code = ("from pbs2p_edge.errors import NativeError\n"
            "from pbs2p_edge.runtime import selected_kernel\n"
            "try:\n    selected_kernel()\nexcept NativeError as e:\n    print(e.status, e)\n")
    out = _run(code, missing)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("5 ") and f"'{missing}'" in out.stdout
