#!/usr/bin/env bash
# The main job end to end on the embedded default model: set up, compress SmolLM2-135M with the default recipe
# (a bit budget over mixed tiers, GPTQ-compensated), export it to GGUF, describe the file, and run it with
# libpbs2p (generation and perplexity, no PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
# 32 x 512 calibration tokens keep the demo to minutes on 2 cores (the papers use 128 x 2048:
# pass --nsamples 128 --seqlen 2048); options given to this script override these (--bpw 3 for a smaller file,
# --method pbs2p --nm 6:8 for the paper's binary structure).
.venv/bin/pbs2p-edge export smollm2-135m out/smollm2-135m.gguf --nsamples 32 --seqlen 512 "$@"
.venv/bin/pbs2p-edge inspect out/smollm2-135m.gguf
# libpbs2p runs the file: a greedy continuation, then perplexity on 4 windows of 512 tokens of Pride and Prejudice
.venv/bin/pbs2p-edge run out/smollm2-135m.gguf -p "It is a truth universally acknowledged," -n 48 -t 2
.venv/bin/pbs2p-edge eval out/smollm2-135m.gguf --data austen:prideprejudice --seqlen 512 --max-windows 4 --threads 2
