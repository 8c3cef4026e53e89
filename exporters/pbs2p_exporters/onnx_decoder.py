"""The decoder as one ONNX graph (docs/ONNX.md §2): input ids, mask, positions and past KV -> logits and present KV.

Llama layout (Llama, Mistral, Qwen2: RMSNorm, rotate-half RoPE with the config's theta and optional llama3
scaling, GQA, SwiGLU, a sliding window where the config has one, tied or untied head), Gemma 3 ((1 + w) RMSNorm before
and after each sublayer, QK-norm, GELU-tanh GeGLU, embedding x sqrt(D), sliding and global layers with their own mask
and RoPE base) and OPT (learned positions at offset 2, LayerNorm pre or post, ReLU, biases). Each binary-tier linear is emitted by a flavor's encoder from onnx_linear, each grid / f16
one by onnx_grid; every other tensor is a float32 initializer holding the checkpoint's values
exactly, except the token embedding / head, which hold them rounded to the checkpoint's embedding
tier when it names one (as the GGUF export stores them). numpy + onnx (+ gguf for that rounding).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack.architectures import check_config, gemma_rope_bases, rope_config, sliding_layers, sliding_window
from pbs2p_edge.pack.checkpoint_dir import Checkpoint

from .gguf_names import llama3_rope_factors
from .onnx_graph_builder import GraphBuilder
from .onnx_grid import grid_linear

F32_MIN = float(np.finfo(np.float32).min)  # added-mask value HF uses for masked scores


class _Decoder:
    """State of one graph build: the builder, the checkpoint's tensors and which ones the graph used."""

    def __init__(self, ck: Checkpoint, encode_linear) -> None:
        self.ck, self.c, self.encode = ck, ck.config, encode_linear
        self.b = GraphBuilder()
        self.used: set[str] = set()
        self.presents: list[tuple[str, str, list]] = []  # (value, output name, shape), emitted after logits

    def dense(self, name: str, embedding: bool = False) -> str:
        """Initializer of a dense checkpoint tensor (float32, exact), following `tied` aliases. embedding: the token
        embedding or the head, rounded to the checkpoint's embedding tier when it has one (to_fake_quant_model and
        the GGUF export round exactly these two matrices; OPT's learned positions stay exact)."""
        src = self.ck.tied.get(name, name)
        if src not in self.ck.dense:
            raise FormatError(f"{self.ck.path}: tensor {name} is missing from the checkpoint")
        self.used.add(name)
        self.used.add(src)
        if src not in self.b:
            a = self.ck.dense[src].astype(np.float32)
            if embedding and self.ck.embed_tier:
                a = self.ck.embedding_values(src, self.ck.embed_tier)
            self.b.initializer(src, a)
        return src

    def has(self, name: str) -> bool:
        return name in self.ck.dense or name in self.ck.tied

    def linear(self, x: str, module: str) -> str:
        """Y = X @ W^T (+ bias) of a compressed linear (or a dense one when the checkpoint kept it dense)."""
        bias_name = f"{module}.bias"
        bias = None
        if self.has(bias_name):
            self.used.add(bias_name)
            bias = self.ck.dense[self.ck.tied.get(bias_name, bias_name)]
        if module in self.ck.layers:
            self.used.add(module)
            return self.encode(self.b, x, module, self.ck.layers[module], bias)
        if module in self.ck.grids:  # the same standard-op encoding in both flavors
            self.used.add(module)
            return grid_linear(self.b, x, module, self.ck.grids[module], bias)
        wt = self.b.op("Transpose", [self.dense(f"{module}.weight")], module, perm=[1, 0])
        y = self.b.op("MatMul", [x, wt], module)
        return self.b.op("Add", [y, self.dense(bias_name)], module) if bias is not None else y

    # -- shared pieces ---------------------------------------------------------------------------

    def _scaled_rms(self, x: str, scale: str, eps: float, hint: str) -> str:
        """scale * (x * 1/sqrt(mean(x^2) + eps)) over the last axis, scale an initializer."""
        b = self.b
        var = b.op("ReduceMean", [b.op("Mul", [x, x], hint), b.const([-1])], hint, keepdims=1)
        inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [var, b.const(eps, np.float32)], hint)], hint)], hint)
        return b.op("Mul", [scale, b.op("Mul", [x, inv], hint)], hint)

    def rms_norm(self, x: str, weight: str, eps: float, hint: str) -> str:
        """HF LlamaRMSNorm: w * (x * 1/sqrt(mean(x^2) + eps))."""
        return self._scaled_rms(x, self.dense(weight), eps, hint)

    def gemma_norm(self, x: str, weight: str, eps: float, hint: str) -> str:
        """Gemma3RMSNorm: (x * 1/sqrt(mean(x^2) + eps)) * (1 + w), 1 + w an initializer computed in float32 (as HF)."""
        name = f"{weight}.plus_one"
        self.used.add(weight)
        if name not in self.b:
            self.b.initializer(name, self.ck.dense[weight].astype(np.float32) + np.float32(1.0))
        return self._scaled_rms(x, name, eps, hint)

    def layer_norm(self, x: str, prefix: str, hint: str) -> str:
        return self.b.op("LayerNormalization", [x, self.dense(f"{prefix}.weight"), self.dense(f"{prefix}.bias")],
                         hint, axis=-1, epsilon=1e-5)

    def attention(self, x: str, i: int, prefix: str, names: tuple[str, str, str, str], heads: int, kv_heads: int,
                  head_dim: int, mask: str, rope, q_scale: float | None, score_scale: float | None,
                  qk_norm: float | None = None) -> str:
        """Self-attention of block i: q/k/v projections, QK-norm (Gemma: qk_norm is its epsilon), RoPE (Llama,
        Gemma), KV cache concat, GQA, output projection.

        q is viewed as (b, kv_heads, rep, s, hd) so one key/value head serves its `rep` query heads
        by broadcasting (HF repeat_kv order: head h uses kv head h // rep).
        """
        b = self.b
        rep = heads // kv_heads
        h = f"layers.{i}.attn"
        q = self.linear(x, f"{prefix}.{names[0]}")
        if q_scale is not None:  # OPT scales q right after the projection
            q = b.op("Mul", [q, b.const(q_scale, np.float32)], h)
        k = self.linear(x, f"{prefix}.{names[1]}")
        v = self.linear(x, f"{prefix}.{names[2]}")
        q = b.op("Transpose", [b.op("Reshape", [q, b.const([0, 0, kv_heads, rep, head_dim])], h)], h, perm=[0, 2, 3, 1, 4])
        k = b.op("Transpose", [b.op("Reshape", [k, b.const([0, 0, kv_heads, head_dim])], h)], h, perm=[0, 2, 1, 3])
        v = b.op("Transpose", [b.op("Reshape", [v, b.const([0, 0, kv_heads, head_dim])], h)], h, perm=[0, 2, 1, 3])
        if qk_norm is not None:  # over each head's head_dim values, before RoPE
            q = self.gemma_norm(q, f"{prefix}.q_norm.weight", qk_norm, h)
            k = self.gemma_norm(k, f"{prefix}.k_norm.weight", qk_norm, h)
        if rope is not None:
            cos4, sin4, cos5, sin5 = rope
            q = self.rotate(q, cos5, sin5, head_dim, h)
            k = self.rotate(k, cos4, sin4, head_dim, h)
        past_k = b.input(f"past_key_values.{i}.key", TensorProto.FLOAT, ["batch", kv_heads, "past_sequence", head_dim])
        past_v = b.input(f"past_key_values.{i}.value", TensorProto.FLOAT, ["batch", kv_heads, "past_sequence", head_dim])
        k = b.op("Concat", [past_k, k], h, axis=2)  # (b, kvh, T, hd)
        v = b.op("Concat", [past_v, v], h, axis=2)
        total = ["batch", kv_heads, "total_sequence", head_dim]
        self.presents += [(k, f"present.{i}.key", total), (v, f"present.{i}.value", total)]
        kt = b.op("Transpose", [b.op("Unsqueeze", [k, b.const([2])], h)], h, perm=[0, 1, 2, 4, 3])  # (b,kvh,1,hd,T)
        scores = b.op("MatMul", [q, kt], h)  # (b, kvh, rep, s, T)
        if score_scale is not None:
            scores = b.op("Mul", [scores, b.const(score_scale, np.float32)], h)
        scores = b.op("Where", [mask, scores, b.const(F32_MIN, np.float32)], h)
        probs = b.op("Softmax", [scores], h, axis=-1)
        out = b.op("MatMul", [probs, b.op("Unsqueeze", [v, b.const([2])], h)], h)  # (b, kvh, rep, s, hd)
        out = b.op("Reshape", [b.op("Transpose", [out], h, perm=[0, 3, 1, 2, 4]), b.const([0, 0, -1])], h)
        return self.linear(out, f"{prefix}.{names[3]}")

    def rotate(self, x: str, cos: str, sin: str, head_dim: int, hint: str) -> str:
        """x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x2, x1) over the last axis."""
        b = self.b
        x1, x2 = b.op("Split", [x, b.const([head_dim // 2, head_dim // 2])], hint, outputs=2, axis=-1)
        rot = b.op("Concat", [b.op("Neg", [x2], hint), x1], hint, axis=-1)
        return b.op("Add", [b.op("Mul", [x, cos], hint), b.op("Mul", [rot, sin], hint)], hint)

    def causal_mask(self, input_ids: str, attention_mask: str, window: int | None = None) -> str:
        """(b, 1, 1, s, T) bool: key t is visible to query q iff t <= past + q (and t > past + q - window with a
        sliding window) and attention_mask[b, t] = 1."""
        b = self.b
        h = "mask"
        past = b.op("Gather", [b.op("Shape", ["past_key_values.0.key"], h), b.const(2)], h, axis=0)
        seq = b.op("Gather", [b.op("Shape", [input_ids], h), b.const(1)], h, axis=0)
        total = b.op("Add", [past, seq], h)
        qpos = b.op("Unsqueeze", [b.op("Range", [past, total, b.const(1)], h), b.const([1])], h)  # (s, 1)
        kpos = b.op("Range", [b.const(0), total, b.const(1)], h)  # (T,)
        causal = b.op("LessOrEqual", [kpos, qpos], h)  # (s, T)
        if window:
            recent = b.op("Greater", [kpos, b.op("Sub", [qpos, b.const(window)], h)], h)
            causal = b.op("And", [causal, recent], h)
        keep = b.op("Unsqueeze", [b.op("Cast", [attention_mask], h, to=TensorProto.BOOL), b.const([1, 2, 3])], h)
        return b.op("And", [causal, keep], h)

    def outputs(self, x: str, head_name: str, embed_name: str) -> None:
        """Outputs logits = x @ W_head^T (a tied head reads the embedding initializer, stored once), then present.*."""
        w = head_name if self.has(head_name) else embed_name
        wt = self.b.op("Transpose", [self.dense(w, embedding=True)], "lm_head", perm=[1, 0])
        logits = self.b.op("MatMul", [x, wt], "lm_head")
        self.b.output(logits, "logits", TensorProto.FLOAT, ["batch", "sequence", int(self.c["vocab_size"])])
        for value, name, shape in self.presents:
            self.b.output(value, name, TensorProto.FLOAT, shape)

    # -- architectures ---------------------------------------------------------------------------

    def inputs(self) -> tuple[str, str, str]:
        b = self.b
        ids = b.input("input_ids", TensorProto.INT64, ["batch", "sequence"])
        am = b.input("attention_mask", TensorProto.INT64, ["batch", "total_sequence"])
        pos = b.input("position_ids", TensorProto.INT64, ["batch", "sequence"])
        return ids, am, pos

    def rope_tables(self, pos: str, inv_freq: np.ndarray) -> tuple[str, str, str, str]:
        """cos/sin of concat(freqs, freqs), freqs (b, s, hd/2) = position * inv_freq, shaped for k (b, kvh, s, hd)
        and for q (b, kvh, rep, s, hd)."""
        b = self.b
        freqs = b.op("Mul", [b.op("Unsqueeze", [b.op("Cast", [pos], "rope", to=TensorProto.FLOAT), b.const([2])], "rope"),
                             b.const(inv_freq, np.float32)], "rope")
        emb = b.op("Concat", [freqs, freqs], "rope", axis=-1)
        cos, sin = b.op("Cos", [emb], "rope"), b.op("Sin", [emb], "rope")
        return (b.op("Unsqueeze", [cos, b.const([1])], "rope"), b.op("Unsqueeze", [sin, b.const([1])], "rope"),
                b.op("Unsqueeze", [cos, b.const([1, 2])], "rope"), b.op("Unsqueeze", [sin, b.const([1, 2])], "rope"))

    def llama(self) -> None:
        b, c = self.b, self.c
        heads = int(c["num_attention_heads"])
        kv_heads = int(c.get("num_key_value_heads") or heads)
        head_dim = int(c.get("head_dim") or c["hidden_size"] // heads)
        eps = float(c["rms_norm_eps"])
        ids, am, pos = self.inputs()
        x = b.op("Gather", [self.dense("model.embed_tokens.weight", embedding=True), ids], "embed", axis=0)
        mask = self.causal_mask(ids, am, sliding_window(c))
        rope = self.rope_tables(pos, rope_inv_freq(c, head_dim))
        for i in range(int(c["num_hidden_layers"])):
            p = f"model.layers.{i}"
            n = self.rms_norm(x, f"{p}.input_layernorm.weight", eps, f"layers.{i}.norm1")
            a = self.attention(n, i, f"{p}.self_attn", ("q_proj", "k_proj", "v_proj", "o_proj"), heads, kv_heads,
                               head_dim, mask, rope, None, head_dim ** -0.5)
            x = b.op("Add", [x, a], f"layers.{i}")
            n = self.rms_norm(x, f"{p}.post_attention_layernorm.weight", eps, f"layers.{i}.norm2")
            g = self.linear(n, f"{p}.mlp.gate_proj")
            g = b.op("Mul", [g, b.op("Sigmoid", [g], f"layers.{i}.mlp")], f"layers.{i}.mlp")  # SiLU
            m = self.linear(b.op("Mul", [g, self.linear(n, f"{p}.mlp.up_proj")], f"layers.{i}.mlp"), f"{p}.mlp.down_proj")
            x = b.op("Add", [x, m], f"layers.{i}")
        x = self.rms_norm(x, "model.norm.weight", eps, "norm")
        self.outputs(x, "lm_head.weight", "model.embed_tokens.weight")

    def gemma3(self) -> None:
        b, c = self.b, self.c
        heads, head_dim = int(c["num_attention_heads"]), int(c["head_dim"])
        kv_heads = int(c.get("num_key_value_heads") or heads)
        eps = float(c["rms_norm_eps"])
        ids, am, pos = self.inputs()
        x = b.op("Gather", [self.dense("model.embed_tokens.weight", embedding=True), ids], "embed", axis=0)
        x = b.op("Mul", [x, b.const(np.sqrt(np.float32(c["hidden_size"])), np.float32)], "embed")
        theta, theta_swa = gemma_rope_bases(c)
        window = sliding_window(c)
        masks = {False: self.causal_mask(ids, am), True: self.causal_mask(ids, am, window) if window else None}
        ropes = {False: self.rope_tables(pos, inv_freq_of(theta, head_dim)),
                 True: self.rope_tables(pos, inv_freq_of(theta_swa, head_dim))}
        for i, sliding in enumerate(sliding_layers(c)):
            p, h = f"model.layers.{i}", f"layers.{i}"
            sliding = sliding and window is not None
            n = self.gemma_norm(x, f"{p}.input_layernorm.weight", eps, f"{h}.norm1")
            a = self.attention(n, i, f"{p}.self_attn", ("q_proj", "k_proj", "v_proj", "o_proj"), heads, kv_heads,
                               head_dim, masks[sliding], ropes[sliding], None, float(c["query_pre_attn_scalar"]) ** -0.5,
                               qk_norm=eps)
            x = b.op("Add", [x, self.gemma_norm(a, f"{p}.post_attention_layernorm.weight", eps, f"{h}.norm2")], h)
            n = self.gemma_norm(x, f"{p}.pre_feedforward_layernorm.weight", eps, f"{h}.norm3")
            g = b.op("Gelu", [self.linear(n, f"{p}.mlp.gate_proj")], f"{h}.mlp", approximate="tanh")
            m = self.linear(b.op("Mul", [g, self.linear(n, f"{p}.mlp.up_proj")], f"{h}.mlp"), f"{p}.mlp.down_proj")
            x = b.op("Add", [x, self.gemma_norm(m, f"{p}.post_feedforward_layernorm.weight", eps, f"{h}.norm4")], h)
        x = self.gemma_norm(x, "model.norm.weight", eps, "norm")
        self.outputs(x, "lm_head.weight", "model.embed_tokens.weight")

    def opt(self) -> None:
        b, c = self.b, self.c
        heads = int(c["num_attention_heads"])
        head_dim = int(c["hidden_size"]) // heads
        before = bool(c.get("do_layer_norm_before", True))
        ids, am, pos = self.inputs()
        d = "model.decoder"
        tok = b.op("Gather", [self.dense(f"{d}.embed_tokens.weight", embedding=True), ids], "embed", axis=0)
        rows = b.op("Add", [pos, b.const(2)], "embed")  # OPT's learned positions start at row 2
        x = b.op("Add", [tok, b.op("Gather", [self.dense(f"{d}.embed_positions.weight"), rows], "embed", axis=0)], "embed")
        mask = self.causal_mask(ids, am)
        for i in range(int(c["num_hidden_layers"])):
            p = f"{d}.layers.{i}"
            h = self.layer_norm(x, f"{p}.self_attn_layer_norm", f"layers.{i}.norm1") if before else x
            a = self.attention(h, i, f"{p}.self_attn", ("q_proj", "k_proj", "v_proj", "out_proj"), heads, heads,
                               head_dim, mask, None, head_dim ** -0.5, None)
            x = b.op("Add", [x, a], f"layers.{i}")
            if not before:
                x = self.layer_norm(x, f"{p}.self_attn_layer_norm", f"layers.{i}.norm1")
            h = self.layer_norm(x, f"{p}.final_layer_norm", f"layers.{i}.norm2") if before else x
            f = self.linear(b.op("Relu", [self.linear(h, f"{p}.fc1")], f"layers.{i}.mlp"), f"{p}.fc2")
            x = b.op("Add", [x, f], f"layers.{i}")
            if not before:
                x = self.layer_norm(x, f"{p}.final_layer_norm", f"layers.{i}.norm2")
        if self.has(f"{d}.final_layer_norm.weight"):
            x = self.layer_norm(x, f"{d}.final_layer_norm", "norm")
        self.outputs(x, "lm_head.weight", f"{d}.embed_tokens.weight")


def inv_freq_of(theta: float, head_dim: int) -> np.ndarray:
    """(head_dim/2,) float32: 1 / theta^(2d / head_dim), as transformers computes it."""
    return (1.0 / np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim))).astype(np.float32)


def rope_inv_freq(config: dict, head_dim: int) -> np.ndarray:
    """(head_dim/2,) float32 inverse frequencies as transformers computes them; llama3 scaling divides them
    (architectures.check_config has refused any other scaling)."""
    theta, scaling = rope_config(config)
    inv = inv_freq_of(theta, head_dim)
    if scaling is None:
        return inv
    return (inv / llama3_rope_factors(config, head_dim, theta, scaling)).astype(np.float32)


def build_decoder_graph(ck: Checkpoint, encode_linear):
    """The GraphProto of the whole decoder; ModelError for a model the graph does not compute, FormatError for a
    tensor it would not use."""
    arch = check_config(ck.config, ".onnx")
    dec = _Decoder(ck, encode_linear)
    {"llama": dec.llama, "gemma3": dec.gemma3, "opt": dec.opt}[arch.layout]()
    unused = sorted(set(ck.dense) - dec.used) + sorted((set(ck.layers) | set(ck.grids)) - dec.used)
    if unused:
        raise FormatError(f"{ck.path}: the ONNX graph does not use tensor {unused[0]} (unsupported model layout)")
    return dec.b.graph(f"pbs2p-{arch.model_type}")
