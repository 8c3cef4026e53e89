#!/usr/bin/env bash
# Fuzz the GGUF loader (native/fuzz/fuzz_gguf.c) with libFuzzer for SECONDS (default 60): builds build/fuzz with
# clang + ASan/UBSan, mutates a scratch copy of tests/data/fuzz/seeds and writes crashes to tests/data/fuzz/crashes/.
# Usage: scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]. A crash found: minimize it, copy it into
# tests/data/fuzz/regressions/, fix the bug, and check with scripts/test-sanitizers.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
shift || true
if ! command -v clang >/dev/null; then
  echo "scripts/fuzz.sh needs clang with libFuzzer (Debian/Ubuntu: sudo apt-get install clang)" >&2
  exit 2
fi
cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPBS2P_FUZZ=ON \
  -DPBS2P_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build/fuzz -j "$(nproc)" --target pbs2p_fuzz_gguf >/dev/null
DATA=tests/data/fuzz
mkdir -p "$DATA/crashes" build/fuzz/corpus
# the working corpus grows with what libFuzzer finds; it is kept in build/ (not committed), seeded each run
build/fuzz/native/fuzz/pbs2p_fuzz_gguf build/fuzz/corpus "$DATA/seeds" "$DATA/regressions" \
  -max_total_time="$SECONDS_TO_RUN" -max_len=131072 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$DATA/crashes/" -print_final_stats=1 "$@"
