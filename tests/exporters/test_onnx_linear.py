"""Tests of the two ONNX linear encodings: both rebuild W_hat exactly (bit for bit) and cost what docs/ONNX.md says."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from checkpoint.tiny_compressed import sign_binarize
from onnx import TensorProto, helper

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack import honest_bits, pack_layer, unpack_layer
from pbs2p_edge.pack.checkpoint_dir import load_checkpoint
from pbs2p_exporters.onnx_graph_builder import GraphBuilder
from pbs2p_exporters.onnx_int_tensor import INT_TYPES, int_tensor
from pbs2p_exporters.onnx_linear import custom_linear, portable_linear
from pbs2p_exporters.onnx_packed_op import DOMAIN, register_packed_linear_schema
from exporters.onnx_reference_op import reference_evaluator


def _layer(R, K, n, m, gs, n_salient=0, split=1, col_scale=False, seed=0):
    torch.manual_seed(seed)
    r = sign_binarize(torch.randn(R, K), n, m, gs, n_salient=n_salient, split=split)
    cs = None
    if col_scale:  # float16-exact positive per-region column scales
        cs = np.random.default_rng(seed).uniform(0.5, 2, (1 + split, K)).astype(np.float16).astype(np.float32)
    return pack_layer(r.mask.numpy(), r.signs.numpy(), r.salient.numpy(), r.group.numpy(), r.alpha.numpy(),
                      r.mu.numpy(), cs, n, m, gs)


def _single_linear_model(packed, flavor, bias=None):
    b = GraphBuilder()
    x = b.input("x", TensorProto.FLOAT, ["rows_x", packed.meta.cols])
    encode = custom_linear if flavor == "custom" else portable_linear
    b.output(encode(b, x, "lin", packed, bias), "y", TensorProto.FLOAT, ["rows_x", packed.meta.rows])
    opsets = [helper.make_opsetid("", 25)] + ([helper.make_opsetid(DOMAIN, 1)] if flavor == "custom" else [])
    register_packed_linear_schema()
    model = helper.make_model(b.graph("one"), opset_imports=opsets, ir_version=11)
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(model, flavor, x):
    if flavor == "custom":
        return reference_evaluator(model).run(None, {"x": x})[0]
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


LAYERS = {
    "pbs2p-default-4of8": dict(R=24, K=96, n=4, m=8, gs=32),
    "billm-salient-split2-5of8": dict(R=20, K=96, n=5, m=8, gs=32, n_salient=9, split=2),
    "split3-6of8-odd-group": dict(R=16, K=96, n=6, m=8, gs=40, n_salient=3, split=3),  # last group 16 columns
    "col-scale-2of4": dict(R=12, K=64, n=2, m=4, gs=24, split=2, col_scale=True),
    "dense-8of8": dict(R=8, K=48, n=8, m=8, gs=16),  # N = M: no mask stream
}


@pytest.mark.parametrize("flavor", ["custom", "portable"])
@pytest.mark.parametrize("case", list(LAYERS))
def test_weights_exact(case, flavor):
    """X = I gives Y = W_hat^T: each output is one product by 1 plus zeros, so it is exact in any GEMM."""
    p = _layer(**LAYERS[case])
    model = _single_linear_model(p, flavor)
    wt = _run(model, flavor, np.eye(p.meta.cols, dtype=np.float32))
    assert np.array_equal(wt, unpack_layer(p).T)


@pytest.mark.parametrize("flavor", ["custom", "portable"])
def test_bias_and_batched_input(flavor):
    p = _layer(R=24, K=96, n=4, m=8, gs=32, n_salient=4, split=2)
    bias = np.random.default_rng(1).standard_normal(24).astype(np.float32)
    model = _single_linear_model(p, flavor, bias)
    x = np.random.default_rng(2).standard_normal((5, 96)).astype(np.float32)
    ref = x.astype(np.float64) @ unpack_layer(p).T.astype(np.float64) + bias
    assert np.abs(_run(model, flavor, x) - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("data_type", list(INT_TYPES))
def test_int_tensor_matches_onnx_helper(data_type):
    bits, lo, hi = INT_TYPES[data_type]
    values = np.random.default_rng(0).integers(lo, hi + 1, size=(7, 5))  # 35 values: a partial last byte
    values[0, :2] = lo, hi
    ours = int_tensor("p", values, data_type)
    ref = helper.make_tensor("p", data_type, values.shape, values.reshape(-1).tolist())
    assert onnx.numpy_helper.to_array(ours).astype(np.int64).tolist() == values.tolist()
    assert len(ours.raw_data) == -(-35 * bits // 8)
    if bits < 8:  # onnx's own writer packs sub-byte types the same way, the bytes as an int32 list
        assert list(ours.raw_data) == list(ref.int32_data)
    else:
        assert onnx.numpy_helper.to_array(ref).tolist() == values.tolist()
    with pytest.raises(FormatError, match="do not fit"):
        int_tensor("p", np.array([hi + 1]), data_type)


def _linear_bytes(model):
    return sum(len(t.raw_data) for t in model.graph.initializer if t.name.startswith("lin."))


def test_honest_sizes_576x576_4of8():
    """The docs/ONNX.md §5 table: custom = the packed format; portable = one INT2 plane per region + fp16 scales."""
    p = _layer(R=576, K=576, n=4, m=8, gs=128)
    custom = _linear_bytes(_single_linear_model(p, "custom"))
    portable = _linear_bytes(_single_linear_model(p, "portable"))
    assert custom * 8 == honest_bits(p)
    assert round(custom * 8 / 576 ** 2, 4) == 1.6528
    assert portable == 576 * 576 // 4 + 2 * (5 * 576 * 2)  # plane + alpha + mu, 5 scale groups
    assert round(portable * 8 / 576 ** 2, 4) == 2.2778


def test_checkpoint_layers_exact_in_portable_encoding(llama_untied_ckpt):
    """Every layer of a real checkpoint (mixed N, salient columns, 2 split groups) survives the portable encoding."""
    ck = load_checkpoint(llama_untied_ckpt)
    for name in list(ck.layers)[:7]:
        p = ck.layers[name]
        wt = _run(_single_linear_model(p, "portable"), "portable", np.eye(p.meta.cols, dtype=np.float32))
        assert np.array_equal(wt, unpack_layer(p).T), name
