"""Mixed-tier checkpoints and GGUF files: every tier stored as docs/FORMAT.md §10 says, read back exactly."""

import copy

import gguf
import numpy as np
import pytest
from checkpoint.tiny_compressed import TIER_CYCLE, compress_tiered, linear_names, tiny_model

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import load_checkpoint, save_checkpoint, to_fake_quant_model
from pbs2p_edge.errors import ConfigError, FormatError
from pbs2p_edge.pack import tiers, unpack_layer
from pbs2p_exporters.gguf_export import export_gguf
from pbs2p_exporters.gguf_read import gguf_fields, read_gguf_linears
from pbs2p_exporters.inspect import inspect_file


def test_checkpoint_keeps_every_tier(tiered_ckpt):
    ck = load_checkpoint(tiered_ckpt)
    model = tiny_model("llama", tie=True)
    results = compress_tiered(model)
    assert list(ck.linear_tiers()) == linear_names(model)
    assert list(ck.linear_tiers().values()) == [TIER_CYCLE[i % len(TIER_CYCLE)] for i in range(len(results))]
    assert ck.embed_tier == "q4_0"
    for name, r in results.items():
        stored = unpack_layer(ck.layers[name]) if name in ck.layers else ck.grids[name].decode()
        np.testing.assert_array_equal(stored, r.dequantize().numpy())
    bits = sum(p["honest_bits"] for p in {**ck.meta["layers"], **ck.meta["grid_layers"]}.values())
    weights = sum(r.dequantize().numel() for r in results.values())
    assert ck.meta["bits_per_weight"] == pytest.approx(bits / weights)


def test_fake_quant_model_holds_the_tiers_and_the_embedding_tier(tiered_ckpt):
    model, _ = to_fake_quant_model(tiered_ckpt)
    ck = load_checkpoint(tiered_ckpt)
    for name, g in ck.grids.items():
        np.testing.assert_array_equal(model.get_submodule(name).weight.detach().numpy(), g.decode())
    emb = ck.dense["model.embed_tokens.weight"]
    np.testing.assert_array_equal(model.model.embed_tokens.weight.detach().numpy(), tiers.round_trip("q4_0", emb))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_gguf_stores_standard_tiers_as_ggml_types_and_ours_as_blocks(tiered_ckpt, tmp_path):
    out = export_gguf(tiered_ckpt, tmp_path / "m.gguf")
    ck = load_checkpoint(tiered_ckpt)
    reader = gguf.GGUFReader(str(out))
    fields = gguf_fields(reader)
    names = {t.name: t for t in reader.tensors}
    assert fields["pbs2p.linear.tier"] == list(ck.linear_tiers().values())
    assert fields["pbs2p.linear.source_names"] == list(ck.linear_tiers())
    T = gguf.GGMLQuantizationType
    assert names["token_embd.weight"].tensor_type == T.Q4_0  # the checkpoint's embedding tier
    for base, src, t, group, n in zip(fields["pbs2p.linear.names"], fields["pbs2p.linear.source_names"],
                                      fields["pbs2p.linear.tier"], fields["pbs2p.linear.group_size"],
                                      fields["pbs2p.linear.n"]):
        if t == "pbs2p":
            assert f"{base}.pbs2p.signs" in names and f"{base}.weight" not in names
            continue
        g = ck.grids[src]
        assert group == tiers.TIERS[t].block and n == 8
        if tiers.TIERS[t].ggml_type is None:
            tensor = names[f"{base}.pbs2p.q"]
            assert tensor.tensor_type == T.I8
            np.testing.assert_array_equal(np.asarray(tensor.data).view(np.uint8).reshape(g.blocks.shape), g.blocks)
        else:
            tensor = names[f"{base}.weight"]
            assert tensor.tensor_type == T[tiers.TIERS[t].ggml_type]
            got = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(g.rows, g.cols)
            np.testing.assert_array_equal(got, g.decode())
    honest = fields["pbs2p.linear.honest_bits"]
    assert fields["pbs2p.bits_per_weight"] == pytest.approx(sum(honest) / sum(
        r * c for r, c in zip(fields["pbs2p.linear.rows"], fields["pbs2p.linear.cols"])), rel=1e-6)
    described = inspect_file(out)
    assert described["embed_type"] == "q4_0" and inspect_file(tiered_ckpt)["embed_type"] == "q4_0"
    assert [r["tier"] for r in described["layers"]] == fields["pbs2p.linear.tier"]
    assert described["tiers"] == {t: fields["pbs2p.linear.tier"].count(t) for t in set(fields["pbs2p.linear.tier"])}
    # the embedding tier can be overridden at export; same checkpoint, same bytes
    f16 = export_gguf(tiered_ckpt, tmp_path / "f16.gguf", embed_type="f16")
    assert {t.name: t for t in gguf.GGUFReader(str(f16)).tensors}["token_embd.weight"].tensor_type == T.F16
    assert export_gguf(tiered_ckpt, tmp_path / "again.gguf").read_bytes() == out.read_bytes()


