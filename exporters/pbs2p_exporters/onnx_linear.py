"""The two ONNX encodings of one binary-tier linear Y = X @ W_hat^T (+ bias) (docs/ONNX.md §4, §5).

Grid / f16-tier linears have one encoding for both flavors, onnx_grid.

- custom:   one ai.pbs2p::PackedLinear node; its inputs are the packed arrays of docs/FORMAT.md as
            uint8 / float16 initializers, byte for byte.
- portable: standard ONNX only (opset 25). Per stored region r, one INT2 plane P_r (K, R) holding
            +1 / -1 (the sign) on the kept elements of region r and 0 elsewhere; W_hat^T is rebuilt
            at run time with DequantizeLinear (blocked along K, block = group_size, float16 scales),
            Cast, Mul, Add in exactly the float32 order of FORMAT.md §6, so it equals W_hat bit for bit:
              W_r = f32(DQ(P_r, alpha_r)) [+ f32(DQ(P_s, alpha2)) for the salient region]
                    [+ f32(DQ(P_r, mu_r) * DQ(P_r, 1))]   (P * mu * P = mu on kept elements, 0 elsewhere)
                    [* col_scale_r]
              W_hat^T = Sum_r W_r                           (disjoint supports: adding zeros is exact)
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from pbs2p_edge.pack.packer import PackedLayer, unpack_planes

from .onnx_graph_builder import GraphBuilder
from .onnx_int_tensor import int_tensor
from .onnx_packed_op import DOMAIN, OP_TYPE, PACKED_INPUTS, packed_linear_attributes

FLAVORS = ("custom", "portable")


def custom_linear(b: GraphBuilder, x: str, name: str, packed: PackedLayer, bias: np.ndarray | None) -> str:
    """One PackedLinear node; initializers '<name>.<array>' hold the packed arrays unchanged."""
    ins = [x]
    for key in PACKED_INPUTS:
        ins.append(b.initializer(f"{name}.{key}", packed.arrays[key]) if key in packed.arrays else "")
    ins.append(b.initializer(f"{name}.bias", bias.astype(np.float32)) if bias is not None else "")
    return b.op(OP_TYPE, ins, name, domain=DOMAIN, **packed_linear_attributes(packed.meta))


def _region_planes(packed: PackedLayer) -> tuple[list[np.ndarray], np.ndarray | None]:
    """(P_r (R, K) int8 per stored region, salient-plane P_s (R, K) int8 or None); values -1 / 0 / +1."""
    p = unpack_planes(packed)
    sign0 = np.where(p["s0"], 1, -1).astype(np.int8)
    planes = [np.where(p["mask"] & (p["region"] == r), sign0, 0).astype(np.int8) for r in range(packed.meta.regions)]
    sal = None
    if packed.meta.has_salient:
        sal = np.where(p["mask"] & p["salient"][None, :], np.where(p["s1"], 1, -1), 0).astype(np.int8)
    return planes, sal


def portable_linear(b: GraphBuilder, x: str, name: str, packed: PackedLayer, bias: np.ndarray | None) -> str:
    """W_hat^T rebuilt exactly from INT2 planes and float16 scales, then MatMul (see the module docstring)."""
    meta, a = packed.meta, packed.arrays
    planes, sal = _region_planes(packed)
    gs = int(meta.group_size)
    one = b.const(1.0, np.float16)

    def dq(plane: str, scale: np.ndarray, tag: str) -> str:  # (K, R) float16 = plane * scale[k // gs, r]
        s = b.initializer(f"{name}.{tag}", np.ascontiguousarray(scale.T))  # (G, R) float16
        return b.op("DequantizeLinear", [plane, s], name, axis=0, block_size=gs)

    def f32(v: str) -> str:
        return b.op("Cast", [v], name, to=TensorProto.FLOAT)

    terms = []
    for r, plane in enumerate(planes):
        P = b.initializer(f"{name}.plane.r{r}", int_tensor("", plane.T, TensorProto.INT2))  # (K, R)
        w = f32(dq(P, a["alpha"][r], f"alpha.r{r}"))
        if meta.has_salient and r == 0:
            Ps = b.initializer(f"{name}.plane.salient", int_tensor("", sal.T, TensorProto.INT2))
            w = b.op("Add", [w, f32(dq(Ps, a["alpha2"], "alpha2"))], name)
        if meta.has_mu:
            kept = b.op("DequantizeLinear", [P, one], name)  # P as float16, per-tensor scale 1
            w = b.op("Add", [w, f32(b.op("Mul", [dq(P, a["mu"][r], f"mu.r{r}"), kept], name))], name)
        if meta.has_col_scale:
            cs = b.initializer(f"{name}.col_scale.r{r}", a["col_scale"][r].reshape(-1, 1))  # (K, 1) float16
            w = b.op("Mul", [w, f32(cs)], name)
        terms.append(w)
    wt = terms[0] if len(terms) == 1 else b.op("Sum", terms, name)  # (K, R) float32 = W_hat^T
    y = b.op("MatMul", [x, wt], name)
    if bias is not None:
        y = b.op("Add", [y, b.initializer(f"{name}.bias", bias.astype(np.float32))], name)
    return y


LINEAR_ENCODERS = {"custom": custom_linear, "portable": portable_linear}
