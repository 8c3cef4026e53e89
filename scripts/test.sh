#!/usr/bin/env bash
# Run the whole test suite after setting up: the native C tests (ctest) and the Python tests;
# slow real-model runs are excluded (-m "not slow"), one short real-model test stays in.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/ctest -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/ctest -j 2 >/dev/null
ctest --test-dir build/ctest --output-on-failure
.venv/bin/python -m pytest -m "not slow" -q "$@"
