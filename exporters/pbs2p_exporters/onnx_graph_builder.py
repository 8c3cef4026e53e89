"""A small deterministic ONNX graph builder: nodes, initializers and value names in insertion order.

Every name is derived from a caller's hint plus a counter, so the same build always gives the
same graph (and the same bytes once serialized).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._consts: dict[tuple, str] = {}  # (dtype, shape, bytes) -> name, small constants shared

    def _fresh(self, hint: str, reserve: bool = True) -> str:
        name, k = hint, 1
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        if reserve:
            self._used.add(name)
        return name

    def __contains__(self, name: str) -> bool:
        return name in self._used

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: list) -> None:
        """Expose `value` as graph output `name` (an Identity node renames it when needed)."""
        if value != name:
            self._used.add(name)
            self.nodes.append(helper.make_node("Identity", [value], [name], name=self._fresh(f"{name}/Identity")))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def initializer(self, name: str, value: np.ndarray | TensorProto) -> str:
        """A named weight; `value` is a numpy array or a ready TensorProto (e.g. INT2)."""
        if name in self._used:
            raise ValueError(f"duplicate ONNX name {name!r}")
        self._used.add(name)
        t = value if isinstance(value, TensorProto) else numpy_helper.from_array(np.ascontiguousarray(value), name)
        t.name = name
        self.initializers.append(t)
        return name

    def const(self, value, dtype=np.int64) -> str:
        """A small constant initializer, shared between identical uses."""
        a = np.asarray(value, dtype=dtype)
        key = (a.dtype.str, a.shape, a.tobytes())
        if key not in self._consts:
            flat = "_".join(str(v) for v in a.reshape(-1)[:4]).replace("-", "m").replace(".", "p")
            self._consts[key] = self.initializer(self._fresh(f"const/{a.dtype.name}/{flat}", reserve=False), a)
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], hint: str, outputs: int = 1, domain: str = "", **attrs):
        """Append a node; returns its output name (or a list when outputs > 1)."""
        node_name = self._fresh(f"{hint}/{op_type}")
        outs = [self._fresh(f"{node_name}_out{i}" if outputs > 1 else f"{node_name}_out") for i in range(outputs)]
        while inputs and inputs[-1] == "":  # trailing absent optional inputs are left out
            inputs = inputs[:-1]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, domain=domain or None, **attrs))
        return outs if outputs > 1 else outs[0]

    def graph(self, name: str) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, name, self.inputs, self.outputs, initializer=self.initializers)
