"""Perplexity of a causal LM over non-overlapping windows of a token stream."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..calib.windows import eval_windows
from .arch import check_seqlen


@dataclass(frozen=True)
class PplResult:
    """ppl = exp(nll); nll: mean negative log-likelihood in nats per predicted token;
    windows: windows evaluated; tokens: predicted tokens = windows * (seqlen - 1)."""

    ppl: float
    windows: int
    tokens: int
    nll: float


@torch.no_grad()
def perplexity(
    model: nn.Module,
    ids: torch.Tensor,
    seqlen: int,
    max_windows: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> PplResult:
    """PPL of `model` on ids (1-D) cut into non-overlapping windows of `seqlen` (tail dropped).

    Each window is a separate batch-1 forward with no context from earlier windows; it predicts its
    tokens 1..seqlen-1 from the ones before (token 0 is never predicted). PPL = exp(mean NLL over
    all predicted tokens of all windows), the logits' log-softmax taken in float32 and the sum
    accumulated in float64. The model is moved to `device` and put in eval mode.
    """
    check_seqlen(model, seqlen)
    windows = eval_windows(ids, seqlen, max_windows)
    model.eval()
    model.to(device)
    total = 0.0
    for row in tqdm(windows, desc="perplexity", unit="window", disable=not progress):
        x = row[None].to(device)
        logits = model(input_ids=x, use_cache=False).logits[0, :-1].float()  # (seqlen-1, vocab)
        total += F.cross_entropy(logits, x[0, 1:], reduction="sum").double().item()
    tokens = windows.shape[0] * (seqlen - 1)
    nll = total / tokens
    ppl = math.exp(nll) if nll < 709.0 else math.inf  # exp overflows a double past ~709.78: the caller sees inf
    return PplResult(ppl=ppl, windows=windows.shape[0], tokens=tokens, nll=nll)
