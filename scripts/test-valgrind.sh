#!/usr/bin/env bash
# valgrind --leak-check=full on the C CLI pbs2p-run running a tiny model: generation (greedy and sampled),
# perplexity, tokenization, and refused inputs. Any valgrind error or leak fails (--error-exitcode).
# Valgrind does not emulate AVX-512, so the AVX2 variant (or the reference, PBS2P_KERNEL) is the one checked.
# Idempotent: installs Debian's valgrind only when missing; reuses build/valgrind; needs the project's Python
# environment (scripts/setup.sh) to write the tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    sudo_=()
    if [ "$(id -u)" -ne 0 ]; then sudo_=(sudo); fi
    echo "test-valgrind: installing valgrind"
    "${sudo_[@]}" apt-get install -y --no-install-recommends valgrind || {
        "${sudo_[@]}" apt-get update && "${sudo_[@]}" apt-get install -y --no-install-recommends valgrind; }
fi
source scripts/venv_python.sh

build=build/valgrind
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPBS2P_BUILD_TESTS=OFF -DPBS2P_BUILD_EXAMPLES=OFF \
    -DPBS2P_BUILD_STATIC=OFF -DPBS2P_BUILD_CLI=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target pbs2p_run >/dev/null
run="$build/native/pbs2p-run"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" scripts/tiny_llama_gguf.py "$work/tiny.gguf"
"$PY" scripts/tiny_llama_gguf.py "$work/tiered.gguf" --tiered  # the integer dense products (grid tiers, Q4_0 head)
printf 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.\n%.0s' {1..6} >"$work/text.txt"
printf 'x' >"$work/short.txt"

export PBS2P_KERNEL="${PBS2P_KERNEL:-avx2}"
if [ "$(uname -m)" != "x86_64" ]; then export PBS2P_KERNEL=ref; fi
vg=(valgrind --quiet --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=99
    --track-origins=yes)
runs=0
check() {  # expected exit status, then the pbs2p-run arguments
    local want=$1
    runs=$((runs + 1))
    shift
    local rc=0
    "${vg[@]}" "$run" "$@" >"$work/out" 2>"$work/err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        cat "$work/err" >&2
        echo "test-valgrind: pbs2p-run $* exited $rc, expected $want (99 = valgrind found errors or leaks)" >&2
        exit 1
    fi
}
check 0 -m "$work/tiny.gguf" -p "hello world" -n 12 -t 2 --json
check 0 -m "$work/tiny.gguf" -p "hello world" -n 12 -t 1 --temp 0.9 --top-k 20 --top-p 0.9 --seed 3 --no-eos
check 0 -m "$work/tiny.gguf" --perplexity "$work/text.txt" --ctx 32 -t 2 --json
check 0 -m "$work/tiny.gguf" --tokenize "$work/text.txt"
check 0 -m "$work/tiered.gguf" -p "hello world" -n 12 -t 2 --json
check 0 -m "$work/tiered.gguf" --perplexity "$work/text.txt" --ctx 32 -t 2 --json
check 2 -m "$work/tiny.gguf" --perplexity "$work/short.txt" --ctx 32            # text shorter than one window
check 2 -m "$work/tiny.gguf" -p "$(printf 'word %.0s' {1..100})" -n 4 --ctx 16   # prompt longer than the context
check 2 -m "$work/missing.gguf" -p "hi"                                          # missing file
check 2 -m "$work/text.txt" -p "hi"                                              # not a GGUF
echo "test-valgrind: pbs2p-run under valgrind ($PBS2P_KERNEL kernels): no errors, no leaks in $runs runs"
