#!/usr/bin/env bash
# Run the whole test suite (Python + native ctest) after setting up; slow real-model runs are excluded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -m "not slow" -q "$@"
