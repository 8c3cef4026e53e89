"""CompressConfig: the one frozen, versioned description of how a model is compressed.

Every choice the PBS2P paper leaves open is a field here, with its default and the reason for it
in the field comment. The config is passed in, never read from a global.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError
from .methods import METHODS

CONFIG_VERSION = 1

# Named structure presets: explicit CompressConfig fields, so a checkpoint records what was used.
PRESETS = {
    # the papers' structure: salient columns + split groups, alpha/mu per 128-column block
    "paper": {},
    # edge storage: one region, one alpha/mu per row, GPTQ compensation column by column inside the
    # row; 1.42 honest bits/weight at 4:8..6:8 on SmolLM2 (paper: ~3.5), layer error ~4.5x higher
    "compact": {"salient": False, "split_groups": 1, "block_size": 0, "intra_block_update": True},
}


def parse_nm(text: str) -> tuple[int, int]:
    """'4:8' -> (4, 8), N kept out of every M. Raises ConfigError on anything else."""
    try:
        n_s, m_s = text.split(":")
        n, m = int(n_s), int(m_s)
    except (ValueError, AttributeError):
        raise ConfigError(f"N:M must look like 4:8 (N kept of every M), got {text!r}") from None
    check_nm(n, m)
    return n, m


def check_nm(n: int, m: int) -> None:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, m)):
        raise ConfigError(f"N:M must be whole numbers, got {n!r}:{m!r}")
    if m not in (2, 4, 8, 16):
        raise ConfigError(f"M must be one of 2, 4, 8, 16, got {m}")
    if not 1 <= n <= m:
        raise ConfigError(f"N must be in 1..M={m} (N is the number kept), got {n}:{m}")


@dataclass(frozen=True)
class CompressConfig:
    method: str = "pbs2p"
    n: int = 6  # kept per M-group (target mean for CFS); n == m means no pruning
    m: int = 8
    # GPTQ column block, also the scale group of alpha/mu (last block may be partial); 0 = the whole
    # row is one block, so each row has one alpha/mu per region (the compact preset: ~0.05 bits/weight
    # of scales instead of ~0.27 at K = 576; pair it with intra_block_update for GPTQ compensation).
    block_size: int = 128
    percdamp: float = 0.01  # H += percdamp * mean(diag H) * I
    # --- binarizer structure (BiLLM / ARB family) ---
    salient: bool | None = None  # salient columns with 2nd-order residual; None = method default
    max_salient: int = 49  # search k in 1..max_salient (per block), by reconstruction error
    split_groups: int | None = None  # non-salient magnitude groups (1, 2 or 3); None = method default
    use_mean: bool | None = None  # mu term; None = method default (False for rtn/magnitude/arb-rc)
    arb_iters: int = 15  # ARB alternations per region
    # --- PBS2P ---
    spbo_steps: int | None = None  # tau; None = M - N_l (one pruned element per M-group per step)
    spbo_iters: int = 3  # ARB alternations after each SPBO step
    cfs: bool = True  # per-layer N from block importance; False = the same N everywhere
    cfs_low: int = 1  # N_l in [n - cfs_low, n + cfs_high]
    cfs_high: int = 1
    # CFS importances from the first cfs_windows calibration windows (they are a seeded random sample);
    # None = all. The importance pass is one full-precision forward of every block; on SmolLM2 (32 x 512
    # of Emma) 8 windows give every block's importance within 0.1 % of all 32 and the same N_l except
    # one exchange between two blocks whose importances tie to 1e-4, at a quarter of the cost
    cfs_windows: int | None = 8
    intra_block_update: bool = False  # GPTQ-style update of later columns inside a block (baselines: no)
    # block-wise recovery (algo/recover.py) after each block is quantized: Adam steps per block (0 = off),
    # the learning rate of the relative offsets, windows per step; with recover_codes the codes and signs are
    # trained too, at recover_code_lr (code units per step)
    recover_steps: int = 0
    recover_lr: float = 1e-3
    recover_batch: int = 2
    # [choice] codes off by default: on SmolLM2 at budget 3 with 32 x 512 calibration tokens, training them lowers
    # every block's calibration error (block 2: 0.070 -> 0.049) but raises held-out perplexity (Pride and Prejudice,
    # 16 windows: 71.4 -> 108.8 without the binary tier, 83.5 -> 88.4 with it): 16 k tokens overfit a code per weight
    recover_codes: bool = False
    recover_code_lr: float = 0.05
    seed: int = 0
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        check_nm(self.n, self.m)
        if self.block_size < 0 or self.block_size % self.m:
            raise ConfigError(f"block_size must be 0 (whole row) or a positive multiple of M={self.m}, got {self.block_size}")
        if not 0 <= self.percdamp < 1:
            raise ConfigError(f"percdamp must be in [0, 1), got {self.percdamp}")
        if self.split_groups is not None and self.split_groups not in (1, 2, 3):
            raise ConfigError(f"split_groups must be 1, 2 or 3, got {self.split_groups}")
        if self.arb_iters < 0 or self.spbo_iters < 0 or self.max_salient < 1:
            raise ConfigError("arb_iters and spbo_iters must be >= 0 and max_salient >= 1")
        if self.spbo_steps is not None and self.spbo_steps < 1:
            raise ConfigError(f"spbo_steps must be >= 1, got {self.spbo_steps}")
        if self.cfs_low < 0 or self.cfs_high < 0:
            raise ConfigError("cfs_low and cfs_high must be >= 0")
        if self.cfs_windows is not None and self.cfs_windows < 1:
            raise ConfigError(f"cfs_windows must be >= 1 or None (all windows), got {self.cfs_windows}")
        if self.recover_steps < 0 or self.recover_batch < 1 or not self.recover_lr > 0 or not self.recover_code_lr > 0:
            raise ConfigError(f"recovery needs steps >= 0, batch >= 1 and lr > 0, got {self.recover_steps}, "
                              f"{self.recover_batch}, {self.recover_lr} (codes {self.recover_code_lr})")
        if self.version != CONFIG_VERSION:
            raise ConfigError(f"config version {self.version} is not supported (this build: {CONFIG_VERSION})")

    @property
    def prunes(self) -> bool:
        """True when this config removes weights (N < M for a pruning method)."""
        return METHODS[self.method].prunes and self.n < self.m

    def resolved(self) -> "CompressConfig":
        """The same config with every None default replaced by the method's value (algo/methods.py)."""
        method = METHODS[self.method]
        return dataclasses.replace(
            self,
            n=self.n if method.prunes else self.m,
            salient=method.salient if self.salient is None else self.salient,
            split_groups=method.split_groups if self.split_groups is None else self.split_groups,
            use_mean=method.use_mean if self.use_mean is None else self.use_mean,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CompressConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)


# [choice] Block-wise recovery by default (no --recover; recover=None on the budget path) below this budget, with
# RECOVER_STEPS Adam steps per block: there plain post-training quantization leaves the model unusable and recovery
# repairs much of it (bench/results/recovery.md, SmolLM2-135M: budget 3, PPL 252 -> 71 for 3.8x the compression
# time); at budget 5 it gains 0.7 % for 3.4x, so the default export (cli.DEFAULT_BPW) has none.
RECOVER_BELOW_BPW = 4.0
RECOVER_STEPS = 64


def default_recover_steps(bpw: float) -> int:
    """Recovery steps per block for the budget `bpw` when the user sets none."""
    return RECOVER_STEPS if bpw < RECOVER_BELOW_BPW else 0