@pytest.mark.parametrize("embed", ["q3_g64", "q2_g64", "q4_s16", "q3_s16", "q2_s16"])
def test_block_tier_embedding_is_stored_as_our_blocks(tiered_ckpt, tmp_path, embed):
    """--embed-type of one of our tiers: token_embd.pbs2p.q holds tiers.quantize_nearest's blocks of the checkpoint's
    embedding, pbs2p.embedding.tier names the tier, and inspect counts its values as parameters."""
    out = export_gguf(tiered_ckpt, tmp_path / "m.gguf", embed_type=embed)
    ck = load_checkpoint(tiered_ckpt)
    reader = gguf.GGUFReader(str(out))
    names = {t.name: t for t in reader.tensors}
    assert gguf_fields(reader)["pbs2p.embedding.tier"] == embed
    assert "token_embd.weight" not in names and names["token_embd.pbs2p.q"].tensor_type == gguf.GGMLQuantizationType.I8
    emb = ck.dense["model.embed_tokens.weight"]
    stored = np.asarray(names["token_embd.pbs2p.q"].data).view(np.uint8)
    np.testing.assert_array_equal(stored.reshape(emb.shape[0], -1), tiers.quantize_nearest(embed, emb))
    described, f16 = inspect_file(out), inspect_file(export_gguf(tiered_ckpt, tmp_path / "f.gguf", embed_type="f16"))
    assert described["embed_type"] == embed and described["params"] == f16["params"]
    bits = tiers.TIERS[embed].bits_for(emb.shape[1])
    assert described["file_bits"] < f16["file_bits"] - emb.size * (16 - bits) + 8 * 4096


def test_reader_refuses_a_block_embedding_beside_a_ggml_one(tiered_ckpt, tmp_path):
    out = export_gguf(tiered_ckpt, tmp_path / "m.gguf", embed_type="q2_g64")
    data = out.read_bytes()
    bad = tmp_path / "bad.gguf"  # the linear tier key names q2_g64 too: patch the embedding key's value only
    key = b"pbs2p.embedding.tier" + (8).to_bytes(4, "little") + (6).to_bytes(8, "little")
    bad.write_bytes(data.replace(key + b"q2_g64", key + b"q4_0\0\0", 1))
    with pytest.raises(FormatError, match="not one of our block tiers"):
        read_gguf_linears(bad)
    assert read_gguf_linears(out)[2]["pbs2p.embedding.tier"] == "q2_g64"


def test_binary_only_files_carry_no_tier_key(llama_ckpt, tmp_path):
    fields = gguf_fields(gguf.GGUFReader(str(export_gguf(llama_ckpt, tmp_path / "b.gguf"))))
    assert "pbs2p.linear.tier" not in fields


def test_checkpoint_refuses_bad_tier_data(tmp_path, tiny_tokenizer):
    model = tiny_model("llama", tie=True)
    results = compress_tiered(model)
    with pytest.raises(ConfigError, match="embedding tier"):
        save_checkpoint(tmp_path / "a", model, copy.deepcopy(tiny_tokenizer), results, CompressConfig(), {}, {},
                        embed_tier="pbs2p")
    out = save_checkpoint(tmp_path / "b", model, copy.deepcopy(tiny_tokenizer), results, CompressConfig(), {}, {})
    meta = (out / "pbs2p.json").read_text()
    (out / "pbs2p.json").write_text(meta.replace('"tier": "q4_0"', '"tier": "q5_9"', 1))
    with pytest.raises(FormatError, match="q5_9"):
        load_checkpoint(out)
    (out / "pbs2p.json").write_text(meta.replace('"tier": "q4_0"', '"tier": "q3_g64"', 1))
    with pytest.raises(FormatError):
        load_checkpoint(out)
