"""Reading a pbs2p ONNX file, and the one check of it (docs/ONNX.md): `read_onnx_metadata` (its pbs2p.* metadata,
each value checked, no tensor read) and `check_onnx` (all of it: the metadata, the ai.pbs2p opset version, finite
float initializers, and a session of onnxruntime with libpbs2p's op, which checks the graph, the initializers' sizes
and every PackedLinear node's attributes and streams: native/src/ort_inputs.c and pbs2p_layer_prepare). Anything
else is a FormatError of one line, so `inspect` describes only what onnxruntime runs with finite results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack import FORMAT_VERSION
from pbs2p_edge.pack.tiers import BINARY, EMBED_TIERS, TIERS

from .onnx_linear import FLAVORS
from .onnx_packed_op import DOMAIN, OP_VERSION

_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


def _load(path, external: bool) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=external)
    except Exception as e:  # onnx raises DecodeError / OSError / ValueError / onnx's own errors
        what = "its external data cannot be read" if external else "not a readable ONNX file"
        raise FormatError(f"{path}: {what} ({e})") from None


def _json(path, props: dict, key: str, kind: type):
    try:
        value = json.loads(props[key])
    except ValueError:
        value = None
    if not isinstance(value, kind):
        raise FormatError(f"{path}: metadata {key} must be a JSON {kind.__name__}, got {props[key][:40]!r}")
    return value


def _check_props(path, props: dict[str, str]) -> None:
    if "pbs2p.format_version" not in props:
        raise FormatError(f"{path}: not a pbs2p ONNX export (no pbs2p.format_version metadata)")
    if props["pbs2p.format_version"] != str(FORMAT_VERSION):
        raise FormatError(f"{path}: packed format version {props['pbs2p.format_version'][:20]!r}; this pbs2p-edge "
                          f"reads version {FORMAT_VERSION}")
    missing = [k for k in ("pbs2p.onnx_flavor", "pbs2p.model_type", "pbs2p.compress_config", "pbs2p.bits_per_weight",
                           "pbs2p.linear.source_names") if k not in props]
    if missing:
        raise FormatError(f"{path}: metadata {', '.join(missing)} missing")
    if props["pbs2p.onnx_flavor"] not in FLAVORS:
        raise FormatError(f"{path}: metadata pbs2p.onnx_flavor must be one of {FLAVORS}, got "
                          f"{props['pbs2p.onnx_flavor'][:40]!r}")
    _json(path, props, "pbs2p.compress_config", dict)
    names = _json(path, props, "pbs2p.linear.source_names", list)
    if not names or not all(isinstance(n, str) for n in names):
        raise FormatError(f"{path}: metadata pbs2p.linear.source_names must list the compressed linears' names")
    if "pbs2p.linear.tier" in props:
        tiers = _json(path, props, "pbs2p.linear.tier", list)
        if len(tiers) != len(names) or not all(t == BINARY or t in TIERS for t in tiers):
            raise FormatError(f"{path}: metadata pbs2p.linear.tier must give one of {(BINARY, *TIERS)} for each of "
                              f"the {len(names)} linears")
    if props.get("pbs2p.embed_tier", EMBED_TIERS[0]) not in EMBED_TIERS:
        raise FormatError(f"{path}: metadata pbs2p.embed_tier must be one of {EMBED_TIERS}")
    try:
        bits = float(props["pbs2p.bits_per_weight"])
    except ValueError:
        bits = math.nan
    if not (math.isfinite(bits) and bits > 0):
        raise FormatError(f"{path}: metadata pbs2p.bits_per_weight must be a positive number, got "
                          f"{props['pbs2p.bits_per_weight'][:40]!r}")


def read_onnx_metadata(path) -> dict[str, str]:
    """The pbs2p.* metadata of an exported ONNX file, each value checked (tensors, internal or external, are not
    read); FormatError for a file that is not ONNX, not ours, or whose metadata is damaged."""
    props = {}
    for p in _load(path, external=False).metadata_props:
        if not (isinstance(p.key, str) and isinstance(p.value, str)):  # protobuf gives bytes for a string not UTF-8
            raise FormatError(f"{path}: metadata {p.key!r} is not UTF-8 text")
        if p.key.startswith("pbs2p."):
            props[p.key] = p.value
    _check_props(path, props)
    return props


def _check_initializers(path, model: onnx.ModelProto) -> None:
    for t in model.graph.initializer:
        if t.data_type not in _FLOATS:
            continue
        try:
            a = numpy_helper.to_array(t)
        except Exception as e:  # raw bytes that do not fill the stated shape
            raise FormatError(f"{path}: initializer {t.name!r} cannot be read ({e})") from None
        if not np.isfinite(a).all():
            raise FormatError(f"{path}: initializer {t.name!r} holds {'NaN' if np.isnan(a).any() else 'infinite'} "
                              "values: a damaged model (its outputs would not be finite)")


def _check_session(path) -> None:
    """What onnxruntime with libpbs2p's op refuses: creating the session prepares every constant PackedLinear."""
    import onnxruntime as ort

    from pbs2p_edge.runtime.library import find_library

    so = ort.SessionOptions()
    so.register_custom_ops_library(str(find_library()))
    so.intra_op_num_threads = 1
    so.log_severity_level = 4  # errors come back as the exception; nothing on stderr beside our one line
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], enable_fallback=0)  # no retry printed
    except Exception as e:  # onnxruntime's Fail / InvalidGraph / InvalidProtobuf / RuntimeException
        message = str(e).split(" : ", 3)[-1]  # drop "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : "
        raise FormatError(f"{path}: onnxruntime with libpbs2p refuses the file ({message})") from None


def check_onnx(path) -> tuple[dict[str, str], onnx.ModelProto]:
    """(metadata, model without external data) of a pbs2p ONNX file that onnxruntime with libpbs2p runs with finite
    weights; FormatError (one line) for any other file."""
    path = Path(path)
    props = read_onnx_metadata(path)
    model = _load(path, external=True)
    versions = {o.domain: o.version for o in model.opset_import}
    if versions.get(DOMAIN, OP_VERSION) != OP_VERSION:
        raise FormatError(f"{path}: imports {DOMAIN} version {versions[DOMAIN]}; libpbs2p runs version {OP_VERSION}")
    if (DOMAIN in versions) != (props["pbs2p.onnx_flavor"] == "custom" and BINARY in linear_tiers(props)):
        raise FormatError(f"{path}: the {DOMAIN} opset is {'' if DOMAIN in versions else 'not '}imported, which the "
                          f"{props['pbs2p.onnx_flavor']} flavor of its linears' tiers contradicts")
    _check_initializers(path, model)
    _check_session(path)
    return props, model


def linear_tiers(props: dict[str, str]) -> list[str]:
    """The tier of each compressed linear, in model order (all binary when the file has no pbs2p.linear.tier)."""
    names = json.loads(props["pbs2p.linear.source_names"])
    return json.loads(props["pbs2p.linear.tier"]) if "pbs2p.linear.tier" in props else [BINARY] * len(names)
