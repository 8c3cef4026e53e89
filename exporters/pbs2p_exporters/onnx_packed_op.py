"""The custom ONNX operator ai.pbs2p::PackedLinear, version 1: its inputs, attributes and ONNX schema (docs/ONNX.md §4).

Y = X @ W_hat^T (+ bias), W_hat (R, K) being the docs/FORMAT.md §6 dequantization of the packed
arrays. Registering the schema lets `onnx.checker` (full_check) validate every node's inputs,
types and attributes and lets shape inference give Y its type and shape [..., R].
"""

from __future__ import annotations

import onnx
from onnx import defs

from pbs2p_edge.pack import FORMAT_VERSION

DOMAIN = "ai.pbs2p"
OP_VERSION = 1
OP_TYPE = "PackedLinear"

# Positional inputs after X; an absent optional one is the empty name "" (or omitted at the tail).
PACKED_INPUTS = ("mask", "signs", "signs2", "salient", "groups", "alpha", "alpha2", "mu", "col_scale")
INPUTS = ("X", *PACKED_INPUTS, "bias")
REQUIRED = {"X", "signs", "alpha"}
# int attributes: the LayerMeta fields (has_salient = n_salient > 0) plus the packed format version
ATTRIBUTES = ("rows", "cols", "n", "m", "group_size", "split", "n_salient", "has_mu", "has_col_scale",
              "format_version")

_DOC = ("Y = X @ W_hat^T (+ bias). W_hat (rows, cols) is the pbs2p packed format (version format_version) "
        "dequantized exactly as docs/FORMAT.md section 6: uint8 bit streams mask/signs/signs2/salient/groups, "
        "float16 scales alpha/alpha2/mu/col_scale. X: [..., cols]; Y: [..., rows].")


def _input_type(name: str) -> str:
    if name in ("X", "bias"):
        return "T"
    return "tensor(float16)" if name in ("alpha", "alpha2", "mu", "col_scale") else "tensor(uint8)"


def _infer(ctx) -> None:
    """Y has X's element type and shape [..., rows]."""
    x = ctx.get_input_type(0)
    rows = ctx.get_attribute("rows")
    y = onnx.TypeProto()
    if x is None or not x.HasField("tensor_type"):
        return
    y.tensor_type.elem_type = x.tensor_type.elem_type
    if x.tensor_type.HasField("shape") and rows is not None:
        dims = list(x.tensor_type.shape.dim)
        for d in dims[:-1]:
            y.tensor_type.shape.dim.add().CopyFrom(d)
        y.tensor_type.shape.dim.add().dim_value = rows.i
    ctx.set_output_type(0, y)


def packed_linear_schema() -> defs.OpSchema:
    P = defs.OpSchema.FormalParameter
    Opt = defs.OpSchema.FormalParameterOption
    inputs = [P(name, _input_type(name), param_option=Opt.Single if name in REQUIRED else Opt.Optional) for name in INPUTS]
    attributes = [defs.OpSchema.Attribute(a, defs.OpSchema.AttrType.INT, description=f"LayerMeta.{a}")
                  for a in ATTRIBUTES]
    schema = defs.OpSchema(OP_TYPE, DOMAIN, OP_VERSION, _DOC, inputs=inputs, outputs=[P("Y", "T")],
                           type_constraints=[("T", ["tensor(float)"], "activations")], attributes=attributes)
    schema.set_type_and_shape_inference_function(_infer)
    return schema


def register_packed_linear_schema() -> None:
    """Make onnx (checker, shape inference) know PackedLinear; idempotent, process-wide."""
    if not defs.has(OP_TYPE, OP_VERSION, DOMAIN):
        defs.register_schema(packed_linear_schema())


def packed_linear_attributes(meta) -> dict[str, int]:
    """Node attributes of one PackedLinear from its LayerMeta."""
    d = {a: int(getattr(meta, a)) for a in ATTRIBUTES if a != "format_version"}
    d["format_version"] = FORMAT_VERSION
    return d
