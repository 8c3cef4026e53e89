"""Mixed-tier checkpoints in ONNX (docs/ONNX.md §8): grid / f16 linears rebuild W_hat bit for bit with standard
operators in both flavors, the logits are the fake-quantized model's, the embedding is rounded to its tier, and
the metadata counts every linear honestly."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from exporters.onnx_run import fake_quant_of, feeds, rel_err, run, torch_logits
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from pbs2p_edge.pack import honest_bits, tiers
from pbs2p_edge.pack.checkpoint_dir import load_checkpoint
from pbs2p_exporters.onnx_export import export_onnx
from pbs2p_exporters.onnx_read import read_onnx_metadata
from pbs2p_exporters.onnx_graph_builder import GraphBuilder
from pbs2p_exporters.onnx_grid import grid_linear
from exporters.onnx_reference_op import reference_evaluator

TOL = 1e-4  # max abs error relative to the logit range, as test_onnx_export.py
PROMPT = np.array([[5, 17, 99, 3, 250, 11, 7, 64, 201]], np.int64)
MIXED = ["tiered_ckpt", "opt_tiered_ckpt"]  # every tier and binary layers; Llama tied q4_0 head, OPT biases q8_0 head
# ONNX element type of each grid tier's stored codes q - offset
CODE_TYPES = {"q8_0": TensorProto.INT8, "q4_0": TensorProto.INT4, "q3_g64": TensorProto.UINT4,
              "q2_g64": TensorProto.UINT2, "q4_s16": TensorProto.UINT4, "q3_s16": TensorProto.UINT4,
              "q2_s16": TensorProto.UINT2}
CODE_BITS = {"q8_0": 8, "q4_0": 4, "q3_g64": 4, "q2_g64": 2, "q4_s16": 4, "q3_s16": 4, "q2_s16": 2}


def _grid_layer(tier: str, R: int, K: int, seed: int = 0) -> tiers.GridLayer:
    """Random codes over the whole range (both ends forced), float16 scales of both signs and mins."""
    t = tiers.tier(tier)
    rng = np.random.default_rng(seed)
    if not t.grid:
        return tiers.GridLayer(tier, R, K, tiers.pack_float(rng.standard_normal((R, K)).astype(np.float16)))
    q = rng.integers(0, t.qmax + 1, (R, K))
    q[0, :2] = 0, t.qmax
    if tier == "q8_0":  # ggml's int8 holds -127..127: code 0 (-128) is never written
        q = np.maximum(q, 1)
    if t.sub:  # the row's D and M of both signs, sub-block codes over their whole range
        D = (rng.standard_normal((R, 1)) * 0.37).astype(np.float16).astype(np.float32)
        M = (rng.standard_normal((R, 1)) * 0.5).astype(np.float16).astype(np.float32)
        sc, mc = rng.integers(0, 16, (2, R, K // t.sub))
        sc[0, 0], mc[0, 0] = 15, 15
        return tiers.GridLayer(tier, R, K, tiers.pack(tier, q, D, M, sc, mc))
    nb = K // t.block
    d = (rng.standard_normal((R, nb)) * 0.37).astype(np.float16).astype(np.float32)
    m = (rng.standard_normal((R, nb)) * 3.1).astype(np.float16).astype(np.float32) if t.has_min else None
    return tiers.GridLayer(tier, R, K, tiers.pack(tier, q, d, m))


def _single_linear_model(g: tiers.GridLayer, bias=None, lead=("rows_x",)) -> onnx.ModelProto:
    b = GraphBuilder()
    x = b.input("x", TensorProto.FLOAT, [*lead, g.cols])
    b.output(grid_linear(b, x, "lin", g, bias), "y", TensorProto.FLOAT, [*lead, g.rows])
    model = helper.make_model(b.graph("one"), opset_imports=[helper.make_opsetid("", 25)], ir_version=11)
    onnx.checker.check_model(model, full_check=True)
    return model


def _ort(model: onnx.ModelProto, optimized_path=None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("tier", list(tiers.TIERS))
def test_grid_weights_exact(tier, tmp_path):
    """X = I gives Y = W_hat^T (one product by 1 plus zeros): equal to tiers.decode bit for bit in onnxruntime and
    in onnx's reference evaluator; onnxruntime's optimizer must not turn it into MatMulNBits (int8 activations)."""
    g = _grid_layer(tier, 24, 192)
    model = _single_linear_model(g)
    eye = np.eye(g.cols, dtype=np.float32)
    ref = g.decode().T
    assert np.array_equal(_ort(model, tmp_path / "opt.onnx").run(None, {"x": eye})[0], ref)
    assert np.array_equal(ReferenceEvaluator(model).run(None, {"x": eye})[0], ref)
    optimized = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert "MatMulNBits" not in optimized and "MatMul" in optimized
    inits = {t.name: t for t in model.graph.initializer}
    t = tiers.tier(tier)
    if t.sub:
        assert inits["lin.q"].data_type == CODE_TYPES[tier]
        assert inits["lin.sc"].data_type == inits["lin.mc"].data_type == TensorProto.UINT4
        assert inits["lin.D"].data_type == inits["lin.M"].data_type == TensorProto.FLOAT16
    elif t.grid:
        assert inits["lin.q"].data_type == CODE_TYPES[tier]
        assert inits["lin.d"].data_type == TensorProto.FLOAT16 and ("lin.m" in inits) == t.has_min
        if tier in ("q4_0", "q8_0"):  # d * (q - offset) needs more than float16's 11 bits somewhere: float16
            q, d, _ = tiers.codes(tier, g.blocks, g.cols)  # scales at the DequantizeLinear would not be exact
            prod16 = (np.repeat(d, t.block, 1).astype(np.float16) * (q.astype(np.float16) - t.offset))
            assert not np.array_equal(prod16.astype(np.float32), g.decode())
    else:
        assert inits["lin.weight_t"].data_type == TensorProto.FLOAT16


@pytest.mark.parametrize("tier", list(tiers.TIERS))
def test_grid_bias_and_batched_input(tier):
    g = _grid_layer(tier, 20, 128, seed=3)
    bias = np.random.default_rng(1).standard_normal(20).astype(np.float32)
    model = _single_linear_model(g, bias, lead=("batch", "sequence"))
    x = np.random.default_rng(2).standard_normal((2, 5, 128)).astype(np.float32)
    ref = x.astype(np.float64) @ g.decode().T.astype(np.float64) + bias
    for got in (_ort(model).run(None, {"x": x})[0], ReferenceEvaluator(model).run(None, {"x": x})[0]):
        assert got.shape == (2, 5, 20)
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("tier", list(tiers.TIERS))
def test_grid_onnx_sizes_576x576(tier):
    """The docs/ONNX.md §8 table: codes at CODE_BITS per weight, float16 d (and m) per block, nothing else."""
    g = _grid_layer(tier, 576, 576)
    nbytes = sum(len(t.raw_data) for t in _single_linear_model(g).graph.initializer if t.name.startswith("lin."))
    t = tiers.tier(tier)
    if not t.grid:
        assert nbytes * 8 == g.honest_bits
        return
    if t.sub:  # two 4-bit codes per sub-block, float16 D and M per row
        scales = 576 * 576 // t.sub + 2 * 2 * 576
    else:
        scales = (2 if t.has_min else 1) * 2 * 576 * 576 // t.block
    assert nbytes == 576 * 576 * CODE_BITS[tier] // 8 + scales
    assert nbytes * 8 - g.honest_bits == 576 * 576 * (t.qmax == 7)  # only 3-bit codes pay (a 4-bit type)


def test_mixed_checkpoints_hold_every_tier(tiered_ckpt, opt_tiered_ckpt, grid_ckpt):
    for ck in (tiered_ckpt, opt_tiered_ckpt):
        assert set(load_checkpoint(ck).linear_tiers().values()) == {tiers.BINARY, *tiers.TIERS}
    grid = load_checkpoint(grid_ckpt)
    assert not grid.layers and set(grid.linear_tiers().values()) == set(tiers.TIERS)
    assert "lm_head.weight" in grid.dense  # untied: the head is rounded on its own


@pytest.mark.parametrize("flavor", ["custom", "portable"])
@pytest.mark.parametrize("which", [*MIXED, "grid_ckpt"])
def test_logits_match_fake_quant_model(request, tmp_path, which, flavor):
    ck, model = fake_quant_of(request, which)
    out = export_onnx(ck, tmp_path / "m.onnx", flavor=flavor)
    onnx.checker.check_model(str(out), full_check=True)
    m = onnx.load(str(out))
    c = load_checkpoint(ck)
    domains = {o.domain: o.version for o in m.opset_import}
    ops = [(n.domain, n.op_type) for n in m.graph.node]
    assert ops.count(("ai.pbs2p", "PackedLinear")) == (len(c.layers) if flavor == "custom" else 0)
    assert domains == ({"": 25, "ai.pbs2p": 1} if flavor == "custom" and c.layers else {"": 25})
    n_grid = sum(g.tier != "f16" for g in c.grids.values())
    assert ops.count(("", "DequantizeLinear")) >= n_grid
    ref = torch_logits(model, PROMPT)
    got = run(out, flavor, feeds(model.config, PROMPT))
    assert got["logits"].shape == ref.shape
    assert rel_err(got["logits"], ref) <= TOL
    if not c.layers:  # grid only: stock onnxruntime runs either flavor, nothing custom left
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert rel_err(sess.run(["logits"], feeds(model.config, PROMPT))[0], ref) <= TOL


@pytest.mark.parametrize("flavor", ["custom", "portable"])
def test_kv_cache_decoding(request, tmp_path, flavor):
    ck, model = fake_quant_of(request, "opt_tiered_ckpt")
    out = export_onnx(ck, tmp_path / "m.onnx", flavor=flavor)
    step1 = run(out, flavor, feeds(model.config, PROMPT[:, :6]))
    step2 = run(out, flavor, feeds(model.config, PROMPT[:, 6:], past=step1))
    got = np.concatenate([step1["logits"], step2["logits"]], axis=1)
    assert rel_err(got, torch_logits(model, PROMPT)) <= TOL


def _with_weight_outputs(path, modules) -> onnx.ModelProto:
    """The exported model with each module's W_hat^T (the second input of its MatMul) as an extra output."""
    m = onnx.load(str(path))
    by_name = {n.name: n for n in m.graph.node}
    for module in modules:
        m.graph.output.append(helper.make_tensor_value_info(by_name[f"{module}/MatMul"].input[1], TensorProto.FLOAT, None))
    return m


