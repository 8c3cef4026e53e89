"""Tests of libpbs2p's ONNX Runtime custom op ai.pbs2p::PackedLinear (native/src/ort_op.c): the custom-flavor
export runs in stock onnxruntime after register_custom_ops_library(libpbs2p) and gives the portable flavor's and
the Python reference op's logits and KV cache; nodes that disagree with their attributes are ORT errors."""

import ctypes

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from exporters.onnx_run import feeds, rel_err, run
from onnx import TensorProto, helper, numpy_helper
from transformers import AutoConfig

from pbs2p_edge.pack import LayerMeta, unpack_layer
from pbs2p_edge.pack.packer import PackedLayer
from pbs2p_edge.runtime.library import find_library
from pbs2p_exporters.onnx_export import export_onnx
from pbs2p_exporters.onnx_packed_op import DOMAIN, INPUTS, OP_TYPE, OP_VERSION, PACKED_INPUTS

# max |custom - other| / (logit or KV range). libpbs2p's kernels are float32 like the portable flavor's MatMul but
# sum in another order (per scale group and bit plane vs a dense dot product), so they differ by float32 rounding
# only: measured <= 1.9e-7 on these models (AVX-512 and reference kernels); 10x that still fails on any wrong
# weight, scale, bias or input order (those move logits by > 1e-3 of the range).
TOL = 2e-6
PROMPT = np.array([[5, 17, 99, 3, 250, 11, 7, 64, 201]], np.int64)
# untied llama: 5 salient, 2 split groups; opt: 3; qwen2: q/k/v biases; mistral: a sliding window (4) < PROMPT
CKPTS = ["llama_ckpt", "llama_untied_ckpt", "qwen2_ckpt", "mistral_ckpt", "gemma3_ckpt", "opt_ckpt"]


def ort_session(model, **kw) -> ort.InferenceSession:
    """A CPU session with libpbs2p's custom ops; `model` is a path or a serialized ModelProto."""
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(find_library()))
    so.intra_op_num_threads = 1
    model = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"], **kw)


def ort_run(sess: ort.InferenceSession, inputs: dict) -> dict:
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))


@pytest.fixture(scope="module")
def exported(request, tmp_path_factory):
    """checkpoint fixture name -> (custom path, portable path, config), exported once per module."""
    out = {}
    for which in CKPTS:
        ck = request.getfixturevalue(which)
        d = tmp_path_factory.mktemp(which)
        custom, portable = export_onnx(ck, d / "c.onnx"), export_onnx(ck, d / "p.onnx", flavor="portable")
        out[which] = (custom, portable, AutoConfig.from_pretrained(ck))
    return out


def _close(got: dict, ref: dict, tol: float = TOL) -> None:
    assert got.keys() == ref.keys()
    for name in ref:
        assert got[name].shape == ref[name].shape, name
        assert rel_err(got[name], ref[name]) <= tol, name


@pytest.mark.parametrize("which", CKPTS)
def test_custom_flavor_in_onnxruntime_matches_portable_and_reference(exported, which):
    custom, portable, cfg = exported[which]
    m = onnx.load(str(custom))
    nodes = [n for n in m.graph.node if n.op_type == OP_TYPE]
    ns = {helper.get_attribute_value(next(a for a in n.attribute if a.name == "n")) for n in nodes}
    assert len(nodes) == cfg.num_hidden_layers * (6 if which.startswith("opt") else 7) and len(ns) == 2  # N 4 and 3
    f = feeds(cfg, PROMPT)
    got = ort_run(ort_session(custom), f)
    _close(got, run(portable, "portable", f))
    _close(got, run(custom, "custom", f))  # onnx ReferenceEvaluator + Python PackedLinear
    assert np.abs(got["logits"]).max() > 0 and got["present.1.value"].shape[2] == PROMPT.shape[1]


@pytest.mark.parametrize("which", ["llama_ckpt", "opt_ckpt"])
def test_kv_cache_decoding_one_token_at_a_time(exported, which):
    """Prompt (gemm) then single tokens (gemv) through the KV cache equal the full sequence in the portable flavor."""
    custom, portable, cfg = exported[which]
    sess = ort_session(custom)
    full = run(portable, "portable", feeds(cfg, PROMPT))
    step = ort_run(sess, feeds(cfg, PROMPT[:, :7]))
    logits = [step["logits"]]
    for t in (7, 8):
        step = ort_run(sess, feeds(cfg, PROMPT[:, t:t + 1], past=step))
        logits.append(step["logits"])
    assert step["present.0.key"].shape[2] == 9
    assert rel_err(np.concatenate(logits, axis=1), full["logits"]) <= TOL
    assert rel_err(step["present.1.value"], full["present.1.value"]) <= TOL


