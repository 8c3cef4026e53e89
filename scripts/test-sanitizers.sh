#!/usr/bin/env bash
# libpbs2p under AddressSanitizer + UndefinedBehaviorSanitizer (any GCC or Clang, no libFuzzer): builds the library
# and the ctest tests into build/asan, runs ctest (which includes fuzz_regressions and fuzz_tokenizer_regressions:
# every seed and regression input of tests/data/fuzz and tests/data/fuzz/tokenizer through the fuzz targets'
# plain-main replays), then replays those inputs once more with leak detection reported per input set. Any
# sanitizer finding fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-cc}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cmake -S . -B build/asan -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPBS2P_SANITIZE=ON \
  -DPBS2P_BUILD_TESTS=ON -DPBS2P_BUILD_STATIC=ON -DPBS2P_BUILD_EXAMPLES=ON >/dev/null
cmake --build build/asan -j "$(nproc)" >/dev/null
ctest --test-dir build/asan --output-on-failure -j "$(nproc)"
build/asan/native/fuzz/pbs2p_fuzz_replay tests/data/fuzz/seeds
build/asan/native/fuzz/pbs2p_fuzz_replay tests/data/fuzz/regressions
build/asan/native/fuzz/pbs2p_fuzz_tokenizer_replay tests/data/fuzz/tokenizer/seeds
build/asan/native/fuzz/pbs2p_fuzz_tokenizer_replay tests/data/fuzz/tokenizer/regressions
