"""Writes a tiny random Llama as a pbs2p GGUF (seed 0; same bytes every run), for the cross-architecture logits check.

Usage: python scripts/tiny_llama_gguf.py OUT.gguf [--tiered]. The model is tests/checkpoint/tiny_compressed.py's
Llama (hidden 64, 2 blocks, 4 heads / 2 KV heads, vocab 320, tied), its linears binarized 4:8 by that file's
sign_binarize with salient columns and two split groups, exported with f16 embeddings; no download. --tiered: the
same shape untied, its linears cycling through every tier (compress_tiered) and a Q4_0 embedding and head, so the
integer dense products run.
"""

import copy
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "exporters")]

from checkpoint.tiny_compressed import compress, compress_tiered, tiny_model  # noqa: E402
from conftest import make_tiny_tokenizer  # noqa: E402

from pbs2p_edge.algo.config import CompressConfig  # noqa: E402
from pbs2p_edge.checkpoint import save_checkpoint  # noqa: E402
from pbs2p_exporters.gguf_export import export_gguf  # noqa: E402


def main(out: str, tiered: bool) -> None:
    model = tiny_model("llama", tie=not tiered)  # torch.manual_seed(0) inside
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "ck"
        if tiered:
            save_checkpoint(ck, model, copy.deepcopy(make_tiny_tokenizer()), compress_tiered(model),
                            CompressConfig(n=4, m=8), {}, {"model_id": "tiny-llama-tiered-seed0"}, embed_tier="q4_0")
            export_gguf(ck, out)
        else:
            save_checkpoint(ck, model, copy.deepcopy(make_tiny_tokenizer()), compress(model, n_salient=3, split=2),
                            CompressConfig(n=4, m=8), {}, {"model_id": "tiny-llama-seed0"})
            export_gguf(ck, out, embed_type="f16")
    print(f"{out}: {Path(out).stat().st_size} bytes")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["--tiered"]):
        raise SystemExit("usage: python scripts/tiny_llama_gguf.py OUT.gguf [--tiered]")
    main(sys.argv[1], sys.argv[2:] == ["--tiered"])
