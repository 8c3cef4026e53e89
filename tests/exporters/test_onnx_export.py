"""Tests of export_onnx: checker (full_check), logits of both flavors vs the PyTorch fake-quantized model,
KV-cache decoding, padding masks, RoPE scaling, determinism, external data, atomic writes, CLI."""

import json
import shutil

import numpy as np
import onnx
import pytest
from exporters.onnx_run import fake_quant_of, feeds, rel_err, run, torch_logits

from pbs2p_edge.checkpoint import to_fake_quant_model
from pbs2p_edge.errors import ConfigError, FormatError, ModelError, OutputError
from pbs2p_exporters.onnx_export import export_onnx, external_data_path
from pbs2p_exporters.onnx_read import read_onnx_metadata

TOL = 1e-4  # max abs error relative to the logit range
CKPTS = ["llama_ckpt", "llama_untied_ckpt", "qwen2_ckpt", "mistral_ckpt", "gemma3_ckpt", "opt_ckpt"]
PROMPT = np.array([[5, 17, 99, 3, 250, 11, 7, 64, 201]], np.int64)


@pytest.mark.parametrize("flavor", ["custom", "portable"])
@pytest.mark.parametrize("which", CKPTS)
def test_logits_match_fake_quant_model(request, tmp_path, which, flavor):
    ck, model = fake_quant_of(request, which)
    out = export_onnx(ck, tmp_path / "m.onnx", flavor=flavor)
    onnx.checker.check_model(str(out), full_check=True)
    m = onnx.load(str(out))
    domains = {o.domain: o.version for o in m.opset_import}
    ops = {(n.domain, n.op_type) for n in m.graph.node}
    if flavor == "custom":
        assert domains == {"": 25, "ai.pbs2p": 1}
        n_linear = sum(1 for n in m.graph.node if n.op_type == "PackedLinear")
        assert n_linear == model.config.num_hidden_layers * (6 if which.startswith("opt") else 7)
    else:
        assert domains == {"": 25} and all(d == "" for d, _ in ops)  # stock ONNX only
        assert ("", "DequantizeLinear") in ops
    assert [i.name for i in m.graph.input][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert [o.name for o in m.graph.output][:3] == ["logits", "present.0.key", "present.0.value"]
    ref = torch_logits(model, PROMPT)
    got = run(out, flavor, feeds(model.config, PROMPT))
    assert got["logits"].shape == ref.shape
    assert rel_err(got["logits"], ref) <= TOL


@pytest.mark.parametrize("flavor", ["custom", "portable"])
@pytest.mark.parametrize("which", ["llama_ckpt", "mistral_ckpt", "gemma3_ckpt", "opt_ckpt"])
def test_kv_cache_decoding_matches_full_sequence(request, tmp_path, which, flavor):
    ck, model = fake_quant_of(request, which)
    out = export_onnx(ck, tmp_path / "m.onnx", flavor=flavor)
    ref = torch_logits(model, PROMPT)
    step1 = run(out, flavor, feeds(model.config, PROMPT[:, :6]))
    step2 = run(out, flavor, feeds(model.config, PROMPT[:, 6:], past=step1))
    assert step2["present.1.value"].shape[2] == 9 and step1["present.0.key"].shape[2] == 6
    got = np.concatenate([step1["logits"], step2["logits"]], axis=1)
    assert rel_err(got, ref) <= TOL
    # a graph that ignored the cache would give other logits for the decoding step
    alone = run(out, flavor, feeds(model.config, PROMPT[:, 6:]))
    assert rel_err(alone["logits"], ref[:, 6:]) > 100 * TOL


@pytest.mark.parametrize("which", ["llama_ckpt", "opt_ckpt"])
def test_left_padding_mask_and_positions(request, tmp_path, which):
    ck, model = fake_quant_of(request, which)
    out = export_onnx(ck, tmp_path / "m.onnx", flavor="portable")
    ids = np.stack([PROMPT[0, :7], np.r_[0, 0, PROMPT[0, :5]]])  # row 1: 2 pad tokens on the left
    mask = np.array([[1] * 7, [0, 0] + [1] * 5], np.int64)
    pos = np.clip(mask.cumsum(1) - 1, 0, None).astype(np.int64)
    got = run(out, "portable", feeds(model.config, ids, attention_mask=mask, position_ids=pos))["logits"]
    ref = torch_logits(model, ids, attention_mask=mask, position_ids=pos)
    assert rel_err(got[mask == 1], ref[mask == 1]) <= TOL
    assert rel_err(got[1, 2:], torch_logits(model, PROMPT[:, :5])[0]) <= TOL  # padding changes nothing


def _with_rope(src, dst, rope: dict):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.pop("rope_scaling", None)
    cfg["rope_parameters"] = rope
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_llama3_rope_scaling(llama_ckpt, tmp_path):
    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    ck = _with_rope(llama_ckpt, tmp_path / "ck", rope)
    model = to_fake_quant_model(ck)[0]
    out = export_onnx(ck, tmp_path / "m.onnx", flavor="portable")
    pos = np.arange(110, 119, dtype=np.int64)[None]  # far enough that the scaled low frequencies matter
    ref = torch_logits(model, PROMPT, position_ids=pos)
    err = rel_err(run(out, "portable", feeds(model.config, PROMPT, position_ids=pos))["logits"], ref)
    assert err <= TOL
    plain = run(export_onnx(llama_ckpt, tmp_path / "p.onnx", flavor="portable"), "portable",
                feeds(model.config, PROMPT, position_ids=pos))["logits"]
    assert rel_err(plain, ref) > max(TOL, 100 * err)  # the scaling is really applied (a tiny random model barely
    # reacts to RoPE, so the unscaled graph is off by a few 1e-4 while the scaled one is off by ~1e-7)


def test_unsupported_models_refused(llama_ckpt, opt_ckpt, tmp_path):
    ck = _with_rope(llama_ckpt, tmp_path / "yarn", {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                    "original_max_position_embeddings": 64})
    with pytest.raises(ModelError, match="yarn"):
        export_onnx(ck, tmp_path / "y.onnx")
    bad = shutil.copytree(opt_ckpt, tmp_path / "gelu")
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "activation_function": "gelu"}))
    with pytest.raises(ModelError, match="relu"):
        export_onnx(bad, tmp_path / "g.onnx")
    with pytest.raises(ConfigError, match="flavor"):
        export_onnx(llama_ckpt, tmp_path / "x.onnx", flavor="tflite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gelu", "yarn"]


