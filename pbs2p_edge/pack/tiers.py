"""The one table of storage tiers (docs/FORMAT.md §10): each linear, and the embedding / head, is stored in one.

A grid tier stores codes q on a uniform grid per block of `block` values with float16 scale(s):
value = d * (q - offset) for the symmetric ggml types, (d * q) + m for our asymmetric ones. Our two-level tiers
(`sub` > 0, llama.cpp's K-quant idea on rows of any multiple of 64) give each sub-block of `sub` values its own d and m
as 4-bit codes of the row's float16 scales: d = D * sc, m = -(M * mc). This file is numpy
only (the exporters use it): the block byte layouts, their packer and the reference decoder. The math that chooses
codes and scales (GPTQ) is pbs2p_edge.algo.gptq_grid; libpbs2p's decoders are native/src/dense_*.c.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, FormatError


@dataclass(frozen=True)
class Tier:
    name: str
    block: int  # values per scale block (1 for f16); K must be a multiple
    block_bytes: int  # bytes of one block on disk
    qmax: int  # codes 0..qmax (0 for f16)
    offset: int  # symmetric ggml types: value = d * (q - offset); 0 with a min m (asymmetric)
    has_min: bool  # (float16 d, float16 m) per block, else float16 d alone
    ggml_type: str | None  # gguf.GGMLQuantizationType name when stored as that standard type, else None (ours)
    sub: int = 0  # two-level tiers: values per sub-block (its 4-bit scale and min codes); 0: d (and m) per block

    @property
    def bits(self) -> float:
        """Honest bits per weight of a block: everything stored for it / its values (a two-level tier's row adds its
        ROW_HEADER: bits_for)."""
        return 8 * self.block_bytes / self.block

    @property
    def scale_block(self) -> int:
        """Values that share one d (and m)."""
        return self.sub or self.block

    def bits_for(self, cols: int) -> float:
        """Honest bits per weight of a row of `cols` values."""
        return 8 * self.row_bytes(cols) / cols

    @property
    def grid(self) -> bool:
        return self.qmax > 0

    def row_bytes(self, cols: int) -> int:
        return (ROW_HEADER if self.sub else 0) + cols // self.block * self.block_bytes

    def cols_of(self, row_bytes: int) -> int:
        """The values of a row of `row_bytes` bytes (the inverse of row_bytes)."""
        return (row_bytes - (ROW_HEADER if self.sub else 0)) // self.block_bytes * self.block

    def check_cols(self, what: str, cols: int) -> None:
        if cols % self.block:
            raise ConfigError(f"{what}: tier {self.name} needs a row width divisible by {self.block}, got {cols}")


ROW_HEADER = 4  # two-level tiers: float16 D, float16 M at the start of each row
SUB_CODE_MAX = 15  # two-level tiers: scale and min codes 0..15 (a nibble each)

# The binary tier: PBS2P's packed layers (docs/FORMAT.md §2-8); its bits depend on the layer's structure.
BINARY = "pbs2p"

TIERS: dict[str, Tier] = {
    "f16": Tier("f16", 1, 2, 0, 0, False, "F16"),
    "q8_0": Tier("q8_0", 32, 34, 255, 128, False, "Q8_0"),  # int8 q in -127..127 stored as q + 128 logically
    "q4_0": Tier("q4_0", 32, 18, 15, 8, False, "Q4_0"),
    "q3_g64": Tier("q3_g64", 64, 28, 7, 0, True, None),
    "q2_g64": Tier("q2_g64", 64, 20, 3, 0, True, None),
    "q4_s16": Tier("q4_s16", 64, 36, 15, 0, True, None, 16),
    "q3_s16": Tier("q3_s16", 64, 28, 7, 0, True, None, 16),
    "q2_s16": Tier("q2_s16", 64, 20, 3, 0, True, None, 16),
}
GRID_TIERS = tuple(n for n, t in TIERS.items() if t.grid)
# tiers the token embedding / head may take: the standard ggml types, which llama.cpp-style tools read too, and our
# blocks of 64 for files under 4 bits per parameter (the tied embedding is a fifth of a small model's parameters)
EMBED_TIERS = ("f16", "q8_0", "q4_0", "q3_g64", "q2_g64", "q4_s16", "q3_s16", "q2_s16")
# shrink factors of a block's range tried by every scale search (GPTQ's in pbs2p_edge.algo.gptq_grid, and
# quantize_nearest's below): the factor with the least (weighted) squared error is kept per row and block
CLIP = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)
# [choice] a two-level tier's sub-block searches also try, for each factor, the scale and min codes one step either
# side of the rounded ones (these first, so ties keep them): the rounded pair is often not the best. SmolLM2 blocks
# 3 and 15's q, o, up and down, GPTQ loss in original units (16 x 512 tokens of Emma): q2_s16 -17 %, q3_s16 -11 %
# (all 240 pairs: -18 % / -12 %), for about twice GPTQ's time
SUB_CODE_STEPS = tuple((a, b) for a in (0, -1, 1) for b in (0, -1, 1))


def tier(name: str) -> Tier:
    try:
        return TIERS[name]
    except KeyError:
        raise ConfigError(f"unknown tier {name!r}; choose one of {BINARY}, {', '.join(TIERS)}") from None


@dataclass(frozen=True)
class GridLayer:
    """A linear stored in a grid tier: `blocks` (R, row_bytes) uint8, the file's bytes of each row (or RowPieces of
    them, read when the checkpoint is written: model/progress.py)."""
    tier: str
    rows: int
    cols: int
    blocks: np.ndarray

    def __post_init__(self) -> None:
        t = tier(self.tier)
        shape = (self.rows, t.row_bytes(self.cols))
        if self.cols % t.block or self.blocks.dtype != np.uint8 or self.blocks.shape != shape:
            raise FormatError(f"{self.tier} layer ({self.rows}, {self.cols}) needs uint8 blocks of shape {shape}, "
                              f"got {self.blocks.dtype} {self.blocks.shape}")

    @property
    def honest_bits(self) -> int:
        return 8 * self.blocks.nbytes

    def decode(self) -> np.ndarray:
        return decode(self.tier, self.blocks, self.cols)


def _f16_exact(name: str, x: np.ndarray) -> np.ndarray:
    h = np.asarray(x, dtype=np.float32).astype(np.float16)
    if not (np.isfinite(h) & (h.astype(np.float32) == x)).all():
        raise FormatError(f"{name}: scales must be finite float16 values")
    return h


def pack(name: str, q: np.ndarray, d: np.ndarray, m: np.ndarray | None = None, sc: np.ndarray | None = None,
         mc: np.ndarray | None = None) -> np.ndarray:
    """Blocks (R, row_bytes) uint8 of tier `name` from codes q (R, K) in 0..qmax, d (R, K/block) and, for
    tiers with a min, m (R, K/block), both holding float16 values exactly (FormatError otherwise). A two-level tier
    takes the row's D as d (R, 1), its M as m (R, 1) and the sub-blocks' codes sc, mc (R, K/sub) in 0..SUB_CODE_MAX."""
    t = tier(name)
    if not t.grid:
        raise ConfigError(f"tier {name} has no codes to pack")
    q = np.asarray(q)
    R, K = q.shape
    t.check_cols(name, K)
    if q.min(initial=0) < 0 or q.max(initial=0) > t.qmax:
        raise FormatError(f"{name}: codes must be in 0..{t.qmax}")
    nb = K // t.block
    qb = q.astype(np.uint8).reshape(R, nb, t.block)
    if t.sub:
        head = np.concatenate([_f16_exact(f"{name} D", np.asarray(d).reshape(R, 1)).view(np.uint8),
                               _f16_exact(f"{name} M", np.asarray(m).reshape(R, 1)).view(np.uint8)], axis=-1)
        nibbles = []
        for what, c in (("scale", sc), ("min", mc)):
            c = np.asarray(c)
            if c.shape != (R, K // t.sub) or c.min(initial=0) < 0 or c.max(initial=0) > SUB_CODE_MAX:
                raise FormatError(f"{name}: {what} codes must be (R, K/{t.sub}) in 0..{SUB_CODE_MAX}")
            nibbles.append(c.astype(np.uint8).reshape(R, nb, t.block // t.sub))
        parts = [nibbles[0] | nibbles[1] << 4, _pack_codes(t, qb)]
        body = np.concatenate(parts, axis=-1).reshape(R, nb * t.block_bytes)
        return np.ascontiguousarray(np.concatenate([head, body], axis=-1))
    parts = [_f16_exact(f"{name} d", np.asarray(d).reshape(R, nb, 1)).view(np.uint8)]
    if t.has_min:
        parts.append(_f16_exact(f"{name} m", np.asarray(m).reshape(R, nb, 1)).view(np.uint8))
    parts.append(_pack_codes(t, qb))
    out = np.concatenate(parts, axis=-1)
    return np.ascontiguousarray(out.reshape(R, nb * t.block_bytes))


def _pack_codes(t: Tier, qb: np.ndarray) -> np.ndarray:
    """The code bytes of blocks qb (R, nb, block) uint8."""
    if t.name == "q8_0":
        return (qb.astype(np.int16) - t.offset).astype(np.int8).view(np.uint8)
    if t.qmax == 15:  # q4_0, and q4_s16's two halves of 32 each as one Q4_0 block's codes
        halves = qb.reshape(*qb.shape[:2], -1, 32)
        return (halves[..., :16] | (halves[..., 16:] << 4)).reshape(*qb.shape[:2], -1)
    # ours: low two bits of q[16s + i] at bits 2s of qs[i]; q3's high bit j at bit j % 8 of qh[j / 8]
    low = qb & 3
    out = low[..., 0:16] | low[..., 16:32] << 2 | low[..., 32:48] << 4 | low[..., 48:64] << 6
    if t.qmax == 7:
        out = np.concatenate([out, np.packbits(qb >> 2, axis=-1, bitorder="little")], axis=-1)
    return out


def _codes_of(t: Tier, body: np.ndarray) -> np.ndarray:
    """Codes (R, nb, block) uint8 of the code bytes body (R, nb, bytes): the inverse of _pack_codes."""
    if t.name == "q8_0":
        return (body.view(np.int8).astype(np.int16) + t.offset).astype(np.uint8)
    if t.qmax == 15:
        halves = body.reshape(*body.shape[:2], -1, 16)
        return np.concatenate([halves & 15, halves >> 4], axis=-1).reshape(*body.shape[:2], -1)
    qs = body[..., :16]
    q = np.concatenate([(qs >> s) & 3 for s in (0, 2, 4, 6)], axis=-1)
    if t.qmax == 7:
        q = q | (np.unpackbits(body[..., 16:24], axis=-1, bitorder="little") << 2)
    return q


def sub_codes(name: str, blocks: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A two-level tier's (D (R, 1), M (R, 1) float32 holding float16 values, sc, mc (R, K/sub) uint8): what pack
    took besides the codes."""
    t = tier(name)
    if not t.sub:
        raise ConfigError(f"tier {name} has no sub-block codes")
    b = np.asarray(blocks, dtype=np.uint8)
    R = b.shape[0]
    D = b[:, 0:2].copy().view(np.float16).astype(np.float32)
    M = b[:, 2:4].copy().view(np.float16).astype(np.float32)
    nib = b[:, ROW_HEADER:].reshape(R, cols // t.block, t.block_bytes)[..., :t.block // t.sub].reshape(R, -1)
    return D, M, nib & 15, nib >> 4


def pack_float(W: np.ndarray) -> np.ndarray:
    """Blocks (R, 2K) uint8 of the f16 tier from W (R, K) holding float16 values exactly."""
    return np.ascontiguousarray(_f16_exact("f16 weights", np.asarray(W, dtype=np.float32)).view(np.uint8))


def codes(name: str, blocks: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(q (R, K) uint8, d (R, K/scale_block) float32, m or None): the inverse of pack (a two-level tier's d and m are
    each sub-block's, D * sc and -(M * mc), exact in float32)."""
    t = tier(name)
    R = blocks.shape[0]
    nb = cols // t.block
    b = np.asarray(blocks, dtype=np.uint8)
    if t.sub:
        D, M, sc, mc = sub_codes(name, b, cols)
        body = b[:, ROW_HEADER:].reshape(R, nb, t.block_bytes)[..., t.block // t.sub:]
        return _codes_of(t, body).reshape(R, cols), D * sc, -(M * mc)
    b = b.reshape(R, nb, t.block_bytes)
    d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    at = 2
    m = None
    if t.has_min:
        m = b[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        at = 4
    return _codes_of(t, b[..., at:]).reshape(R, cols), d, m


def decode(name: str, blocks: np.ndarray, cols: int) -> np.ndarray:
    """W_hat (R, K) float32 in the reference order: d * (q - offset), or (d * q) + m."""
    t = tier(name)
    if not t.grid:
        return np.ascontiguousarray(blocks).view(np.float16).astype(np.float32).reshape(-1, cols)
    q, d, m = codes(name, blocks, cols)
    R = q.shape[0]
    qf = q.reshape(R, -1, t.scale_block).astype(np.float32) - np.float32(t.offset)
    v = d[..., None] * qf
    if m is not None:
        v = v + m[..., None]
    return v.reshape(R, cols).astype(np.float32)


ROWS_AT_ONCE = 4096  # rows quantize_nearest searches at a time: bounds its temporaries for a 256k-token vocabulary


def _nearest_codes(t: Tier, Wb: np.ndarray, d: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The squared error (..., 1) of each block of Wb (..., block) on the grid d * q + m with codes q to nearest, and
    the codes."""
    inv = np.divide(1, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.rint((Wb - m) * inv), 0, t.qmax)
    return np.square(Wb - (d * q + m)).sum(-1, keepdims=True), q


def _least_error(candidates) -> tuple:
    """Per block, the arrays of the candidate with the least error (the first on ties): candidates yields
    (err (..., 1), array, ...), one per shrink factor."""
    best = None
    for cand in candidates:
        best = cand if best is None else tuple(np.where(cand[0] < best[0], a, b) for a, b in zip(cand, best))
    return best[1:]


def quantize_nearest(name: str, W: np.ndarray) -> np.ndarray:
    """Blocks (R, row_bytes) uint8 of our asymmetric tier `name` holding W (R, K) without a Hessian (the token
    embedding / head): per block, d = (hi - lo) / qmax and m = lo from the block's range (always holding 0) shrunk by
    each factor of CLIP, both rounded to float16, codes to nearest; the factor with the least squared error is kept
    (the first on ties). Deterministic: numpy float32, rounding half to even."""
    t = tier(name)
    if not t.grid or t.ggml_type is not None or not t.has_min:
        raise ConfigError(f"quantize_nearest takes our asymmetric tiers, not {name}")
    W = np.asarray(W, dtype=np.float32)
    R, K = W.shape
    t.check_cols(name, K)
    out = np.empty((R, t.row_bytes(K)), dtype=np.uint8)
    if t.sub:
        for r0 in range(0, R, ROWS_AT_ONCE):
            out[r0:r0 + ROWS_AT_ONCE] = _nearest_sub(t, W[r0:r0 + ROWS_AT_ONCE])
        return out
    for r0 in range(0, R, ROWS_AT_ONCE):
        Wb = W[r0:r0 + ROWS_AT_ONCE].reshape(-1, K // t.block, t.block)
        lo0 = np.minimum(Wb.min(-1, keepdims=True), 0)
        hi0 = np.maximum(Wb.max(-1, keepdims=True), 0)

        def candidates():
            for c in CLIP:
                with np.errstate(over="ignore"):
                    d = (((hi0 * np.float32(c)) - (lo0 * np.float32(c))) / np.float32(t.qmax)).astype(np.float16)
                    m = (lo0 * np.float32(c)).astype(np.float16)
                d, m = np.clip(d.astype(np.float32), 0, 65504), np.clip(m.astype(np.float32), -65504, 0)
                yield (*_nearest_codes(t, Wb, d, m), d, m)

        q, d, m = _least_error(candidates())
        n = Wb.shape[0]
        out[r0:r0 + n] = pack(name, q.reshape(n, K), d.reshape(n, -1), m.reshape(n, -1))
    return out


def _nearest_sub(t: Tier, W: np.ndarray) -> np.ndarray:
    """quantize_nearest for a two-level tier: D and M of each row as algo.gptq_grid.row_scales takes them (every
    sub-block's range fits), then per sub-block the CLIP factor and SUB_CODE_STEPS step whose codes sc =
    round(range / qmax / D) + step in 1..15 and mc = round(-lo / M) + step in 0..15 give the least squared error,
    codes to nearest."""
    R, K = W.shape
    Wb = W.reshape(R, K // t.sub, t.sub)
    lo0 = np.minimum(Wb.min(-1, keepdims=True), 0)
    hi0 = np.maximum(Wb.max(-1, keepdims=True), 0)
    with np.errstate(over="ignore"):
        D = (((hi0 - lo0) / np.float32(t.qmax)).max(1, keepdims=True) / np.float32(SUB_CODE_MAX)).astype(np.float16)
        M = ((-lo0).max(1, keepdims=True) / np.float32(SUB_CODE_MAX)).astype(np.float16)
    D, M = np.clip(D.astype(np.float32), 0, 65504), np.clip(M.astype(np.float32), 0, 65504)

    def rounded(x, step):
        return np.rint(np.divide(x, step, out=np.zeros_like(x), where=step != 0))

    def code(r, step, low):
        return np.where(step != 0, np.clip(r, low, SUB_CODE_MAX), 0).astype(np.float32)

    def candidates():
        for c in CLIP:
            lo, hi = lo0 * np.float32(c), hi0 * np.float32(c)
            rs, rm = rounded((hi - lo) / np.float32(t.qmax), D), rounded(-lo, M)
            for ds, dm in SUB_CODE_STEPS:
                sc, mc = code(rs + ds, D, 1), code(rm + dm, M, 0)
                yield (*_nearest_codes(t, Wb, D * sc, -(M * mc)), sc, mc)

    q, sc, mc = _least_error(candidates())
    return pack(t.name, q.reshape(R, K), D, M, sc.reshape(R, -1).astype(np.uint8), mc.reshape(R, -1).astype(np.uint8))


def round_trip(name: str, W: np.ndarray) -> np.ndarray:
    """W (R, K) as the file holds it in tier `name` when quantized without a Hessian, as the exporter does for the
    token embedding / head: standard types by gguf-py's quantizer (ggml's rounding), ours by quantize_nearest;
    float32."""
    import gguf

    t = tier(name)
    W = np.asarray(W, dtype=np.float32)
    if name == "f16":
        return W.astype(np.float16).astype(np.float32)
    if t.ggml_type is None:
        return decode(name, quantize_nearest(name, W), W.shape[-1])
    t.check_cols(name, W.shape[-1])
    qtype = gguf.GGMLQuantizationType[t.ggml_type]
    return gguf.quants.dequantize(gguf.quants.quantize(W, qtype), qtype).reshape(W.shape)
