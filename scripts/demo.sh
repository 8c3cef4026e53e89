#!/usr/bin/env bash
# The main job end to end on the embedded default model: set up, compress SmolLM2-135M with PBS2P,
# export it to GGUF and describe the file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
# 32 x 512 calibration tokens keep the demo to minutes on 2 cores (the papers use 128 x 2048:
# pass --nsamples 128 --seqlen 2048); options given to this script override these.
.venv/bin/pbs2p-edge export smollm2-135m out/smollm2-135m-pbs2p.gguf --nm 6:8 --nsamples 32 --seqlen 512 "$@"
.venv/bin/pbs2p-edge inspect out/smollm2-135m-pbs2p.gguf
