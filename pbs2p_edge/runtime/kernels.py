"""Which libpbs2p kernel variants are compiled in, which one runs, and forcing one (like PBS2P_KERNEL)."""

from __future__ import annotations

from ._ffi import ffi, lib
from .status import check


def kernel_variants() -> list[str]:
    """Variants compiled into the loaded library, fastest first (e.g. ['avx512', 'avx2', 'ref'])."""
    count = lib.pbs2p_kernel_variants(ffi.NULL, 0)
    names = ffi.new("const char *[]", count)
    lib.pbs2p_kernel_variants(names, count)
    return [ffi.string(names[k]).decode() for k in range(count)]


def available_kernels() -> list[str]:
    """The compiled variants this CPU can run."""
    return [v for v in kernel_variants() if lib.pbs2p_kernel_available(v.encode())]


def selected_kernel() -> str:
    """The variant gemv/gemm use now; NativeError when PBS2P_KERNEL forces one that is unavailable."""
    name = lib.pbs2p_kernel_name()
    if name == ffi.NULL:
        check(lib.PBS2P_ERR_NO_KERNEL, "kernel selection")
    return ffi.string(name).decode()


def select_kernel(name: str | None) -> None:
    """Force a variant for this process; None goes back to PBS2P_KERNEL or the automatic choice."""
    check(lib.pbs2p_kernel_select(name.encode() if name is not None else ffi.NULL), f"select kernel {name!r}")
