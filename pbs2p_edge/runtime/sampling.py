"""SamplerParams: how libpbs2p's sampler picks the next token (greedy, or top-k / temperature / top-p with a seed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

SEED_MAX = (1 << 64) - 1  # the C generator's seed is a uint64
INT32_MAX = (1 << 31) - 1


@dataclass(frozen=True)
class SamplerParams:
    """temperature <= 0: greedy (arg-max, lowest id among ties, no random numbers). Otherwise, in this order:
    keep the top_k largest logits (0: all), divide by temperature, softmax, keep the smallest most probable set
    whose probability reaches top_p (1: all), draw with splitmix64 seeded by `seed` (same on every machine)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature):
            raise ConfigError(f"temperature must be a finite number, got {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or not 0 <= self.top_k <= INT32_MAX:
            raise ConfigError(f"top_k must be a whole number in 0..{INT32_MAX} (0: off), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1] (1: off), got {self.top_p!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise ConfigError(f"seed must be a whole number in 0..2^64-1, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def as_c_fields(self) -> dict:
        """The fields of a pbs2p_sampler_params struct (cffi initializer)."""
        return {"temperature": float(self.temperature), "top_k": int(self.top_k), "top_p": float(self.top_p),
                "seed": int(self.seed)}
