#!/usr/bin/env bash
# Cross-build libpbs2p for AArch64 (Raspberry Pi) and run its C tests under qemu user emulation: the NEON
# kernel variant is compiled in and checked against the scalar reference by test_kernels; then a tiny Llama's
# forward (scripts/tiny_llama_gguf.py, seed 0) runs on both architectures (native/tests/model_logits.c) and the
# AArch64 logits must equal the x86 ones up to summation order (max |difference| <= 1e-5 x the logit range).
# Idempotent: installs Debian's cross compiler and qemu-user only when missing; reuses build/aarch64.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv_python.sh

need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null 2>&1 || command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
if ((${#need[@]})); then
    sudo_=()
    if [ "$(id -u)" -ne 0 ]; then sudo_=(sudo); fi
    echo "test-aarch64: installing ${need[*]}"
    if ! "${sudo_[@]}" apt-get install -y --no-install-recommends "${need[@]}"; then
        "${sudo_[@]}" apt-get update
        "${sudo_[@]}" apt-get install -y --no-install-recommends "${need[@]}"
    fi
fi

build=build/aarch64
cmake -S . -B "$build" -G "$(command -v ninja >/dev/null 2>&1 && echo Ninja || echo 'Unix Makefiles')" \
    -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchains/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release \
    -DPBS2P_BUILD_TESTS=ON -DPBS2P_BUILD_STATIC=ON -DPBS2P_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

# The binaries must really be AArch64, and the NEON variant must be in the library the tests run.
file_type=$(od -An -tx1 -j18 -N2 "$build/native/test_kernels" | tr -d ' ')
if [ "$file_type" != "b700" ]; then  # ELF e_machine 183 = EM_AARCH64, little-endian
    echo "test-aarch64: $build/native/test_kernels is not an AArch64 executable (e_machine $file_type)" >&2
    exit 1
fi
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
log="$build/ctest-output.log"
if ! ctest --test-dir "$build" -V --timeout 600 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "test-aarch64: ctest failed under qemu-aarch64; full output in $log" >&2
    exit 1
fi
grep -E "tests passed|Passed|Failed" "$log" || true
if grep -q "variants: neon ref; automatic: neon" "$log" && grep -q "all kernel checks passed" "$log"; then
    echo "test-aarch64: NEON variant checked against the reference: ok"
else
    echo "test-aarch64: expected the neon variant compiled in, chosen and passing; see $log" >&2
    exit 1
fi

# The same model's forward on both architectures. NEON and AVX2/AVX-512 sum in a different order (float32), so the
# logits agree to rounding, not bit for bit: the bound is relative to the spread of the logits.
host=build/aarch64-x86-reference
cmake -S . -B "$host" -DCMAKE_BUILD_TYPE=Release -DPBS2P_BUILD_TESTS=ON -DPBS2P_BUILD_STATIC=ON \
    -DPBS2P_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$host" -j "$(nproc)" --target model_logits >/dev/null
tokens=(0 5 17 42 99 200 319 1)
qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64)
# The packed model, then one with every tier (the integer dense products of the grid tiers and a Q4_0 head).
for kind in packed tiered; do
    gguf="$build/tiny_llama_$kind.gguf"
    "$PY" scripts/tiny_llama_gguf.py "$gguf" $([ "$kind" = tiered ] && echo --tiered) >/dev/null
    "$host/native/model_logits" "$gguf" "$build/logits-x86.f32" "${tokens[@]}" >/dev/null
    "$qemu" -L /usr/aarch64-linux-gnu "$build/native/model_logits" "$gguf" "$build/logits-aarch64.f32" "${tokens[@]}" \
        >/dev/null
    "$PY" - "$build/logits-x86.f32" "$build/logits-aarch64.f32" "$kind" <<'PY'
import sys
import numpy as np
x86, arm = (np.fromfile(p, dtype="<f4").astype(np.float64) for p in sys.argv[1:3])
assert x86.size == arm.size and x86.size > 0, (x86.size, arm.size)
span = x86.max() - x86.min()
diff = float(np.abs(x86 - arm).max())
print(f"test-aarch64: {sys.argv[3]} model, logits of {x86.size} values, max |x86 - aarch64| = {diff:.3g} "
      f"({diff / span:.3g} of the logit range {span:.3g}; bound 1e-5)")
sys.exit(0 if np.isfinite(x86).all() and diff <= 1e-5 * span else 1)
PY
done
echo "test-aarch64: the AArch64 forward matches x86: ok"
