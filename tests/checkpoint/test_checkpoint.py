"""Tests of the compressed checkpoint: exact save/load round trip, fake-quant logits, atomicity, corruption."""

import json

import numpy as np
import pytest
import torch
from .tiny_compressed import apply_fake_quant, compress, tiny_model

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import is_checkpoint, load_checkpoint, save_checkpoint, to_fake_quant_model
from pbs2p_edge.errors import FormatError, OutputError
from pbs2p_edge.pack import unpack_layer


@pytest.mark.parametrize("arch,kw", [("llama", {}), ("opt", {"n_salient": 5, "split": 2}), ("llama", {"use_mu": False})])
def test_save_load_exact(tmp_path, tiny_tokenizer, arch, kw):
    model = tiny_model(arch)
    results = compress(model, **kw)
    out = tmp_path / "ck"
    save_checkpoint(out, model, tiny_tokenizer, results, CompressConfig(), {"0": 4}, {"ppl": 1.5})
    assert is_checkpoint(out)
    ck = load_checkpoint(out)
    assert list(ck.layers) == list(results)
    for name, r in results.items():
        assert np.array_equal(unpack_layer(ck.layers[name]), r.dequantize().numpy())
        assert ck.layers[name].meta.n == r.n
    state = model.state_dict()
    stored = set(ck.dense) | set(ck.tied) | {f"{n}.weight" for n in results}
    assert stored == set(state)
    assert ck.tied == {"lm_head.weight": next(k for k in state if k.endswith("embed_tokens.weight"))}
    for k, v in ck.dense.items():
        assert np.array_equal(v, state[k].numpy())
    assert ck.meta["extra"] == {"ppl": 1.5} and ck.meta["layer_n"] == {"0": 4}
    assert ck.compress_config == CompressConfig().to_dict()
    assert ck.tokenizer_json is not None