@pytest.mark.parametrize("flavor", ["custom", "portable"])
@pytest.mark.parametrize("which", MIXED)
def test_exported_graph_rebuilds_grid_weights_and_rounds_embedding(request, tmp_path, which, flavor):
    ck_dir, model = fake_quant_of(request, which)
    ck = load_checkpoint(ck_dir)
    out = export_onnx(ck_dir, tmp_path / "m.onnx", flavor=flavor)
    m = _with_weight_outputs(out, list(ck.grids))
    f = feeds(model.config, PROMPT[:, :2])
    if flavor == "custom":
        ev = reference_evaluator(m)
        got = dict(zip(ev.output_names, ev.run(None, f)))
    else:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, f)))
    for o, (name, g) in zip(m.graph.output[-len(ck.grids):], ck.grids.items()):
        assert np.array_equal(got[o.name], g.decode().T), name
    # the embedding (and the tied head) hold the embedding tier's values, as the fake-quant model and GGUF
    emb_name = next(k for k in ck.dense if k.endswith("embed_tokens.weight"))
    emb = onnx.numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == emb_name))
    np.testing.assert_array_equal(emb, tiers.round_trip(ck.embed_tier, ck.dense[emb_name]))
    np.testing.assert_array_equal(emb, model.get_input_embeddings().weight.detach().numpy())
    assert not np.array_equal(emb, ck.dense[emb_name])
    if "embed_positions" in " ".join(ck.dense):  # OPT's learned positions are no token embedding: exact
        pos = next(t for t in m.graph.initializer if t.name == "model.decoder.embed_positions.weight")
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(pos), ck.dense["model.decoder.embed_positions.weight"])


