"""The ONNX encoding of a linear on a grid or the f16 tier (docs/ONNX.md §8), the same in both flavors: standard ops only.

W_hat (R, K) is rebuilt bit for bit in float32, in the order of pbs2p_edge.pack.tiers.decode. With
B = the tier's block, nb = K / B and the codes viewed as blocks of W_hat^T:
  Q  (nb, B, R)  the codes minus the tier's offset, in the narrowest ONNX integer type that holds them
  d  (nb, 1, R)  float16, the file's scales;  m (nb, 1, R) float16, the file's mins (q3_g64 / q2_g64)
  W3 = DequantizeLinear(Q, Cast<float32>(d), axis=1, block_size=B)   = d * (q - offset): one float32 rounding
  W3 = W3 + Cast<float32>(m)                                          only tiers with a min: the second rounding
  W_hat^T = Reshape(W3, [K, R]) ;  Y = MatMul(X, W_hat^T) (+ bias)
The f16 tier is W_hat^T (K, R) as a float16 initializer and one Cast. A two-level tier (B = its sub-block of 16)
stores the row's D and M (1, 1, R) float16 and the sub-block codes sc, mc (nb, 1, R) UINT4, as the file does:
  d = Cast<float32>(sc) * Cast<float32>(D),  m = Neg(Cast<float32>(mc) * Cast<float32>(M))   exact in float32
and W3 as above with d and m.

Why float32 scales at the DequantizeLinear: with float16 ones its product would be rounded to float16
(11 significant bits; d * (q - 8) needs up to 15); they are stored float16 (the file's values) and Cast,
which onnxruntime folds into a float32 constant at session creation. Why 3-D codes and a Reshape before
the MatMul: onnxruntime (1.32) rewrites a blocked DequantizeLinear of 2-, 4- or 8-bit constants that
feeds a MatMul directly into com.microsoft.MatMulNBits with accuracy_level 4, which quantizes X to int8,
so Y would no longer be X @ W_hat^T in float32; the Reshape keeps that pattern from matching, and the
(nb, 1, R) mins broadcast over the block axis without an Expand.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from pbs2p_edge.pack import tiers

from .onnx_graph_builder import GraphBuilder
from .onnx_int_tensor import int_tensor, narrowest_int_type


def code_type(t: tiers.Tier) -> int:
    """ONNX element type of a tier's stored codes q - offset (in -offset..qmax - offset)."""
    return narrowest_int_type(-t.offset, t.qmax - t.offset)


def grid_linear(b: GraphBuilder, x: str, name: str, g: tiers.GridLayer, bias: np.ndarray | None) -> str:
    """Y = X @ W_hat^T (+ bias) with W_hat^T rebuilt as the module docstring says; initializers '<name>.<array>'."""
    t = tiers.tier(g.tier)
    if not t.grid:  # f16: the file's values, transposed
        w16 = b.initializer(f"{name}.weight_t", np.ascontiguousarray(g.blocks.view(np.float16).reshape(g.rows, g.cols).T))
        wt = b.op("Cast", [w16], name, to=TensorProto.FLOAT)
    else:
        q, d, m = tiers.codes(g.tier, g.blocks, g.cols)  # q (R, K) uint8; d, m (R, nb) float32 holding float16 values
        B = t.scale_block
        nb = g.cols // B

        def blocks_t(a: np.ndarray, width: int) -> np.ndarray:  # (R, nb * width) -> (nb, width, R)
            return np.ascontiguousarray(a.reshape(g.rows, nb, width).transpose(1, 2, 0))

        def as_float(array: str, values) -> str:
            return b.op("Cast", [b.initializer(f"{name}.{array}", values)], name, to=TensorProto.FLOAT)

        Q = b.initializer(f"{name}.q", int_tensor("", blocks_t(q.astype(np.int16) - t.offset, B), code_type(t)))
        if t.sub:  # the file's D, M and 4-bit codes; their products are exact in float32
            D, M, sc, mc = tiers.sub_codes(g.tier, g.blocks, g.cols)
            row = lambda a: np.ascontiguousarray(a.astype(np.float16).reshape(1, 1, g.rows))  # noqa: E731
            codes4 = lambda a: int_tensor("", blocks_t(a, 1), TensorProto.UINT4)  # noqa: E731
            scale = b.op("Mul", [as_float("sc", codes4(sc)), as_float("D", row(D))], name)
            mins = b.op("Neg", [b.op("Mul", [as_float("mc", codes4(mc)), as_float("M", row(M))], name)], name)
        else:
            scale = as_float("d", blocks_t(d.astype(np.float16), 1))
            mins = as_float("m", blocks_t(m.astype(np.float16), 1)) if t.has_min else None
        w3 = b.op("DequantizeLinear", [Q, scale], name, axis=1, block_size=B)  # (nb, B, R) float32
        if mins is not None:
            w3 = b.op("Add", [w3, mins], name)
        wt = b.op("Reshape", [w3, b.const([g.cols, g.rows])], name)  # (K, R) float32 = W_hat^T
    y = b.op("MatMul", [x, wt], name)
    if bias is not None:
        y = b.op("Add", [y, b.initializer(f"{name}.bias", bias.astype(np.float32))], name)
    return y