@pytest.mark.parametrize("which", ["tiered_ckpt", "opt_tiered_ckpt"])
def test_mixed_tier_custom_flavor_in_onnxruntime(request, tmp_path, which):
    """Binary layers through libpbs2p's kernel, grid / f16 layers through the standard-op encoding, in one session."""
    ck = request.getfixturevalue(which)
    custom, portable = export_onnx(ck, tmp_path / "c.onnx"), export_onnx(ck, tmp_path / "p.onnx", flavor="portable")
    cfg = AutoConfig.from_pretrained(ck)
    ops = [n.op_type for n in onnx.load(str(custom)).graph.node]
    assert OP_TYPE in ops and "DequantizeLinear" in ops
    f = feeds(cfg, PROMPT)
    got = ort_run(ort_session(custom), f)
    _close(got, run(portable, "portable", f))
    _close(got, run(custom, "custom", f))


def test_batch_of_two_sequences(exported):
    custom, portable, cfg = exported["llama_untied_ckpt"]
    ids = np.stack([PROMPT[0], PROMPT[0, ::-1]])
    f = feeds(cfg, ids)
    _close(ort_run(ort_session(custom), f), run(portable, "portable", f))


# ---- one PackedLinear node --------------------------------------------------------------------------------------

def _linear(custom_path, which: str = "model.layers.0.mlp.down_proj"):
    """(attributes, {input name: array}) of one exported PackedLinear node; absent inputs are left out."""
    m = onnx.load(str(custom_path))
    node = next(n for n in m.graph.node if n.op_type == OP_TYPE and n.name.startswith(which))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    arrays = {key: init[name] for key, name in zip(INPUTS[1:], node.input[1:]) if name}
    return attrs, arrays


def _node_model(attrs: dict, arrays: dict, as_inputs: bool = False, x_dims=("b", "s", "k")) -> bytes:
    """A one-node model Y = PackedLinear(X, arrays...); arrays are initializers, or graph inputs when as_inputs."""
    ins, inits, graph_inputs = ["X"], [], [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_dims))]
    for key in INPUTS[1:]:
        if key not in arrays:
            ins.append("")
            continue
        a = arrays[key]
        ins.append(key)
        if as_inputs:
            dims = [f"{key}_{i}" for i in range(a.ndim)]  # symbolic: the kernel, not ORT, checks the shapes
            graph_inputs.append(helper.make_tensor_value_info(key, helper.np_dtype_to_tensor_dtype(a.dtype), dims))
        else:
            inits.append(numpy_helper.from_array(a, key))
    while ins[-1] == "":
        ins.pop()
    node = helper.make_node(OP_TYPE, ins, ["Y"], name="lin", domain=DOMAIN, **attrs)
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "one", graph_inputs, [y], initializer=inits)
    opsets = [helper.make_opsetid("", 25), helper.make_opsetid(DOMAIN, OP_VERSION)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=11)
    return model.SerializeToString()


def _reference(attrs: dict, arrays: dict, X: np.ndarray) -> np.ndarray:
    meta = LayerMeta(rows=attrs["rows"], cols=attrs["cols"], n=attrs["n"], m=attrs["m"], group_size=attrs["group_size"],
                     split=attrs["split"], has_salient=attrs["n_salient"] > 0, n_salient=attrs["n_salient"],
                     has_mu=bool(attrs["has_mu"]), has_col_scale=bool(attrs["has_col_scale"]))
    W = unpack_layer(PackedLayer(meta, {k: v for k, v in arrays.items() if k in PACKED_INPUTS}))
    y = X.astype(np.float64) @ W.T.astype(np.float64)
    return y + arrays["bias"] if "bias" in arrays else y


