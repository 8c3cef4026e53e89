"""The pbs2p packed layer format, version 1 (docs/FORMAT.md): constants, mask-code tables, stream shapes.

This module is the one Python definition of the format; `packer` builds and reads it, the
checkpoint and GGUF containers validate against `expected_arrays`. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError, FormatError

FORMAT_VERSION = 1
MS = (2, 4, 8, 16)  # supported group widths M

# Array names in their on-disk order (a layer stores a subset, see expected_arrays).
STREAMS = ("mask", "signs", "signs2", "salient", "groups")  # uint8 bit streams
SCALES = ("alpha", "alpha2", "mu", "col_scale")  # float16
ARRAY_NAMES = STREAMS + SCALES


def _build_code_tables() -> tuple[dict[int, np.ndarray], dict[tuple[int, int], np.ndarray]]:
    """code_of[m][b] = rank of the m-bit value b among values of its popcount (ascending);
    value_of[(n, m)][c] = the m-bit value of popcount n whose rank is c."""
    code_of, value_of = {}, {}
    for m in MS:
        values = np.arange(1 << m, dtype=np.uint32)
        pop = np.bitwise_count(values)
        code = np.zeros(1 << m, dtype=np.uint16)
        for n in range(m + 1):
            members = values[pop == n]  # ascending by construction
            code[members] = np.arange(members.size, dtype=np.uint16)
            value_of[(n, m)] = members.astype(np.uint16)
        code_of[m] = code
    return code_of, value_of


CODE_OF, VALUE_OF = _build_code_tables()


def mask_width(n: int, m: int) -> int:
    """Bits of one N:M mask code: ceil(log2 C(M, N)); 0 when N = M (nothing to store)."""
    return (math.comb(m, n) - 1).bit_length()


def group_width(split: int) -> int:
    """Bits of one split-group index: ceil(log2 S); 0 when S = 1."""
    return (split - 1).bit_length()


def row_bytes(fields: int, width: int) -> int:
    """Bytes of one row's bit stream of `fields` fields of `width` bits (zero-padded to a byte)."""
    return (fields * width + 7) // 8


@dataclass(frozen=True)
class LayerMeta:
    rows: int  # R, output features
    cols: int  # K, input features (multiple of m)
    n: int  # kept per M-group
    m: int
    group_size: int  # columns per scale group (last group may be shorter)
    split: int  # S, non-salient split groups (regions 1..S)
    has_salient: bool  # region 0 present (2-plane residual binarization on salient columns)
    n_salient: int  # number of salient columns (0 when not has_salient)
    has_mu: bool
    has_col_scale: bool
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.version != FORMAT_VERSION:
            raise FormatError(f"packed format version {self.version} is not supported (this build: {FORMAT_VERSION})")
        if self.m not in MS or not 1 <= self.n <= self.m:
            raise ConfigError(f"N:M must have M in {MS} and 1 <= N <= M, got {self.n}:{self.m}")
        if self.rows < 1 or self.cols < 1 or self.cols % self.m:
            raise ConfigError(f"layer {self.rows}x{self.cols}: K must be a positive multiple of M={self.m}")
        if self.group_size < 1:
            raise ConfigError(f"group_size must be >= 1, got {self.group_size}")
        if not 1 <= self.split <= 255:
            raise ConfigError(f"split groups must be in 1..255, got {self.split}")
        if self.has_salient != (self.n_salient > 0) or not 0 <= self.n_salient <= self.cols:
            raise FormatError(f"inconsistent salient metadata: has_salient={self.has_salient}, n_salient={self.n_salient}")

    @property
    def groups(self) -> int:
        """G, scale groups per row."""
        return -(-self.cols // self.group_size)

    @property
    def regions(self) -> int:
        """Stored regions: salient (if any) + S split groups."""
        return self.split + int(self.has_salient)

    @property
    def kept_per_row(self) -> int:
        return self.cols // self.m * self.n

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LayerMeta":
        if not isinstance(d, dict):
            raise FormatError(f"layer metadata is a {type(d).__name__}, not a table")
        for k, f in cls.__dataclass_fields__.items():  # JSON types exactly: a string or list is never a count
            want = bool if f.type in (bool, "bool") else int
            if k in d and type(d[k]) is not want:
                raise FormatError(f"bad layer metadata: {k} = {d[k]!r} is not {'a bool' if want is bool else 'an integer'}")
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except KeyError as e:
            raise FormatError(f"layer metadata lacks the field {e.args[0]!r}") from None
        except TypeError as e:
            raise FormatError(f"bad layer metadata: {e}") from None


def expected_arrays(meta: LayerMeta) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """name -> (shape, dtype) of every array a layer with this metadata stores, in on-disk order."""
    R, K, G, nreg = meta.rows, meta.cols, meta.groups, meta.regions
    u8, f16 = np.dtype(np.uint8), np.dtype(np.float16)
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    w_mask = mask_width(meta.n, meta.m)
    if w_mask:
        out["mask"] = ((R, row_bytes(K // meta.m, w_mask)), u8)
    out["signs"] = ((R, row_bytes(meta.kept_per_row, 1)), u8)
    if meta.has_salient:
        out["signs2"] = ((R, row_bytes(meta.n_salient, 1)), u8)
        out["salient"] = ((row_bytes(K, 1),), u8)
    w_group = group_width(meta.split)
    if w_group:
        out["groups"] = ((R, row_bytes(meta.kept_per_row, w_group)), u8)
    out["alpha"] = ((nreg, R, G), f16)
    if meta.has_salient:
        out["alpha2"] = ((R, G), f16)
    if meta.has_mu:
        out["mu"] = ((nreg, R, G), f16)
    if meta.has_col_scale:
        out["col_scale"] = ((nreg, K), f16)
    return out


def check_arrays(name: str, meta: LayerMeta, arrays: dict[str, np.ndarray]) -> None:
    """Raise FormatError unless `arrays` holds exactly the arrays `meta` requires, with their shapes and dtypes, and
    finite scales."""
    want = expected_arrays(meta)
    missing, extra = set(want) - set(arrays), set(arrays) - set(want)
    if missing or extra:
        raise FormatError(f"{name}: packed arrays missing {sorted(missing)} / unexpected {sorted(extra)}")
    for key, (shape, dtype) in want.items():
        a = arrays[key]
        if a.shape != shape or a.dtype != dtype:
            raise FormatError(f"{name}.{key}: expected {dtype} {shape}, found {a.dtype} {a.shape}")
        if a.dtype == np.float16 and not np.isfinite(a).all():  # scales: a NaN / Inf one is a damaged layer
            raise FormatError(f"{name}.{key}: a scale is not finite")
