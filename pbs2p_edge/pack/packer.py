"""Reference packer and unpacker of one linear layer (docs/FORMAT.md): LayerResult arrays <-> PackedLayer.

numpy only. `unpack_layer` is the format's reference dequantization; it equals
LayerResult.dequantize() exactly (same float32 operations in the same order).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, FormatError, Pbs2pError
from .bitstream import pack_bits, pack_fields, unpack_bits, unpack_fields
from .layout import CODE_OF, MS, VALUE_OF, LayerMeta, check_arrays, expected_arrays, group_width, mask_width


PACK_ROWS_ELEMENTS = 1 << 22  # [choice] weights packed at a time: 4 Mi, not the whole layer (its bit fields widened
# to uint32 peaked at 472 MiB for an 8B MLP's 14336 x 4096 at 6:8, traced; 48 MiB in pieces)


@dataclass(frozen=True)
class PackedLayer:
    meta: LayerMeta
    arrays: dict[str, np.ndarray]  # name -> uint8 stream or float16 scales, see layout.expected_arrays (or
    # RowPieces of one, read when the checkpoint is written: model/progress.py)


def _to_f16(name: str, x: np.ndarray) -> np.ndarray:
    """float32 -> float16, refusing any value float16 does not hold exactly (the file must lose nothing)."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        h = x.astype(np.float16)
    bad = ~(np.isfinite(x) & (h.astype(np.float32) == x))
    if bad.any():
        raise FormatError(f"{name} holds {int(bad.sum())} value(s) not exactly representable in float16, e.g. {x[bad][0]!r}")
    return np.ascontiguousarray(h)