def test_untied_head_rounded_to_embedding_tier(grid_ckpt, tmp_path):
    ck = load_checkpoint(grid_ckpt)
    m = onnx.load(str(export_onnx(grid_ckpt, tmp_path / "m.onnx", flavor="portable")))
    inits = {t.name: t for t in m.graph.initializer}
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(inits[key]), tiers.round_trip("f16", ck.dense[key]))


@pytest.mark.parametrize("flavor", ["custom", "portable"])
@pytest.mark.parametrize("which", [*MIXED, "grid_ckpt"])
def test_deterministic_and_metadata(request, tmp_path, which, flavor):
    ck_dir = request.getfixturevalue(which)
    a = export_onnx(ck_dir, tmp_path / "a.onnx", flavor=flavor).read_bytes()
    assert export_onnx(ck_dir, tmp_path / "b.onnx", flavor=flavor).read_bytes() == a
    ck = load_checkpoint(ck_dir)
    meta = read_onnx_metadata(tmp_path / "a.onnx")
    order = ck.linear_tiers()
    assert json.loads(meta["pbs2p.linear.source_names"]) == list(order)
    assert json.loads(meta["pbs2p.linear.tier"]) == list(order.values())
    assert meta["pbs2p.name"] == f"{ck.meta['extra']['model_id']}-pbs2p-tiers"
    assert meta["pbs2p.embed_tier"] == ck.embed_tier and meta["pbs2p.onnx_flavor"] == flavor
    bits = sum(honest_bits(ck.layers[n]) if t == tiers.BINARY else ck.grids[n].honest_bits for n, t in order.items())
    weights = sum(p.meta.rows * p.meta.cols for p in ck.layers.values()) + sum(g.rows * g.cols for g in ck.grids.values())
    assert float(meta["pbs2p.bits_per_weight"]) == bits / weights
    assert float(meta["pbs2p.bits_per_weight"]) == pytest.approx(ck.meta["bits_per_weight"], rel=1e-12)
