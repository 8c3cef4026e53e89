"""Families of broken inputs made from valid ones, for the bad-input tests (tests/test_cli.py) and the Python-side
fuzz benchmark (bench/python_fuzz.py): every one must give one error line and exit status 2."""

from __future__ import annotations

import json
import shutil
import struct

import gguf


def corrupt_ggufs(src, root):
    """name -> path: a family of broken copies of the pbs2p GGUF `src`: truncations in the header, the key-values,
    the tensor infos and the data; counts and lengths that overrun the file; n_dims 0xFFFFFFFF; well-formed files with
    impossible hyper-parameters (head_count 0, vocab_size 1e9, architecture "llamb"); a token string that is not
    UTF-8 (same length, so every offset stays valid); a NaN norm weight and an infinite alpha scale."""
    data = src.read_bytes()
    reader = gguf.GGUFReader(str(src))
    base = reader.data.__array_interface__["data"][0]
    infos = min(int(t.field.offset) for t in reader.tensors)  # the first tensor info
    out = {}

    def put(name, b):
        out[name] = root / f"{name}.gguf"
        out[name].write_bytes(bytes(b))

    for name, cut in [("cut-magic", 3), ("cut-header", 20), ("cut-kv", 24 + (infos - 24) // 3), ("cut-kv-end", infos - 5),
                      ("cut-infos", infos + 13), ("cut-data", int(reader.data_offset) + 100), ("cut-last", len(data) - 1)]:
        put(name, data[:cut])
    for name, at, fmt, value in [("huge-tensor-count", 8, "<Q", 1 << 62), ("huge-kv-count", 16, "<Q", 1 << 62),
                                 ("huge-key-length", 24, "<Q", 1 << 60), ("ndims-ffffffff", None, "<I", 0xFFFFFFFF)]:
        b = bytearray(data)
        if at is None:  # a tensor info: u64 name length, name, u32 n_dims
            at = infos + 8 + struct.unpack_from("<Q", b, infos)[0]
        struct.pack_into(fmt, b, at, value)
        put(name, b)
    for name, key, value in [("head-count-0", b"llama.attention.head_count", 0), ("vocab-1e9", b"llama.vocab_size", 10**9)]:
        b = bytearray(data)
        at = b.find(struct.pack("<Q", len(key)) + key + struct.pack("<I", 4))  # a UINT32 key-value
        if at >= 0:  # vocab_size is optional
            struct.pack_into("<I", b, at + 8 + len(key) + 4, value)
            put(name, b)
    b = bytearray(data)
    arch = b.find(b"general.architecture")
    at = b.find(b"llama", arch + len("general.architecture"))
    b[at:at + 5] = b"llamb"  # well-formed, readable by gguf-py, not an architecture libpbs2p runs
    put("architecture-llamb", b)
    tokens = reader.fields["tokenizer.ggml.tokens"]
    token = next(tokens.parts[i] for i in tokens.data if len(tokens.parts[i]) > 1)
    b = bytearray(data)
    b[token.__array_interface__["data"][0] - base] = 0xFF
    put("token-not-utf8", b)
    b = bytearray(data)  # an array of 2^60 elements in a 100 KB file (gguf-py would walk it until memory runs out)
    key = b"pbs2p.linear.honest_bits"
    at = b.find(struct.pack("<Q", len(key)) + key)
    struct.pack_into("<Q", b, at + 8 + len(key) + 4 + 4, 1 << 60)  # after the value type and the element type
    put("huge-array-count", b)
    for name, tensor, raw in [("norm-nan", "output_norm.weight", struct.pack("<f", float("nan"))),
                              ("alpha-inf", ".alpha", struct.pack("<H", 0x7C00))]:  # well-formed, non-finite values
        t = next(t for t in reader.tensors if t.name.endswith(tensor))
        b = bytearray(data)
        b[int(t.data_offset):int(t.data_offset) + len(raw)] = raw
        put(name, b)
    return out


def corrupt_checkpoints(src, root):
    """name -> directory: broken copies of the checkpoint `src`: each file missing, cut in half, or garbage; a
    safetensors header length past the file; pbs2p.json fields of the wrong kind or naming what is not there;
    config.json naming another architecture or no sizes."""
    out = {}

    def copy(name):
        out[name] = shutil.copytree(src, root / name)
        return out[name]

    for f in ("pbs2p.json", "config.json", "packed.safetensors", "dense.safetensors"):
        (copy(f"missing-{f}") / f).unlink()
        data = (src / f).read_bytes()
        (copy(f"cut-{f}") / f).write_bytes(data[: len(data) // 2])
        (copy(f"garbage-{f}") / f).write_bytes(b"\x00\xffnot this file\n")
    for f in ("packed.safetensors", "dense.safetensors"):
        b = bytearray((src / f).read_bytes())
        struct.pack_into("<Q", b, 0, 1 << 62)
        (copy(f"huge-header-{f}") / f).write_bytes(bytes(b))
    meta = json.loads((src / "pbs2p.json").read_text())
    first = next(iter(meta["layers"]))
    edits = {
        "format": "pbs2p-something", "format_version": 99, "compress_config": "pbs2p", "layers": [],
        "layer-rows": {**meta["layers"], first: {**meta["layers"][first], "rows": 3}},
        "layer-not-a-table": {**meta["layers"], first: 7},
        "layer-has-mu": {**meta["layers"], first: {**meta["layers"][first], "has_mu": "x"}}, "extra": True,
        "tiers": {first: "q9_9"}, "tied": {"lm_head.weight": "model.nothing.weight"},
        "blocks": {"compressed": 5, "total": 2}, "embed_tier": "q9_9", "grid_layers": [1, 2],
    }
    for key, value in edits.items():
        field = key.split("-")[0] if key.startswith("layer-") else key
        m = dict(meta, **{"layers" if field == "layer" else field: value})
        (copy(f"meta-{key}") / "pbs2p.json").write_text(json.dumps(m))
    config = json.loads((src / "config.json").read_text())
    (copy("config-gpt2") / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    (copy("config-no-sizes") / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (copy("config-list") / "config.json").write_text("[1, 2, 3]")
    for name, edit in [("theta-none", {"rope_theta": None, "rope_parameters": {"rope_type": "default", "rope_theta": None}}),
                       ("eps-text", {"rms_norm_eps": "x"}), ("eps-none", {"rms_norm_eps": None}),
                       ("type-table", {"model_type": {"a": 1}}), ("positions-none", {"max_position_embeddings": None}),
                       ("pad-past-vocab", {"pad_token_id": 1 << 40})]:
        (copy(f"config-{name}") / "config.json").write_text(json.dumps({**config, **edit}))
    alpha = next(k for k in _safetensors_names(src / "packed.safetensors") if k.endswith(".alpha"))
    nan = copy("nan-scale")
    arrays = _load(nan / "packed.safetensors")
    arrays[alpha] = arrays[alpha].copy()
    arrays[alpha].reshape(-1)[0] = float("nan")
    _save(arrays, nan / "packed.safetensors")
    return out


def _safetensors_names(path) -> list[str]:
    return list(_load(path))


def _load(path):
    from safetensors.numpy import load_file

    return load_file(str(path))


def _save(arrays, path) -> None:
    from safetensors.numpy import save_file

    save_file(arrays, str(path))


def corrupt_onnx(src, root):
    """name -> path: broken copies of the custom-flavor pbs2p ONNX file `src`: truncations and garbage; a name and a
    metadata value that are not UTF-8; a PackedLinear node without a required input, with an input it must not have,
    without or with impossible attributes; stream initializers of the wrong shape, element type or byte count; NaN /
    Inf scales, norms and embedding (each would make logits non-finite); pbs2p.* metadata missing or of the wrong
    kind; external tensor data missing, cut, or outside the model's directory."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    data = src.read_bytes()
    out = {}

    def put(name, b):
        out[name] = root / f"{name}.onnx"
        out[name].write_bytes(bytes(b))

    for name, cut in [("empty", 0), ("cut-3", 3), ("cut-header", 64), ("cut-half", len(data) // 2),
                      ("cut-last", len(data) - 1)]:
        put(name, data[:cut])
    put("garbage", b"\x00\xffnot an ONNX model\n" * 8)
    put("gguf-bytes", b"GGUF" + bytes(60))
    b = bytearray(data)  # a graph input's name not UTF-8: onnxruntime's error about it cannot be decoded in Python
    b[b.find(b"input_ids") + 1] = 0xFF
    put("input-name-not-utf8", b)
    b = bytearray(data)  # a metadata value not UTF-8: protobuf then gives bytes, not str
    b[b.find(b"llama", b.find(b"pbs2p.model_type"))] = 0xFF
    put("meta-not-utf8", b)

    def edit(name, change):
        m = onnx.load_from_string(data)
        change(m)
        put(name, m.SerializeToString())

    def node(m, i=0):
        return [n for n in m.graph.node if n.op_type == "PackedLinear"][i]

    def attr(n, key):
        return next(a for a in n.attribute if a.name == key)

    def init(m, input_name):
        return next(t for t in m.graph.initializer if t.name == node(m).input[INPUT_INDEX[input_name]])

    def set_input(key, value):
        return lambda m: node(m).input.__setitem__(INPUT_INDEX[key], value)

    def set_attr(key, value):
        return lambda m: setattr(attr(node(m), key), "i", value)

    def drop_attr(key):
        return lambda m: node(m).attribute.remove(attr(node(m), key))

    def set_array(key, f):
        def change(m):
            t = init(m, key)
            t.CopyFrom(numpy_helper.from_array(f(numpy_helper.to_array(t)), t.name))
        return change

    def poison(key, value):
        return set_array(key, lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, value, a).astype(a.dtype))

    meta = lambda m, key: next(p for p in m.metadata_props if p.key == key)  # noqa: E731
    for name, change in [
        ("op-no-signs", set_input("signs", "")), ("op-no-alpha", set_input("alpha", "")),
        ("op-no-mask", set_input("mask", "")),
        ("op-unexpected-col-scale", lambda m: node(m).input.append(node(m).input[INPUT_INDEX["alpha"]])),
        ("op-no-rows", drop_attr("rows")), ("op-no-format-version", drop_attr("format_version")),
        ("op-rows-2^40", set_attr("rows", 1 << 40)),
        ("op-rows-plus-1", lambda m: set_attr("rows", attr(node(m), "rows").i + 1)(m)),
        ("op-cols-plus-8", lambda m: set_attr("cols", attr(node(m), "cols").i + 8)(m)),
        ("op-n-over-m", lambda m: set_attr("n", attr(node(m), "m").i + 1)(m)), ("op-m-0", set_attr("m", 0)),
        ("op-group-size-0", set_attr("group_size", 0)), ("op-group-size-neg", set_attr("group_size", -64)),
        ("op-split-9", set_attr("split", 9)), ("op-has-mu-2", set_attr("has_mu", 2)),
        ("op-format-version-99", set_attr("format_version", 99)),
        ("op-type-unknown", lambda m: setattr(node(m), "op_type", "PackedLinear2")),
        ("op-domain-version-2", lambda m: [setattr(o, "version", 2) for o in m.opset_import if o.domain == "ai.pbs2p"]),
        ("init-alpha-shape", set_array("alpha", lambda a: a.reshape(a.shape[0], -1))),
        ("init-alpha-rows-cut", set_array("alpha", lambda a: a[:, :-1])),
        ("init-alpha-float32", set_array("alpha", lambda a: a.astype(np.float32))),
        ("init-signs-int8", set_array("signs", lambda a: a.view(np.int8))),
        ("init-signs-short", lambda m: setattr(init(m, "signs"), "raw_data", init(m, "signs").raw_data[:-7])),
        ("init-alpha-nan", poison("alpha", np.nan)), ("init-alpha-inf", poison("alpha", np.inf)),
        ("init-mu-nan", poison("mu", np.nan)),
        ("init-norm-nan", lambda m: _poison_float(m, "norm", np.nan)),
        ("init-final-norm-nan", lambda m: _poison_float(m, "model.norm.", np.nan)),
        ("init-embedding-inf", lambda m: _poison_float(m, "embed", np.inf)),
        ("meta-no-format-version", lambda m: m.metadata_props.remove(meta(m, "pbs2p.format_version"))),
        ("meta-format-version-x", lambda m: setattr(meta(m, "pbs2p.format_version"), "value", "x")),
        ("meta-format-version-99", lambda m: setattr(meta(m, "pbs2p.format_version"), "value", "99")),
        ("meta-flavor-unknown", lambda m: setattr(meta(m, "pbs2p.onnx_flavor"), "value", "fancy")),
        ("meta-config-not-json", lambda m: setattr(meta(m, "pbs2p.compress_config"), "value", "{")),
        ("meta-names-not-a-list", lambda m: setattr(meta(m, "pbs2p.linear.source_names"), "value", "7")),
        ("meta-bits-nan", lambda m: setattr(meta(m, "pbs2p.bits_per_weight"), "value", "nan")),
    ]:
        edit(name, change)
    # tensors in a .data file beside the model (large exports): missing, cut, or named outside the directory
    for name, damage in [("external-missing", lambda d: d.unlink()),
                         ("external-cut", lambda d: d.write_bytes(d.read_bytes()[:100])), ("external-escapes", None)]:
        path = root / name / "m.onnx"
        path.parent.mkdir()
        onnx.save_model(onnx.load_from_string(data), str(path), save_as_external_data=True, location="m.onnx.data",
                        size_threshold=1024)
        if damage:
            damage(path.with_name("m.onnx.data"))
        else:  # an initializer's location outside the model's directory
            m = onnx.load(str(path), load_external_data=False)
            t = next(t for t in m.graph.initializer if t.external_data)
            next(e for e in t.external_data if e.key == "location").value = "../../m.onnx.data"
            onnx.save_model(m, str(path))
        out[name] = path
    return out


INPUT_INDEX = {name: i for i, name in enumerate(
    ("X", "mask", "signs", "signs2", "salient", "groups", "alpha", "alpha2", "mu", "col_scale", "bias"))}


def _poison_float(model, fragment: str, value) -> None:
    """The first float32 initializer whose name contains `fragment` gets `value` in its first element."""
    from onnx import TensorProto, numpy_helper

    t = next(t for t in model.graph.initializer if fragment in t.name and t.data_type == TensorProto.FLOAT)
    a = numpy_helper.to_array(t).copy()
    a.reshape(-1)[0] = value
    t.CopyFrom(numpy_helper.from_array(a, t.name))
