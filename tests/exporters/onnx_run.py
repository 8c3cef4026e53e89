"""Test helpers for the ONNX exporter: feeds for the decoder graph and running both flavors next to the PyTorch model."""

import numpy as np
import onnxruntime as ort
import torch

from exporters.onnx_reference_op import reference_evaluator


def fake_quant_of(request, which: str):
    """(checkpoint dir of fixture `which`, its fake-quantized torch model), the model built once per module (cached
    in the fq_models fixture)."""
    from pbs2p_edge.checkpoint import to_fake_quant_model

    ck = request.getfixturevalue(which)
    cache = request.getfixturevalue("fq_models")
    if which not in cache:
        cache[which] = to_fake_quant_model(ck)[0]
    return ck, cache[which]


def kv_shape(config) -> tuple[int, int]:
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    return kv, getattr(config, "head_dim", None) or config.hidden_size // heads


def feeds(config, ids: np.ndarray, past: dict | None = None, attention_mask=None, position_ids=None) -> dict:
    """Graph inputs for `ids` (batch, seq) after `past` (present.* of an earlier run, or empty)."""
    batch, seq = ids.shape
    kv, hd = kv_shape(config)
    n_past = 0 if not past else past["present.0.key"].shape[2]
    f = {"input_ids": ids.astype(np.int64),
         "attention_mask": np.ones((batch, n_past + seq), np.int64) if attention_mask is None else attention_mask,
         "position_ids": (np.broadcast_to(np.arange(n_past, n_past + seq), (batch, seq)).astype(np.int64)
                          if position_ids is None else position_ids)}
    for i in range(config.num_hidden_layers):
        for kind in ("key", "value"):
            f[f"past_key_values.{i}.{kind}"] = (past[f"present.{i}.{kind}"] if past
                                                else np.zeros((batch, kv, 0, hd), np.float32))
    return f


def run(path, flavor: str, inputs: dict) -> dict:
    """Output name -> array; custom flavor through onnx's ReferenceEvaluator + our PackedLinear, portable in onnxruntime."""
    if flavor == "custom":
        ev = reference_evaluator(path)
        return dict(zip(ev.output_names, ev.run(None, inputs)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))


def torch_logits(model, ids: np.ndarray, **kw) -> np.ndarray:
    with torch.no_grad():
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in kw.items()}
        return model(torch.from_numpy(ids), **t).logits.float().numpy()


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| relative to the reference logit range."""
    return float(np.abs(got - ref).max() / (ref.max() - ref.min()))