@pytest.mark.parametrize("which", ["llama_untied_ckpt", "opt_ckpt"])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5,)])
def test_single_node_matches_unpacked_weights(exported, which, shape):
    """Any leading shape; one token runs gemv. opt has biases; both have salient columns and split groups."""
    linear = "model.decoder.layers.1.fc2" if which == "opt_ckpt" else "model.layers.1.self_attn.q_proj"
    attrs, arrays = _linear(exported[which][0], linear)
    assert attrs["n_salient"] > 0 and attrs["split"] >= 2 and ("bias" in arrays) == (which == "opt_ckpt")
    X = np.random.default_rng(1).standard_normal((*shape, attrs["cols"])).astype(np.float32)
    ref = _reference(attrs, arrays, X)
    for as_inputs in (False, True):  # constant initializers (prepared once) and run-time streams
        sess = ort_session(_node_model(attrs, arrays, as_inputs=as_inputs, x_dims=[f"d{i}" for i in range(X.ndim)]))
        f = {"X": X, **(arrays if as_inputs else {})}
        Y = sess.run(None, f)[0]
        assert Y.shape == (*shape, attrs["rows"]) and Y.dtype == np.float32
        assert np.abs(Y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_empty_batch_gives_empty_output(exported):
    attrs, arrays = _linear(exported["llama_ckpt"][0])
    Y = ort_session(_node_model(attrs, arrays)).run(None, {"X": np.zeros((0, 4, attrs["cols"]), np.float32)})[0]
    assert Y.shape == (0, 4, attrs["rows"])


def _expect_error(model: bytes, match: str, feed=None):
    """The session creation (constant streams) or the run fails with our message; the process survives."""
    with pytest.raises(Exception, match=match):
        sess = ort_session(model)
        sess.run(None, feed)


@pytest.fixture(scope="module")
def down(exported):
    """down_proj of the untied llama: 5 salient columns, 2 split groups, mask (n < m), mu."""
    return _linear(exported["llama_untied_ckpt"][0])


def test_wrong_stream_shape_is_an_ort_error(down):
    attrs, arrays = down
    x = {"X": np.ones((1, 2, attrs["cols"]), np.float32)}
    bad = dict(arrays, alpha=arrays["alpha"][:1])
    _expect_error(_node_model(attrs, bad),
                  r"lin': input 'alpha' must be float16 \[3, 64, 4\].*got float16 \[1, 64, 4\]", x)
    _expect_error(_node_model(dict(attrs, rows=attrs["rows"] + 1), arrays), r"input 'mask' must be uint8 \[65, ", x)
    bad = dict(arrays, signs=arrays["signs"].astype(np.float16))
    with pytest.raises(Exception):  # a wrong element type: ORT's own type check or ours, never a crash
        ort_session(_node_model(attrs, bad)).run(None, x)
    # run-time streams: checked on every run
    sess = ort_session(_node_model(attrs, arrays, as_inputs=True, x_dims=("b", "s", "k")))
    with pytest.raises(Exception, match=r"input 'signs2' must be uint8 \[64, 1\]"):
        sess.run(None, {**x, **arrays, "signs2": np.zeros((64, 2), np.uint8)})


def test_missing_or_unexpected_inputs_are_ort_errors(down):
    attrs, arrays = down
    x = {"X": np.ones((1, 2, attrs["cols"]), np.float32)}
    no_mask = {k: v for k, v in arrays.items() if k != "mask"}
    _expect_error(_node_model(attrs, no_mask), r"input 'mask' is absent but it is stored exactly when n < m", x)
    _expect_error(_node_model(dict(attrs, split=1), arrays), r"input 'groups' is present but .*split >= 2", x)
    _expect_error(_node_model(dict(attrs, has_mu=0), arrays), r"input 'mu' is present but .*has_mu = 1", x)


def test_bad_attributes_and_corrupt_streams_are_ort_errors(down):
    attrs, arrays = down
    x = {"X": np.ones((1, 2, attrs["cols"]), np.float32)}
    _expect_error(_node_model(dict(attrs, m=6), arrays), r"bad attributes: N:M = 4:6 is invalid", x)
    _expect_error(_node_model(dict(attrs, format_version=2), arrays), r"bad attributes: packed format version 2", x)
    _expect_error(_node_model(dict(attrs, rows=2**40), arrays), r"attribute 'rows' = 1099511627776 is out of range", x)
    no_attr = {k: v for k, v in attrs.items() if k != "group_size"}
    _expect_error(_node_model(no_attr, arrays), r"int attribute 'group_size' is required", x)
    salient = arrays["salient"].copy()
    salient[0] ^= 1 << int(np.flatnonzero(np.unpackbits(salient[:1], bitorder="little") == 0)[0])  # one more column
    _expect_error(_node_model(attrs, dict(arrays, salient=salient)),
                  r"packed streams rejected: salient stream marks 6 columns but n_salient is 5", x)


def test_non_finite_scales_and_bias_are_ort_errors_not_nan_outputs(exported, down):
    """A NaN or infinite scale (alpha, alpha2, mu: pbs2p_layer_prepare's check, as for GGUF files) or bias (the op's
    own) fails the session or the run with the element named, as constant initializers and as run-time streams."""
    fc2 = _linear(exported["opt_ckpt"][0], "model.decoder.layers.1.fc2")
    cases = [(down, "alpha", np.nan, r"scale alpha\[0\] is NaN"),
             (down, "alpha2", np.inf, r"scale alpha2\[0\] is infinite"),
             (down, "mu", -np.inf, r"scale mu\[0\] is infinite"),
             (fc2, "bias", np.nan, r"input 'bias' \[0\] is NaN")]
    for (attrs, arrays), key, value, match in cases:
        bad = arrays[key].copy()
        bad.reshape(-1)[0] = value
        bad = dict(arrays, **{key: bad})
        x = {"X": np.ones((1, 2, attrs["cols"]), np.float32)}
        _expect_error(_node_model(attrs, bad), match, x)
        sess = ort_session(_node_model(attrs, bad, as_inputs=True))
        with pytest.raises(Exception, match=match):
            sess.run(None, {**x, **bad})
        assert np.isfinite(sess.run(None, {**x, **arrays})[0]).all()


def test_wrong_activations_are_ort_errors(down):
    attrs, arrays = down
    sess = ort_session(_node_model(attrs, arrays))
    with pytest.raises(Exception, match=r"input 'X' must be float32 \[\.\.\., 128\] \(cols\), got float32 of rank 3 "
                                        r"with last dimension 64"):
        sess.run(None, {"X": np.ones((1, 2, 64), np.float32)})
    assert sess.run(None, {"X": np.ones((1, 2, attrs["cols"]), np.float32)})[0].shape == (1, 2, attrs["rows"])


def test_threads_variable_is_checked_and_does_not_change_results(down, monkeypatch):
    attrs, arrays = down
    model = _node_model(attrs, arrays)
    X = np.random.default_rng(2).standard_normal((3, 7, attrs["cols"])).astype(np.float32)
    one = ort_session(model).run(None, {"X": X})[0]
    monkeypatch.setenv("PBS2P_ORT_THREADS", "4")
    monkeypatch.setenv("PBS2P_MIN_WORK_PER_THREAD", "1")  # force gemm to really split rows across threads
    assert np.array_equal(ort_session(model).run(None, {"X": X})[0], one)
    monkeypatch.setenv("PBS2P_ORT_THREADS", "0")
    _expect_error(model, r"PBS2P_ORT_THREADS=0 must be an integer in 1\.\.64", {"X": X})



def test_registration_refuses_an_onnxruntime_without_api_16():
    """GetApi(16) returning NULL (onnxruntime < 1.16) gives a status made with GetApi(1), not a crash or a silent
    success. A fake OrtApiBase stands in for the old runtime: only OrtApi slot 0 (CreateStatus) is filled."""
    lib = ctypes.CDLL(str(find_library()))
    seen, requested = {}, []
    create_status_t = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)
    get_api_t = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)
    version_t = ctypes.CFUNCTYPE(ctypes.c_void_p)

    class ApiBase(ctypes.Structure):
        _fields_ = [("GetApi", get_api_t), ("GetVersionString", version_t)]

    def create_status(code, msg):
        seen["status"] = (code, msg.decode())
        return 0x5A7
    create_status_fn = create_status_t(create_status)
    table = (ctypes.c_void_p * 250)()
    table[0] = ctypes.cast(create_status_fn, ctypes.c_void_p).value
    old_version = ctypes.create_string_buffer(b"1.15.1")

    def get_api(version):
        requested.append(version)
        return ctypes.addressof(table) if version == 1 else None
    base = ApiBase(get_api_t(get_api), version_t(lambda: ctypes.addressof(old_version)))
    lib.RegisterCustomOps.restype = ctypes.c_void_p
    lib.RegisterCustomOps.argtypes = [ctypes.c_void_p, ctypes.POINTER(ApiBase)]
    assert lib.RegisterCustomOps(None, ctypes.byref(base)) == 0x5A7
    assert requested == [16, 1]
    assert seen["status"] == (1, "libpbs2p's ai.pbs2p::PackedLinear needs the ONNX Runtime C API version 16 "
                                 "(onnxruntime >= 1.16); this onnxruntime is 1.15.1")
