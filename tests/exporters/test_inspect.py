"""Tests of inspect_file on GGUF files and checkpoint directories."""

import numpy as np
import pytest

from pbs2p_edge.checkpoint import load_checkpoint
from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack import honest_bits
from pbs2p_exporters.gguf_export import export_gguf
from pbs2p_exporters.inspect import inspect_file


def test_inspect_gguf_and_checkpoint_agree(opt_ckpt, tmp_path):
    ck = load_checkpoint(opt_ckpt)
    out = export_gguf(opt_ckpt, tmp_path / "m.gguf")
    g, c = inspect_file(out), inspect_file(opt_ckpt)
    assert g["format"] == "gguf" and c["format"] == "checkpoint"
    assert g["architecture"] == c["architecture"] == "opt"
    bits = sum(honest_bits(p) for p in ck.layers.values())
    weights = sum(p.meta.rows * p.meta.cols for p in ck.layers.values())
    assert g["bits_per_weight"] == c["bits_per_weight"] == bits / weights
    assert [r["name"] for r in g["layers"]][0] == "blk.0.attn_k"
    for rg, rc in zip(g["layers"], c["layers"]):
        assert rg["source_name"] == rc["name"]
        for k in ("n", "m", "rows", "cols", "bits_per_weight"):
            assert rg[k] == rc[k]
    assert {r["n"] for r in g["layers"]} == {3, 4} and all(r["m"] == 8 for r in g["layers"])
    assert g["file_bits"] == 8 * out.stat().st_size
    assert g["params"] == c["params"] == weights + sum(a.size for a in ck.dense.values())
    assert g["format_version"] == 1 and g["m"] == 8
    sizes = {t["name"]: t for t in g["tensors"]}
    assert sizes["token_embd.weight"]["type"] == "F16"
    assert sizes["token_embd.weight"]["shape"] == list(ck.dense["model.decoder.embed_tokens.weight"].shape)
    assert np.isclose(sum(t["bytes"] for t in g["tensors"] if t["packed"]) * 8, bits)


def test_inspect_rejects_other_files(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(FormatError, match="neither"):
        inspect_file(tmp_path / "x.bin")
    with pytest.raises(FormatError):
        inspect_file(tmp_path / "nope.gguf")
    (tmp_path / "d").mkdir()
    with pytest.raises(FormatError, match="missing"):
        inspect_file(tmp_path / "d")
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(FormatError):
        inspect_file(tmp_path / "bad.gguf")
