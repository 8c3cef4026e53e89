#!/usr/bin/env bash
# The main job end to end on the embedded default model: set up, compress SmolLM2-135M with PBS2P,
# export it to GGUF and describe the file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/pbs2p-edge export smollm2-135m out/smollm2-135m-pbs2p.gguf --nm 6:8 "$@"
.venv/bin/pbs2p-edge inspect out/smollm2-135m-pbs2p.gguf
