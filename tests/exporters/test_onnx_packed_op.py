"""Tests of the ai.pbs2p::PackedLinear schema (the checker enforces it, shape inference uses it) and its Python reference."""

import numpy as np
import onnx
import pytest
import torch
from checkpoint.tiny_compressed import sign_binarize
from onnx import TensorProto, helper

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack import pack_layer
from pbs2p_exporters.onnx_packed_op import ATTRIBUTES, DOMAIN, register_packed_linear_schema
from exporters.onnx_reference_op import reference_evaluator


def _model(attrs: dict, inputs=("x", "lin.signs", "lin.alpha"), alpha_dtype=np.float16):
    torch.manual_seed(0)
    r = sign_binarize(torch.randn(16, 32), 4, 8, 32)
    p = pack_layer(r.mask.numpy(), r.signs.numpy(), r.salient.numpy(), r.group.numpy(), r.alpha.numpy(),
                   np.zeros_like(r.mu.numpy()), None, 4, 8, 32)
    inits = [onnx.numpy_helper.from_array(p.arrays["mask"], "lin.mask"),
             onnx.numpy_helper.from_array(p.arrays["signs"], "lin.signs"),
             onnx.numpy_helper.from_array(p.arrays["alpha"].astype(alpha_dtype), "lin.alpha")]
    node = helper.make_node("PackedLinear", list(inputs), ["y"], domain=DOMAIN, **attrs)
    relu = helper.make_node("Relu", ["y"], ["z"])
    graph = helper.make_graph([node, relu], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 16])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25), helper.make_opsetid(DOMAIN, 1)],
                             ir_version=11), p


GOOD = dict(rows=16, cols=32, n=4, m=8, group_size=32, split=1, n_salient=0, has_mu=0, has_col_scale=0,
            format_version=1)
FULL = ("x", "lin.mask", "lin.signs", "", "", "", "lin.alpha")


def test_schema_is_enforced_and_infers_shapes():
    register_packed_linear_schema()
    register_packed_linear_schema()  # idempotent
    model, _ = _model(GOOD, FULL)
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    y = next(v for v in inferred.graph.value_info if v.name == "y")
    assert y.type.tensor_type.elem_type == TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim] == ["b", 16]
    with pytest.raises(onnx.checker.ValidationError):  # an attribute the op does not have
        onnx.checker.check_model(_model({**GOOD, "bogus": 1}, FULL)[0], full_check=True)
    with pytest.raises(onnx.checker.ValidationError):  # a required attribute missing
        onnx.checker.check_model(_model({k: v for k, v in GOOD.items() if k != "rows"}, FULL)[0], full_check=True)
    with pytest.raises(onnx.shape_inference.InferenceError):  # float32 scales where float16 is required
        onnx.checker.check_model(_model(GOOD, FULL, alpha_dtype=np.float32)[0], full_check=True)
    assert set(ATTRIBUTES) == set(GOOD)


def test_reference_op_computes_x_w_hat():
    from pbs2p_edge.pack import unpack_layer

    model, p = _model(GOOD, FULL)
    x = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    z = reference_evaluator(model).run(None, {"x": x})[0]
    ref = np.maximum(x.astype(np.float64) @ unpack_layer(p).T.astype(np.float64), 0)
    assert np.abs(z - ref).max() <= 1e-6 * np.abs(ref).max() and np.count_nonzero(z) == np.count_nonzero(ref)


def test_reference_op_rejects_other_format_versions():
    model, _ = _model({**GOOD, "format_version": 2}, FULL)
    with pytest.raises(FormatError, match="format_version 2"):
        reference_evaluator(model).run(None, {"x": np.zeros((1, 32), np.float32)})
