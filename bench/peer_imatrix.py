"""Importance matrix for llama.cpp's IQ1 types: mean squared input activation per column of every decoder linear.

This is what llama.cpp's imatrix tool collects (per weight tensor, the mean over calibration tokens of x_j^2
for each input column j), computed here with the HF model on the same calibration windows our compression
uses, and keyed by llama.cpp's tensor names (blk.N.attn_q.weight ...), so IQ1_S / IQ1_M get the same data.
"""

from __future__ import annotations

import numpy as np

# HF Llama module name suffix -> llama.cpp tensor name inside blk.N.
GGUF_NAME = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}


def importance(calib: str, nsamples: int, seqlen: int, seed: int, model: str = "smollm2-135m") -> dict[str, np.ndarray]:
    """{'blk.N.<tensor>.weight': float32 (in_features,)} mean of x^2 over nsamples x seqlen calibration tokens."""
    import torch

    from pbs2p_edge.calib.text import load_text
    from pbs2p_edge.calib.tokens import encode
    from pbs2p_edge.calib.windows import calibration_windows
    from pbs2p_edge.model.load import load_model

    net, tokenizer = load_model(model)
    windows = calibration_windows(encode(tokenizer, load_text(calib, split="train")), nsamples, seqlen, seed)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name, module in net.named_modules():
        parts = name.split(".")  # model.layers.N.self_attn.q_proj
        if len(parts) == 5 and parts[1] == "layers" and ".".join(parts[3:]) in GGUF_NAME:
            key = f"blk.{parts[2]}.{GGUF_NAME['.'.join(parts[3:])]}.weight"

            def hook(mod, inputs, output, key=key):
                x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()  # (tokens, in_features)
                sums[key] = sums.get(key, 0) + (x * x).sum(0)
                counts[key] = counts.get(key, 0) + x.shape[0]

            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for row in windows:
                net(input_ids=row[None], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return {k: (sums[k] / counts[k]).float().numpy() for k in sums}
