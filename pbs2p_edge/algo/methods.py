"""The compression methods of the binary path: one record each.

A method is everything the rest of the code asks about it: whether it prunes (N:M), the structure defaults that
`CompressConfig.resolved` fills in, whether it uses the Hessian (GPTQ compensation) and ARB-RC's column scales,
whether CFS chooses a per-block N. Its block fit (the math) is the function of `algo/block_fits.py` named after it
(`Method.fit`), so this table stays torch-free for the command line. Adding a method is one row here plus its block
fit. The order is the order of the quality table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    prunes: bool  # removes weights N:M (False: every weight kept, layer N = M)
    salient: bool  # default: salient columns with a 2nd-order residual
    split_groups: int  # default: non-salient magnitude groups (1, 2 or 3)
    use_mean: bool  # default: the mu term
    uses_hessian: bool  # GPTQ compensation with the calibration Hessian (False: H unused, layer loss 0)
    col_scale: bool  # ARB-RC's row x column scales
    uses_cfs: bool  # CFS' coarse stage picks each block's N (when the config prunes and cfg.cfs is on)

    @property
    def fit(self) -> str:
        """The name of its block fit in algo/block_fits.py (Block -> BlockFit): the method's, "-" as "_"."""
        return self.name.replace("-", "_")


_ROWS = (
    # per-row sign binarization, alpha = mean|w|, no Hessian
    Method("rtn", prunes=False, salient=False, split_groups=1, use_mean=False, uses_hessian=False,
           col_scale=False, uses_cfs=False),
    # magnitude N:M prune, then per-row sign binarization, no Hessian
    Method("magnitude", prunes=True, salient=False, split_groups=1, use_mean=False, uses_hessian=False,
           col_scale=False, uses_cfs=False),
    # BiLLM: salient columns (2nd-order residual) + 2 split groups, GPTQ loop
    Method("billm", prunes=False, salient=True, split_groups=2, use_mean=True, uses_hessian=True,
           col_scale=False, uses_cfs=False),
    # ARB-LLM_X: BiLLM structure, alternating refinement in the H-weighted norm
    Method("arb", prunes=False, salient=True, split_groups=2, use_mean=True, uses_hessian=True,
           col_scale=False, uses_cfs=False),
    # ARB-LLM_RC: row x column scales, no mean, salient + split groups
    Method("arb-rc", prunes=False, salient=True, split_groups=2, use_mean=False, uses_hessian=True,
           col_scale=True, uses_cfs=False),
    # STBLLM: N:M by |W|*||x_j||, salient + 3 split groups, pruned stay zero
    Method("stbllm", prunes=True, salient=True, split_groups=3, use_mean=True, uses_hessian=True,
           col_scale=False, uses_cfs=False),
    # PBS2P: CFS (layer N + OBS score) and SPBO progressive prune + ARB refit.
    # [choice] PBS2P builds on ARB-LLM: salient columns + 2 split groups. Without them block 0 of SmolLM2 alone
    # takes PPL 20.8 -> 122 (vs 23.5 with them); measured in bench/quality.py.
    Method("pbs2p", prunes=True, salient=True, split_groups=2, use_mean=True, uses_hessian=True,
           col_scale=False, uses_cfs=True),
)

METHODS: dict[str, Method] = {m.name: m for m in _ROWS}
