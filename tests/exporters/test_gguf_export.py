"""Tests of the GGUF exporter: stock reader parses it, packed planes round-trip exactly, deterministic, atomic."""

import json

import gguf
import numpy as np
import pytest

from pbs2p_edge.checkpoint import load_checkpoint
from pbs2p_edge.errors import ConfigError, FormatError, OutputError
from pbs2p_edge.pack import unpack_layer
from pbs2p_exporters.gguf_export import export_gguf
from pbs2p_exporters.gguf_read import gguf_fields, read_gguf_packed


@pytest.mark.parametrize("which", ["llama_ckpt", "llama_untied_ckpt", "opt_ckpt"])
def test_round_trip_exact(request, tmp_path, which):
    ck_dir = request.getfixturevalue(which)
    out = export_gguf(ck_dir, tmp_path / "m.gguf")
    ck = load_checkpoint(ck_dir)
    reader = gguf.GGUFReader(str(out))
    fields = gguf_fields(reader)
    names = {t.name: t for t in reader.tensors}
    assert all(t.data_offset % 64 == 0 for t in reader.tensors)
    assert fields["general.alignment"] == 64
    arch = fields["general.architecture"]
    assert arch == ck.config["model_type"]
    assert fields[f"{arch}.block_count"] == ck.config["num_hidden_layers"]
    assert fields[f"{arch}.embedding_length"] == ck.config["hidden_size"]
    assert fields[f"{arch}.vocab_size"] == ck.config["vocab_size"]
    assert fields["pbs2p.format_version"] == 1 and fields["pbs2p.m"] == 8
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert len(fields["tokenizer.ggml.tokens"]) == ck.config["vocab_size"]
    assert fields["tokenizer.ggml.token_type"][0] == 3  # <|endoftext|> is a control token
    assert fields["tokenizer.ggml.bos_token_id"] == 0 and fields["tokenizer.ggml.eos_token_id"] == 0
    assert fields["tokenizer.chat_template"].startswith("{% for m in messages %}")
    tj = json.loads((ck_dir / "tokenizer.json").read_text())
    assert fields["tokenizer.ggml.merges"] == [" ".join(mg) for mg in tj["model"]["merges"]]
    by_id = sorted(tj["model"]["vocab"], key=tj["model"]["vocab"].get)
    assert fields["tokenizer.ggml.tokens"][: len(by_id)] == by_id
    assert "token_embd.weight" in names and "output_norm.weight" in names
    assert ("output.weight" in names) == ("lm_head.weight" in ck.dense)
    assert names["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert names["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert names["blk.0.attn_q.pbs2p.signs"].tensor_type == gguf.GGMLQuantizationType.I8
    assert names["blk.0.attn_q.pbs2p.alpha"].tensor_type == gguf.GGMLQuantizationType.F16
    emb = next(k for k in ck.dense if k.endswith("embed_tokens.weight"))
    assert np.array_equal(names["token_embd.weight"].data, ck.dense[emb].astype(np.float16))

    layers, meta = read_gguf_packed(out)
    assert meta["pbs2p.linear.source_names"] == list(ck.layers)
    assert len(layers) == len(ck.layers)
    for base, src in zip(meta["pbs2p.linear.names"], meta["pbs2p.linear.source_names"]):
        assert layers[base].meta == ck.layers[src].meta
        for k, a in ck.layers[src].arrays.items():
            assert np.array_equal(layers[base].arrays[k], a) and layers[base].arrays[k].dtype == a.dtype
        assert np.array_equal(unpack_layer(layers[base]), unpack_layer(ck.layers[src]))
    # every dense tensor of the checkpoint and every packed array is in the file, and nothing else
    assert len(reader.tensors) == len(ck.dense) + sum(len(p.arrays) for p in ck.layers.values())


def test_deterministic(llama_ckpt, tmp_path):
    a = export_gguf(llama_ckpt, tmp_path / "a.gguf").read_bytes()
    b = export_gguf(llama_ckpt, tmp_path / "b.gguf").read_bytes()
    assert a == b


def test_q8_0_embeddings(llama_untied_ckpt, tmp_path):
    out = export_gguf(llama_untied_ckpt, tmp_path / "q.gguf", embed_type="q8_0")
    ck = load_checkpoint(llama_untied_ckpt)
    names = {t.name: t for t in gguf.GGUFReader(str(out)).tensors}
    for g, hf in (("token_embd.weight", "model.embed_tokens.weight"), ("output.weight", "lm_head.weight")):
        t = names[g]
        assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
        back = gguf.quants.dequantize(t.data, gguf.GGMLQuantizationType.Q8_0)
        ref = ck.dense[hf]
        assert back.shape == ref.shape
        assert np.abs(back - ref).max() <= np.abs(ref).max(axis=1).max() / 127 * 0.51 + 1e-3
    with pytest.raises(ConfigError):
        export_gguf(llama_untied_ckpt, tmp_path / "x.gguf", embed_type="q4")


def test_atomic_failure_keeps_old_file(llama_ckpt, tmp_path, monkeypatch):
    out = tmp_path / "m.gguf"
    out.write_bytes(b"old contents")

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", boom)
    with pytest.raises(OutputError, match=rf"{out}: cannot write \(disk full: .*; nothing was replaced"):
        export_gguf(llama_ckpt, out)
    assert out.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]
    monkeypatch.undo()
    export_gguf(llama_ckpt, out)
    assert read_gguf_packed(out)[0]


def test_reader_rejects_foreign_and_corrupt_files(llama_ckpt, tmp_path):
    plain = tmp_path / "plain.gguf"
    w = gguf.GGUFWriter(str(plain), "llama")
    w.add_tensor("x", np.zeros(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(FormatError, match="not a pbs2p"):
        read_gguf_packed(plain)
    good = export_gguf(llama_ckpt, tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(good[: len(good) // 3])
    with pytest.raises(FormatError):
        read_gguf_packed(tmp_path / "cut.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(FormatError):
        read_gguf_packed(tmp_path / "junk.gguf")
