"""Makes two tiny exports from scratch and prints the SHA-256 of every byte our writers produced, one JSON object.

Run by tests/test_pinned_bytes.py in a fresh interpreter whose environment pins torch's arithmetic to one order on any
x86-64 CPU (ATEN_CPU_CAPABILITY=default, MKL_CBWR=COMPATIBLE, one thread): a random tiny Llama (tests/conftest.py),
compressed twice through the command line -- PBS2P 4:8 in the paper's structure, and a 4-bit budget with tiers and
two recovery steps -- each checkpoint exported to GGUF. Hashed: the checkpoint's own files (packed layers, grid
tiers, dense tensors, the metadata but for its `extra`, which holds the run's paths and timings) and the GGUF; not
config.json and the tokenizer files, which transformers writes
(its version is in them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import TINY_TEXT, make_tiny_llama, make_tiny_tokenizer  # noqa: E402

from pbs2p_edge.pack.checkpoint_dir import DENSE, GRID, META_JSON, PACKED  # noqa: E402
from pbs2p_edge.cli import main  # noqa: E402

RECIPES = {
    "pbs2p-4of8-paper": ["--method", "pbs2p", "--nm", "4:8"],
    "bpw4-recover2": ["--bpw", "4", "--recover", "2"],
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(work: Path) -> dict[str, str]:
    model = work / "tiny-llama"
    make_tiny_llama().save_pretrained(model)
    make_tiny_tokenizer().save_pretrained(model)
    calib = work / "calib.txt"
    calib.write_text(TINY_TEXT * 40)
    out = {}
    for name, options in RECIPES.items():
        ckpt, gguf = work / name, work / f"{name}.gguf"
        for argv in (["compress", str(model), str(ckpt), "--calib", str(calib), "--nsamples", "4", "--seqlen", "64",
                      "--quiet", *options], ["export", str(ckpt), str(gguf), "--quiet"]):
            with contextlib.redirect_stdout(sys.stderr):  # the commands' JSON summaries: stdout is the hashes
                rc = main(argv)
            if rc != 0:
                raise SystemExit(f"pbs2p-edge {' '.join(argv)} failed")
        for f in (PACKED, GRID, DENSE):
            out[f"{name}/{f}"] = sha(ckpt / f)
        meta = json.loads((ckpt / META_JSON).read_text())
        del meta["extra"]  # the run's own facts: paths, seconds, peak memory
        out[f"{name}/{META_JSON} without extra"] = hashlib.sha256(json.dumps(meta).encode()).hexdigest()
        out[f"{name}.gguf"] = sha(gguf)
    return out


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1])), indent=1, sort_keys=True))