@pytest.mark.parametrize("arch", ["llama", "opt"])
def test_fake_quant_model_same_logits(tmp_path, tiny_tokenizer, arch):
    model = tiny_model(arch, tie=arch == "opt")
    results = compress(model, n=5)
    save_checkpoint(tmp_path / "ck", model, tiny_tokenizer, results, CompressConfig(), {}, {})
    apply_fake_quant(model, results)
    loaded, tok = to_fake_quant_model(tmp_path / "ck")
    ids = torch.tensor([tok("the quick brown fox")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert tok.decode(ids[0]) == "the quick brown fox"


def test_atomic_replace_and_failure(tmp_path, tiny_tokenizer, monkeypatch):
    model = tiny_model("llama")
    results = compress(model)
    out = tmp_path / "ck"
    save_checkpoint(out, model, tiny_tokenizer, results, CompressConfig(), {}, {"run": 1})
    save_checkpoint(out, model, tiny_tokenizer, results, CompressConfig(), {}, {"run": 2})  # replaces
    assert load_checkpoint(out).meta["extra"] == {"run": 2}

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(tiny_tokenizer), "save_pretrained", boom)
    with pytest.raises(RuntimeError):
        save_checkpoint(out, model, tiny_tokenizer, results, CompressConfig(), {}, {"run": 3})
    assert load_checkpoint(out).meta["extra"] == {"run": 2}  # old one intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp directory left behind

    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(OutputError):
        save_checkpoint(other, model, None, results, CompressConfig(), {}, {})
    assert (other / "mine.txt").read_text() == "keep"


def test_corrupt_checkpoints_raise_format_error(tmp_path, tiny_tokenizer):
    model = tiny_model("llama")
    out = tmp_path / "ck"
    save_checkpoint(out, model, None, compress(model), CompressConfig(), {}, {})
    meta = json.loads((out / "pbs2p.json").read_text())

    with pytest.raises(FormatError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "missing")
    data = (out / "packed.safetensors").read_bytes()
    (out / "packed.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="corrupt"):
        load_checkpoint(out)
    (out / "packed.safetensors").write_bytes(data)
    load_checkpoint(out)

    bad = json.loads(json.dumps(meta))
    first = next(iter(bad["layers"]))
    bad["layers"][first]["rows"] += 1
    (out / "pbs2p.json").write_text(json.dumps(bad))
    with pytest.raises(FormatError, match="expected uint8"):
        load_checkpoint(out)
    bad = {**meta, "format_version": 99}
    (out / "pbs2p.json").write_text(json.dumps(bad))
    with pytest.raises(FormatError, match="version 99"):
        load_checkpoint(out)
    (out / "pbs2p.json").write_text("{not json")
    with pytest.raises(FormatError, match="JSON"):
        load_checkpoint(out)
    assert not is_checkpoint(out)
    (out / "pbs2p.json").write_text(json.dumps(meta))
    (out / "dense.safetensors").unlink()
    with pytest.raises(FormatError, match="dense.safetensors is missing"):
        load_checkpoint(out)


def test_bfloat16_model_dense_widened_losslessly(tmp_path):
    model = tiny_model("llama").to(torch.bfloat16)
    results = compress(model)
    save_checkpoint(tmp_path / "ck", model, None, results, CompressConfig(), {}, {})
    ck = load_checkpoint(tmp_path / "ck")
    emb = model.state_dict()["model.embed_tokens.weight"]
    assert ck.dense["model.embed_tokens.weight"].dtype == np.float32
    assert torch.equal(torch.from_numpy(ck.dense["model.embed_tokens.weight"]).bfloat16(), emb)
    assert ck.meta["dense_dtypes"]["model.embed_tokens.weight"] == "bfloat16"
    loaded, tok = to_fake_quant_model(tmp_path / "ck")
    assert tok is None
    name = next(iter(results))
    assert torch.equal(loaded.get_submodule(name).weight, results[name].dequantize())


def test_rejects_results_that_do_not_fit_the_model(tmp_path):
    from pbs2p_edge.errors import ConfigError

    model = tiny_model("llama")
    results = compress(model)
    with pytest.raises(ConfigError, match="not a linear"):
        save_checkpoint(tmp_path / "ck", model, None, {"model.nope": next(iter(results.values()))},
                        CompressConfig(), {}, {})
    q, k = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"
    with pytest.raises(ConfigError, match="shape"):
        save_checkpoint(tmp_path / "ck", model, None, {k: results[q]}, CompressConfig(), {}, {})
    assert not (tmp_path / "ck").exists()


def test_stray_or_missing_packed_arrays(tmp_path):
    from safetensors.numpy import load_file, save_file

    model = tiny_model("llama")
    out = tmp_path / "ck"
    save_checkpoint(out, model, None, compress(model), CompressConfig(), {}, {})
    arrays = load_file(str(out / "packed.safetensors"))
    save_file({**arrays, "model.layers.9.mlp.up_proj.signs": np.zeros((1, 1), np.uint8)}, str(out / "packed.safetensors"))
    with pytest.raises(FormatError, match="no described layer"):
        load_checkpoint(out)
    first = next(iter(arrays))
    save_file({k: v for k, v in arrays.items() if k != first}, str(out / "packed.safetensors"))
    with pytest.raises(FormatError, match="missing"):
        load_checkpoint(out)


def test_the_same_checkpoint_is_the_same_bytes_every_time(tmp_path, tiny_tokenizer):
    """Every file of a checkpoint saved again and again is byte-identical: nothing random (safetensors writes a
    metadata map of two keys in a random order: each file has one), nothing timed."""
    model = tiny_model("llama", tie=True)
    results = compress(model)
    saved = []
    for i in range(8):
        out = save_checkpoint(tmp_path / f"ck{i}", model, tiny_tokenizer, results, CompressConfig(n=4, m=8), {}, {})
        saved.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert all(s == saved[0] for s in saved[1:])