@pytest.mark.parametrize("flavor", ["custom", "portable"])
def test_deterministic_and_metadata(llama_untied_ckpt, tmp_path, flavor):
    a = export_onnx(llama_untied_ckpt, tmp_path / "a.onnx", flavor=flavor).read_bytes()
    b = export_onnx(llama_untied_ckpt, tmp_path / "b.onnx", flavor=flavor).read_bytes()
    assert a == b
    meta = read_onnx_metadata(tmp_path / "a.onnx")
    assert meta["pbs2p.onnx_flavor"] == flavor and meta["pbs2p.format_version"] == "1"
    ck_meta = json.loads((llama_untied_ckpt / "pbs2p.json").read_text())
    assert float(meta["pbs2p.bits_per_weight"]) == pytest.approx(ck_meta["bits_per_weight"], rel=1e-12)
    assert json.loads(meta["pbs2p.linear.source_names"]) == list(ck_meta["layers"])
    assert meta["pbs2p.name"] == "tiny-llama-pbs2p-pbs2p-4of8"
    assert "pbs2p.linear.tier" not in meta and "pbs2p.embed_tier" not in meta  # binary only, no embedding tier


def test_external_data(request, tmp_path):
    ck, model = fake_quant_of(request, "opt_ckpt")
    inline = export_onnx(ck, tmp_path / "in.onnx", flavor="portable")
    out = export_onnx(ck, tmp_path / "ext.onnx", flavor="portable", external_data=True)
    data = external_data_path(out)
    assert data.name == "ext.onnx.data" and data.stat().st_size > out.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext.onnx", "ext.onnx.data", "in.onnx"]
    onnx.checker.check_model(str(out), full_check=True)
    f = feeds(model.config, PROMPT)
    assert np.array_equal(run(out, "portable", f)["logits"], run(inline, "portable", f)["logits"])
    first = (out.read_bytes(), data.read_bytes())
    export_onnx(ck, out, flavor="portable", external_data=True)
    assert (out.read_bytes(), data.read_bytes()) == first  # deterministic, both files
    custom = export_onnx(ck, tmp_path / "c.onnx", flavor="custom", external_data=True)
    onnx.checker.check_model(str(custom), full_check=True)
    assert np.allclose(run(custom, "custom", f)["logits"], run(inline, "portable", f)["logits"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("external", [False, True])
def test_atomic_failure_keeps_old_files(llama_ckpt, tmp_path, monkeypatch, external):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old model")
    if external:
        external_data_path(out).write_bytes(b"old data")
    real_save = onnx.save_model

    def half_then_fail(model, path, *a, **k):  # writes real partial output, then dies
        real_save(model, path, *a, **k)
        with open(path, "r+b") as fh:
            fh.truncate(100)
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", half_then_fail)
    with pytest.raises(OutputError, match=rf"{out}: cannot write \(disk full: .*; nothing was replaced"):
        export_onnx(llama_ckpt, out, external_data=external)
    assert out.read_bytes() == b"old model"
    names = ["m.onnx", "m.onnx.data"] if external else ["m.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temp file or directory left
    if external:
        assert external_data_path(out).read_bytes() == b"old data"
    monkeypatch.undo()
    export_onnx(llama_ckpt, out, external_data=external)
    onnx.checker.check_model(str(out), full_check=True)


def test_cli_export_onnx(llama_ckpt, tmp_path, capsys):
    from pbs2p_edge.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export", str(llama_ckpt), str(out), "--onnx-flavor", "portable"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["bytes"] == out.stat().st_size
    ck_meta = json.loads((llama_ckpt / "pbs2p.json").read_text())
    assert summary["bits_per_weight"] == pytest.approx(ck_meta["bits_per_weight"], rel=1e-12)
    assert read_onnx_metadata(out)["pbs2p.onnx_flavor"] == "portable"
    assert main(["export", str(llama_ckpt), str(tmp_path / "c.onnx")]) == 0
    assert read_onnx_metadata(tmp_path / "c.onnx")["pbs2p.onnx_flavor"] == "custom"
