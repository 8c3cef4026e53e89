"""Python reference of ai.pbs2p::PackedLinear for onnx.reference.ReferenceEvaluator (libpbs2p's ORT op is checked against it).

W_hat comes from pbs2p_edge.pack.unpack_layer, the format's reference dequantization, so the
custom-flavor graph computes exactly the fake-quantized model's weights. numpy + onnx only.
"""

from __future__ import annotations

import numpy as np
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack import FORMAT_VERSION, LayerMeta, unpack_layer
from pbs2p_edge.pack.packer import PackedLayer

from pbs2p_exporters.onnx_packed_op import DOMAIN, PACKED_INPUTS


class PackedLinear(OpRun):
    op_domain = DOMAIN

    def _run(self, X, mask=None, signs=None, signs2=None, salient=None, groups=None, alpha=None, alpha2=None,
             mu=None, col_scale=None, bias=None, rows=None, cols=None, n=None, m=None, group_size=None, split=None,
             n_salient=None, has_mu=None, has_col_scale=None, format_version=None):
        if format_version != FORMAT_VERSION:
            raise FormatError(f"PackedLinear format_version {format_version} is not supported (this build: {FORMAT_VERSION})")
        given = dict(zip(PACKED_INPUTS, (mask, signs, signs2, salient, groups, alpha, alpha2, mu, col_scale)))
        key = tuple(id(a) for a in given.values())
        if getattr(self, "_key", None) != key:  # initializers: unpack once per node
            meta = LayerMeta(rows=rows, cols=cols, n=n, m=m, group_size=group_size, split=split,
                             has_salient=n_salient > 0, n_salient=n_salient, has_mu=bool(has_mu),
                             has_col_scale=bool(has_col_scale))
            arrays = {k: np.asarray(a) for k, a in given.items() if a is not None}
            self._wt = np.ascontiguousarray(unpack_layer(PackedLayer(meta, arrays)).T)  # (K, R) float32
            self._key = key
        y = np.matmul(np.asarray(X, dtype=np.float32), self._wt)
        if bias is not None:
            y = y + bias
        return (y.astype(np.float32, copy=False),)


def reference_evaluator(model) -> ReferenceEvaluator:
    """A ReferenceEvaluator (onnx's numpy runtime) for a custom-flavor model (ModelProto or path)."""
    return ReferenceEvaluator(model if not hasattr(model, "__fspath__") else str(model), new_ops=[PackedLinear])
