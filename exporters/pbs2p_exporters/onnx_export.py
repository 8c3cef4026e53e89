"""export_onnx: a pbs2p checkpoint directory -> one ONNX decoder (docs/ONNX.md), custom or portable flavor.

numpy + onnx + pbs2p_edge.pack only: never imports torch. Deterministic bytes; atomic writes
(the external data file, when there is one, is moved into place before the model file).
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import helper

from pbs2p_edge.errors import ConfigError, FormatError
from pbs2p_edge.pack import FORMAT_VERSION, honest_bits
from pbs2p_edge.pack.checkpoint_dir import load_checkpoint

from pbs2p_edge.files.atomic_file import atomic_file, atomic_files
from .onnx_decoder import build_decoder_graph
from .onnx_linear import FLAVORS, LINEAR_ENCODERS
from .onnx_packed_op import DOMAIN, OP_VERSION, register_packed_linear_schema

OPSET = 25  # ai.onnx opset: DequantizeLinear of INT2 (portable binary) / UINT2 (q2_g64, both flavors) needs 25
IR_VERSION = 11  # oldest IR that holds INT2 / UINT2 tensors and opset 25
EXTERNAL_DATA_ABOVE = 1_500_000_000  # bytes of initializers; protobuf cannot exceed 2 GiB
EXTERNAL_MIN_BYTES = 1024  # tensors smaller than this stay inside the model file


def external_data_path(out_path) -> Path:
    """Where the tensors of an external-data export go: '<out>.data' next to the model."""
    out = Path(out_path)
    return out.with_name(out.name + ".data")


def build_onnx_model(checkpoint_dir, flavor: str = "custom") -> onnx.ModelProto:
    """The ModelProto (tensors inline) of a checkpoint in the given flavor."""
    if flavor not in FLAVORS:
        raise ConfigError(f"ONNX flavor must be one of {FLAVORS}, got {flavor!r}")
    ck = load_checkpoint(checkpoint_dir)
    ck.require_complete()
    if not ck.layers and not ck.grids:
        raise FormatError(f"{ck.path}: no compressed layers")
    custom_op = flavor == "custom" and bool(ck.layers)  # grid linears use standard ops in both flavors
    if custom_op:
        register_packed_linear_schema()
    graph = build_decoder_graph(ck, LINEAR_ENCODERS[flavor])
    opsets = [helper.make_opsetid("", OPSET)]
    if custom_op:
        opsets.append(helper.make_opsetid(DOMAIN, OP_VERSION))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="pbs2p-edge", ir_version=IR_VERSION)
    # honest bits of every compressed linear as the checkpoint stores it (docs/FORMAT.md §8, §10), whatever the flavor
    bits = sum(honest_bits(p) for p in ck.layers.values()) + sum(g.honest_bits for g in ck.grids.values())
    weights = sum(p.meta.rows * p.meta.cols for p in ck.layers.values()) + sum(g.rows * g.cols for g in ck.grids.values())
    linear_tiers = ck.linear_tiers()  # model order, as GGUF's pbs2p.linear.* arrays
    cc = ck.compress_config
    name = ck.model_name
    recipe = "tiers" if ck.grids else f"{cc['method']}-{cc['n']}of{cc['m']}"
    props = {
        "pbs2p.format_version": str(FORMAT_VERSION),
        "pbs2p.onnx_flavor": flavor,
        "pbs2p.model_type": str(ck.config["model_type"]),
        "pbs2p.name": f"{Path(str(name)).name}-pbs2p-{recipe}",
        "pbs2p.compress_config": json.dumps(cc, sort_keys=True),
        "pbs2p.bits_per_weight": repr(bits / weights),
        "pbs2p.linear.source_names": json.dumps(list(linear_tiers)),
    }
    if ck.grids:  # absent: every linear is binary-tier, as in files from before tiers (and GGUF's key)
        props["pbs2p.linear.tier"] = json.dumps(list(linear_tiers.values()))
    if ck.embed_tier:  # the tier the token embedding / head values were rounded to (still float32 initializers)
        props["pbs2p.embed_tier"] = ck.embed_tier
    helper.set_model_props(model, props)
    return model


def export_onnx(checkpoint_dir, out_path, flavor: str = "custom", external_data: bool | None = None) -> Path:
    """Write the checkpoint as ONNX; returns out_path. external_data None = only above ~1.5 GB of tensors.

    Same checkpoint and options -> byte-identical file(s).
    """
    model = build_onnx_model(checkpoint_dir, flavor)
    if external_data is None:
        external_data = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_ABOVE
    out = Path(out_path)
    if not external_data:
        with atomic_file(out) as tmp:
            onnx.save_model(model, str(tmp))
        return out
    data = external_data_path(out)
    with atomic_files([data, out]) as tmp_dir:
        onnx.save_model(model, str(tmp_dir / out.name), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=EXTERNAL_MIN_BYTES)
    return out

