"""Makes tests/pack/layer_arrays.py (random LayerResult-contract arrays) importable from the runtime tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pack"))
