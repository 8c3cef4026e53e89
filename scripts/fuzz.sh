#!/usr/bin/env bash
# Fuzz one libpbs2p target with libFuzzer for SECONDS (default 60): builds build/fuzz with clang + ASan/UBSan,
# mutates a working corpus kept in build/fuzz/corpus-TARGET (not committed) seeded from the target's seeds and
# regressions, and writes crashes to the target's crashes/ directory.
#   gguf       native/fuzz/fuzz_gguf.c: GGUF reader, pbs2p linears, model load + eval.
#              data: tests/data/fuzz/{seeds,regressions,crashes}
#   tokenizer  native/fuzz/fuzz_tokenizer.c: tokenizer load, tokenize / detokenize invariants.
#              input: u32 little-endian GGUF length, the GGUF, then the text (native/fuzz/fuzz_tokenizer.c);
#              data: tests/data/fuzz/tokenizer/{seeds,regressions,crashes}
# Usage: scripts/fuzz.sh [gguf|tokenizer] [SECONDS] [extra libFuzzer flags...] (a first argument that is a number
# means gguf). One process (nice it on a shared machine: nice -n 19 scripts/fuzz.sh ...). A crash found: minimize
# it (-minimize_crash=1), copy it into the target's regressions/, fix the bug, and check with
# scripts/test-sanitizers.sh (ctest replays every seed and regression of both targets).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=gguf
case "${1:-}" in
  gguf|tokenizer) TARGET=$1; shift ;;
  ''|[0-9]*) ;;
  *) echo "scripts/fuzz.sh: unknown target '$1' (gguf or tokenizer)" >&2; exit 2 ;;
esac
SECONDS_TO_RUN=${1:-60}
shift || true
if ! command -v clang >/dev/null; then
  echo "scripts/fuzz.sh needs clang with libFuzzer (Debian/Ubuntu: sudo apt-get install clang)" >&2
  exit 2
fi
cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPBS2P_FUZZ=ON \
  -DPBS2P_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build/fuzz -j "$(nproc)" --target "pbs2p_fuzz_$TARGET" >/dev/null
if [ "$TARGET" = gguf ]; then
  DATA=tests/data/fuzz MAX_LEN=131072
else
  DATA=tests/data/fuzz/tokenizer MAX_LEN=65536
fi
mkdir -p "$DATA/crashes" "build/fuzz/corpus-$TARGET"
"build/fuzz/native/fuzz/pbs2p_fuzz_$TARGET" "build/fuzz/corpus-$TARGET" "$DATA/seeds" "$DATA/regressions" \
  -max_total_time="$SECONDS_TO_RUN" -max_len="$MAX_LEN" -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$DATA/crashes/" -print_final_stats=1 "$@"