def pack_layer(
    mask: np.ndarray,
    signs: np.ndarray,
    salient: np.ndarray,
    group: np.ndarray,
    alpha: np.ndarray,
    mu: np.ndarray,
    col_scale: np.ndarray | None,
    n: int,
    m: int,
    group_size: int,
) -> PackedLayer:
    """Pack LayerResult-shaped numpy arrays (see pbs2p_edge/algo/result.py) into the on-disk format.

    Raises ConfigError for bad n/m/group_size/K and FormatError for arrays that break the
    LayerResult contract (wrong counts per M-group, non-canonical signs or groups, scales not in float16).
    """
    if m not in MS or not 1 <= n <= m:
        raise ConfigError(f"N:M must have M in {MS} and 1 <= N <= M, got {n}:{m}")
    mask = np.asarray(mask, dtype=bool)
    signs = np.asarray(signs, dtype=bool)
    salient = np.asarray(salient, dtype=bool)
    group = np.asarray(group)
    alpha = np.asarray(alpha, dtype=np.float32)
    mu = np.asarray(mu, dtype=np.float32)
    if mask.ndim != 2:
        raise FormatError(f"mask must be 2-D (R, K), got shape {mask.shape}")
    R, K = mask.shape
    if K % m:
        raise ConfigError(f"layer width K={K} is not a multiple of M={m}")
    if group_size < 1:
        raise ConfigError(f"group_size must be >= 1, got {group_size}")
    G = -(-K // group_size)
    if alpha.ndim != 4 or alpha.shape[0] not in (1, 2) or alpha.shape[2:] != (R, G):
        raise FormatError(f"alpha must be (P, 1+S, {R}, {G}), got {alpha.shape}")
    P, S = alpha.shape[0], alpha.shape[1] - 1
    if S < 1:
        raise FormatError("alpha must have at least one split group (shape[1] >= 2)")
    shapes = {"signs": (signs.shape, (P, R, K)), "salient": (salient.shape, (K,)), "group": (group.shape, (R, K)),
              "mu": (mu.shape, (1 + S, R, G))}
    if col_scale is not None:
        col_scale = np.asarray(col_scale, dtype=np.float32)
        shapes["col_scale"] = (col_scale.shape, (1 + S, K))
    for key, (got, want) in shapes.items():
        if got != want:
            raise FormatError(f"{key} must have shape {want}, got {got}")

    n_salient = int(salient.sum())
    has_salient = n_salient > 0
    if has_salient and P != 2:
        raise FormatError("a layer with salient columns needs two sign planes (P = 2)")
    regions = slice(0, None) if has_salient else slice(1, None)  # stored regions
    has_mu = bool((mu[regions] != 0).any())
    meta = LayerMeta(rows=R, cols=K, n=n, m=m, group_size=group_size, split=S, has_salient=has_salient,
                     n_salient=n_salient, has_mu=has_mu, has_col_scale=col_scale is not None)

    step = max(1, PACK_ROWS_ELEMENTS // K)
    pieces = [_row_streams(meta, mask[r0: r0 + step], signs[:, r0: r0 + step], salient, group[r0: r0 + step], r0)
              for r0 in range(0, max(R, 1), step)]
    rows = {k: np.concatenate([piece[k] for piece in pieces]) for k in pieces[0]}
    arrays: dict[str, np.ndarray] = {k: rows[k] for k in ("mask", "signs", "signs2") if k in rows}
    if has_salient:
        arrays["salient"] = pack_bits(salient)
    if "groups" in rows:
        arrays["groups"] = rows["groups"]
    arrays["alpha"] = _to_f16("alpha", alpha[0, regions])
    if has_salient:
        arrays["alpha2"] = _to_f16("alpha2", alpha[1, 0])
    if has_mu:
        arrays["mu"] = _to_f16("mu", mu[regions])
    if col_scale is not None:
        arrays["col_scale"] = _to_f16("col_scale", col_scale[regions])
    check_arrays("pack_layer", meta, arrays)
    return PackedLayer(meta, arrays)


def _row_streams(meta: LayerMeta, mask: np.ndarray, signs: np.ndarray, salient: np.ndarray, group: np.ndarray,
                 r0: int) -> dict[str, np.ndarray]:
    """The per-row streams (mask, signs, signs2, groups) of rows r0 .. r0 + len(mask) - 1 of a layer, after checking
    that those rows keep the LayerResult contract. Every stream packs each row on its own (whole bytes per row), so a
    layer's stream is its row ranges' streams one after the other."""
    R, K, n, m, S = mask.shape[0], meta.cols, meta.n, meta.m, meta.split
    kept = mask.reshape(R, K // m, m).sum(axis=2)
    if (kept != n).any():
        i, q = np.argwhere(kept != n)[0]
        raise FormatError(f"row {r0 + i}, M-group {q} keeps {kept[i, q]} of {m}, expected exactly {n}")
    if (signs & ~mask).any():
        raise FormatError("signs are not canonical: a pruned element has a True sign bit")
    if signs.shape[0] == 2 and (signs[1] & ~salient).any():
        raise FormatError("signs are not canonical: plane 1 is True outside salient columns")
    if ((group != 0) & (~mask | salient)).any():
        raise FormatError("group must be 0 for pruned and salient elements")
    if (group >= S).any():
        raise FormatError(f"group index out of range 0..{S - 1}")
    out: dict[str, np.ndarray] = {}
    w_mask = mask_width(n, m)
    if w_mask:
        weights = np.left_shift(np.uint32(1), np.arange(m, dtype=np.uint32))
        values = (mask.reshape(R, K // m, m) * weights).sum(axis=2, dtype=np.uint32)  # bit j = column M*q + j
        out["mask"] = pack_fields(CODE_OF[m][values], w_mask)
    kpr = meta.kept_per_row
    out["signs"] = pack_bits(signs[0][mask].reshape(R, kpr))  # row-major boolean index = ascending columns
    if meta.has_salient:
        out["signs2"] = pack_bits(signs[1][:, salient])
    w_group = group_width(S)
    if w_group:
        out["groups"] = pack_fields(group[mask].reshape(R, kpr), w_group)
    return out


def unpack_planes(packed: PackedLayer) -> dict[str, np.ndarray]:
    """The logical planes of a packed layer: mask (R,K) bool, s0 / s1 (R,K) bool, salient (K,) bool,
    region (R,K) int64 index into the stored scale arrays (pruned elements: any valid region)."""
    meta, a = packed.meta, packed.arrays
    R, K, m, n = meta.rows, meta.cols, meta.m, meta.n
    w_mask = mask_width(n, m)
    if w_mask:
        codes = unpack_fields(a["mask"], K // m, w_mask)
        table = VALUE_OF[(n, m)]
        if (codes >= table.size).any():
            raise FormatError(f"mask code out of range for {n}:{m} (>= {table.size})")
        values = table[codes].astype(np.uint32)
        mask = ((values[:, :, None] >> np.arange(m, dtype=np.uint32)) & 1).astype(bool).reshape(R, K)
    else:
        mask = np.ones((R, K), dtype=bool)
    kpr = meta.kept_per_row
    s0 = np.zeros((R, K), dtype=bool)
    s0[mask] = unpack_bits(a["signs"], kpr).reshape(-1)
    s1 = np.zeros((R, K), dtype=bool)
    if meta.has_salient:
        salient = unpack_bits(a["salient"], K)
        if int(salient.sum()) != meta.n_salient:
            raise FormatError(f"salient stream has {int(salient.sum())} columns, metadata says {meta.n_salient}")
        s1[:, salient] = unpack_bits(a["signs2"], meta.n_salient)
    else:
        salient = np.zeros(K, dtype=bool)
    group = np.zeros((R, K), dtype=np.int64)
    w_group = group_width(meta.split)
    if w_group:
        group[mask] = unpack_fields(a["groups"], kpr, w_group).reshape(-1)
        if (group >= meta.split).any():
            raise FormatError(f"split-group index out of range 0..{meta.split - 1}")
    off = int(meta.has_salient)  # stored index of region 1 + k
    region = np.where(salient[None, :], 0, off + group)
    return {"mask": mask, "s0": s0, "s1": s1, "salient": salient, "region": region}


def unpack_layer(packed: PackedLayer) -> np.ndarray:
    """W_hat (R, K) float32, by docs/FORMAT.md §6 in exactly that order."""
    meta, a = packed.meta, packed.arrays
    check_arrays("unpack_layer", meta, a)
    p = unpack_planes(packed)
    R, K = meta.rows, meta.cols
    rows = np.arange(R)[:, None]
    cols = np.arange(K)[None, :]
    g = cols // meta.group_size
    region, salient = p["region"], p["salient"][None, :]
    one, minus = np.float32(1), np.float32(-1)
    v = a["alpha"].astype(np.float32)[region, rows, g] * np.where(p["s0"], one, minus)
    if meta.has_salient:
        v = np.where(salient, v + a["alpha2"].astype(np.float32)[rows, g] * np.where(p["s1"], one, minus), v)
    if meta.has_mu:
        v = v + a["mu"].astype(np.float32)[region, rows, g]
    if meta.has_col_scale:
        v = v * a["col_scale"].astype(np.float32)[region, cols]
    return np.where(p["mask"], v, np.float32(0)).astype(np.float32, copy=False)


def row_slice(packed: PackedLayer, r0: int, r1: int) -> PackedLayer:
    """Rows r0 .. r1 - 1 of a packed layer as a packed layer of its own: every per-row array sliced (views, no copy),
    the per-column ones (salient, col_scale) shared. Which axis of an array runs over the rows is read off
    expected_arrays (the one that grows with the row count), so the layout stays stated once."""
    meta = packed.meta
    if not 0 <= r0 < r1 <= meta.rows:
        raise ConfigError(f"rows {r0}..{r1} are not inside a layer of {meta.rows} rows")
    here, more = expected_arrays(meta), expected_arrays(dataclasses.replace(meta, rows=meta.rows + 1))
    arrays = {}
    for k, a in packed.arrays.items():
        axis = next((i for i, (x, y) in enumerate(zip(here[k][0], more[k][0])) if x != y), None)
        arrays[k] = a if axis is None else a[(slice(None),) * axis + (slice(r0, r1),)]
    return PackedLayer(dataclasses.replace(meta, rows=r1 - r0), arrays)


def honest_bits(packed: PackedLayer) -> int:
    """Bits the layer costs on disk: every stream byte and every float16 scale (FORMAT.md §8), metadata excluded."""
    return 8 * sum(int(arr.nbytes) for arr in packed.arrays.values())


def packed_layers(where: str, metas, arrays_by_layer: dict[str, dict[str, np.ndarray]]) -> dict[str, "PackedLayer"]:
    """PackedLayers from a container's (name, LayerMeta) pairs and its arrays grouped by layer name.

    `metas` may be a generator: an invalid LayerMeta raised while it is read becomes the same one-line
    FormatError naming `where` as a missing, extra or mis-shaped array. `arrays_by_layer` is consumed;
    arrays left over belong to no described layer, which is an error too."""
    layers: dict[str, PackedLayer] = {}
    try:
        for name, meta in metas:
            arrays = arrays_by_layer.pop(name, {})
            check_arrays(name, meta, arrays)
            layers[name] = PackedLayer(meta, arrays)
    except Pbs2pError as e:
        raise FormatError(f"{where}: {e}") from None
    if arrays_by_layer:
        raise FormatError(f"{where}: packed arrays of no described layer, e.g. {sorted(arrays_by_layer)[0]}")
    return layers
