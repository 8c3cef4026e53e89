"""The compression methods of the binary path: one record each.

A method is everything the rest of the code asks about it: whether it prunes (N:M), the structure defaults that
`CompressConfig.resolved` fills in, whether it uses the Hessian (GPTQ compensation) and ARB-RC's column scales,
whether CFS chooses a per-block N, and its block fit (the math, in `algo/block_fits.py`, named here so this table
stays torch-free for the command line). Adding a method is one row here plus its block fit. The order is the
order of the quality table.
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
    fit: str  # the block fit: a function of algo/block_fits.py, Block -> BlockFit
    summary: str  # one line, for --help and the docs


_ROWS = (
    Method("rtn", prunes=False, salient=False, split_groups=1, use_mean=False, uses_hessian=False,
           col_scale=False, uses_cfs=False, fit="rtn",
           summary="per-row sign binarization, alpha = mean|w|, no Hessian"),
    Method("magnitude", prunes=True, salient=False, split_groups=1, use_mean=False, uses_hessian=False,
           col_scale=False, uses_cfs=False, fit="magnitude",
           summary="magnitude N:M prune, then per-row sign binarization, no Hessian"),
    Method("billm", prunes=False, salient=True, split_groups=2, use_mean=True, uses_hessian=True,
           col_scale=False, uses_cfs=False, fit="billm",
           summary="BiLLM: salient columns (2nd-order residual) + 2 split groups, GPTQ loop"),
    Method("arb", prunes=False, salient=True, split_groups=2, use_mean=True, uses_hessian=True,
           col_scale=False, uses_cfs=False, fit="arb",
           summary="ARB-LLM_X: BiLLM structure, alternating refinement in the H-weighted norm"),
    Method("arb-rc", prunes=False, salient=True, split_groups=2, use_mean=False, uses_hessian=True,
           col_scale=True, uses_cfs=False, fit="arb_rc",
           summary="ARB-LLM_RC: row x column scales, no mean, salient + split groups"),
    Method("stbllm", prunes=True, salient=True, split_groups=3, use_mean=True, uses_hessian=True,
           col_scale=False, uses_cfs=False, fit="stbllm",
           summary="STBLLM: N:M by |W|*||x_j||, salient + 3 split groups, pruned stay zero"),
    # [choice] PBS2P builds on ARB-LLM: salient columns + 2 split groups. Without them block 0 of SmolLM2 alone
    # takes PPL 20.8 -> 122 (vs 23.5 with them); measured in bench/quality.py.
    Method("pbs2p", prunes=True, salient=True, split_groups=2, use_mean=True, uses_hessian=True,
           col_scale=False, uses_cfs=True, fit="pbs2p",
           summary="PBS2P: CFS (layer N + OBS score) and SPBO progressive prune + ARB refit"),
)

METHODS: dict[str, Method] = {m.name: m for m in _ROWS}
