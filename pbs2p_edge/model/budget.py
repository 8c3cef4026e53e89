"""plan_budget: which tier each linear and the embedding / head take so that the file holds B bits per parameter.

Sensitivity is measured, not assumed: [choice] an end-loss proxy, the empirical Fisher. The full-precision model
runs forward and backward on calibration windows; F = sum over windows of the squared gradient of the window's
mean token loss. A tier's cost for a tensor is 0.5 * sum F * (W - Q(W))^2, with Q the tier's grid fitted to
nearest (the scale search of algo.gptq_grid, weighted by diag H as GPTQ's will be). GPTQ then compensates inside
each layer, which lowers every tier's error roughly alike, so the ranking holds. This weighs layers by what their
error does to the output (CFS's block importance in spirit), and it prices the embedding and the head in the same
units as the linears, which matters on small models where they are a fifth to a third of the file.

File bits are counted as the file will hold them: every allocated tensor at its tier's honest bits, plus what no
tier changes (norms and biases as F32, the tokenizer, the metadata, tensor alignment), estimated here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..algo.allocate import Option, allocate
from ..algo.compress_layer import compress_layer
from ..algo.config import PRESETS, CompressConfig
from ..algo.gptq_grid import fit_scales, fit_sub_codes, quantize, row_scales
from ..errors import ConfigError
from ..pack import tiers
from .arch import arch_for, block_linears, decoder_blocks

log = logging.getLogger(__name__)

# tiers the planner offers the decoder linears and the embedding / head
LINEAR_TIERS = ("q8_0", "q4_s16", "q3_s16", "q2_s16", tiers.BINARY)
EMBED_TIERS = tiers.EMBED_TIERS
# [choice] calibration windows the gradients are taken on: 8 (of 512 tokens) cost about a minute on SmolLM2 with one
# thread; not tuned
FISHER_WINDOWS = 8
# [choice] the binary tier the planner offers: PBS2P 4:8 in the compact structure (one alpha/mu per row, ~1.4 bits
# per weight), the only tier under 2.5 bits. Its error is estimated from a magnitude 4:8 mask and a per-row sign fit
# without compensation (seconds per layer; PBS2P itself takes ten times as long): an over-estimate, so the planner
# chooses it less often than its real error would justify.
BINARY_CONFIG = CompressConfig(method="pbs2p", n=4, m=8, cfs=False, **PRESETS["compact"])
_BINARY_PROXY = dataclasses.replace(BINARY_CONFIG, method="magnitude")
ALIGN_BYTES = 32  # mean padding per tensor of the 64-byte GGUF alignment


@dataclass(frozen=True)
class Plan:
    """A tier per compressed linear (full module name) and one for the embedding / head."""
    linears: dict[str, str]
    embed: str
    bpw: float  # the budget: file bits per model parameter
    estimated_bytes: int  # the file size the plan should give
    losses: dict[str, float] = field(default_factory=dict)  # estimated loss of each chosen tier (report)

    def to_dict(self) -> dict:
        return {"bpw": self.bpw, "embed": self.embed, "estimated_bytes": self.estimated_bytes,
                "linears": dict(self.linears)}


def model_parameters(model: nn.Module) -> int:
    """Parameters of the model, tied ones counted once: the 'P' of bits per parameter. A tied head is the embedding's
    own parameter object (which model.parameters() gives once), also on the meta device, where no storage tells them
    apart."""
    return sum(p.numel() for p in model.parameters())


def tokenizer_bytes(tokenizer) -> int:
    """Bytes the GGUF's tokenizer.* keys take: each token and merge as a length-prefixed string, a type per
    token (and a score for SentencePiece-style models, counted for all), the key names."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab = model.get("vocab", {})
    tokens = vocab.keys() if isinstance(vocab, dict) else [v[0] for v in vocab]
    merges = model.get("merges", []) or []
    n = sum(8 + len(t.encode()) for t in tokens) + 8 * len(tokens)
    n += sum(8 + len((m if isinstance(m, str) else " ".join(m)).encode()) for m in merges)
    return n + 4096


def embedding_weights(model: nn.Module) -> list[nn.Parameter]:
    """The input embedding and, when not tied to it, the output head."""
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings()
    return [emb] if head is None or head.weight is emb else [emb, head.weight]


@torch.enable_grad()
def fisher(model: nn.Module, windows: torch.Tensor, targets: list[nn.Parameter]) -> list[torch.Tensor]:
    """F per target over the windows (nsamples, seqlen): the sum of squared gradients of each window's mean
    token loss. Only the targets take gradients; requires_grad is restored after."""
    was = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in targets:
        p.requires_grad_(True)
    F = [torch.zeros_like(p, dtype=torch.float32) for p in targets]
    try:
        for j in range(windows.shape[0]):
            ids = windows[j: j + 1]
            loss = model(input_ids=ids, labels=ids).loss
            grads = torch.autograd.grad(loss, targets)
            for f, g in zip(F, grads):
                f.add_(g.float().square())
    finally:
        for p, w in zip(model.parameters(), was):
            p.requires_grad_(w)
    return F


def grid_error(W: torch.Tensor, h: torch.Tensor, t: tiers.Tier) -> torch.Tensor:
    """(W - Q(W))^2 for tier t fitted to nearest per block with column weights h (K,); (R, K)."""
    R, K = W.shape
    b = t.scale_block
    Wb = W.reshape(R * K // b, b)
    hb = h.reshape(1, K // b, b).expand(R, -1, -1).reshape(R * K // b, b)
    if t.sub:  # the row's D and M, then each sub-block's codes
        D, M = (s.repeat_interleave(K // b, dim=0) for s in row_scales(W, t))
        sc, mc = fit_sub_codes(Wb, hb, t, D, M)
        d, m = D * sc, -(M * mc)
    else:
        d, m = fit_scales(Wb, hb, t)
    _, v = quantize(Wb, d, m, t)
    return (Wb - v).square().reshape(R, K)


@dataclass(frozen=True)
class Sensitivity:
    """Every allocatable tensor's options (tier, bits, estimated loss) and what no tier changes, in file bits."""
    options: dict[str, list[Option]]  # linear full name -> options; EMBEDDING -> the embedding / head's
    unplanned_bits: int
    n_params: int

    def cheapest_bits(self) -> int:
        return self.unplanned_bits + sum(min(o.bits for o in opts) for opts in self.options.values())


EMBEDDING = "<embedding>"  # the options key of the token embedding / head


def planned_tensors(model: nn.Module, linear_tiers, embed_tiers):
    spec = arch_for(model)
    linears = {f"{spec.blocks}.{i}.{n}": lin for i, b in enumerate(decoder_blocks(model, spec))
               for n, lin in block_linears(b, spec).items()}
    for name, lin in linears.items():
        for t in linear_tiers:
            if t == tiers.BINARY:
                if lin.in_features % BINARY_CONFIG.m:
                    raise ConfigError(f"{name}: the binary tier needs a row width divisible by {BINARY_CONFIG.m}")
            else:
                tiers.tier(t).check_cols(name, lin.in_features)
    embeds = embedding_weights(model)
    width = embeds[0].shape[1]
    fitting = tuple(t for t in embed_tiers if width % tiers.tier(t).block == 0)
    if not fitting:  # the blocks of 64 leave out widths such as 96; f16 always fits
        tiers.tier(embed_tiers[0]).check_cols("the token embedding", width)
    return linears, embeds, fitting


def unplanned_bits(model: nn.Module, tokenizer, linears: dict, embeds: list) -> int:
    allocated = {id(lin.weight) for lin in linears.values()} | {id(p) for p in embeds}
    rest = sum(p.numel() * 32 for p in model.parameters() if id(p) not in allocated)  # norms, biases: F32
    n_tensors = len(list(model.state_dict())) + len(linears)
    return rest + 8 * (tokenizer_bytes(tokenizer) + ALIGN_BYTES * n_tensors + 160 * len(linears))


def _bits_per_weight(t: str, cols: int) -> float:
    """Honest bits per weight of tier t at row width `cols`; the binary tier's from docs/FORMAT.md §8 (compact:
    mask + signs 11/8 at 4:8, one float16 alpha and mu per row)."""
    return 11 / 8 + 32 / cols if t == tiers.BINARY else tiers.tier(t).bits_for(cols)


# [choice] rows a tier's error is taken over at once: every tier's fit (and the binary proxy's) is row by row, so the
# pieces give the whole's errors bit for bit, and the temporaries of a 7B MLP linear whole (the binary proxy's are ten
# copies of the weight) were 2 GB
OPTION_ROWS = 1024


def linear_option(t: str, W: torch.Tensor, f: torch.Tensor, h: torch.Tensor) -> Option:
    """Tier t's option for a linear: its bits and 0.5 sum F (W - Q(W))^2, with diag H h (K,) and Fisher f (R, K)."""
    H = torch.diag(h) if t == tiers.BINARY else None
    loss = 0.0
    for r in range(0, W.shape[0], OPTION_ROWS):
        Wr = W[r: r + OPTION_ROWS]
        if t == tiers.BINARY:
            err = (Wr - compress_layer(Wr, H, _BINARY_PROXY, _BINARY_PROXY.n).dequantize()).square_()
        else:
            err = grid_error(Wr, h, tiers.tier(t))
        loss += float(err.mul_(f[r: r + OPTION_ROWS]).sum())
    return Option(t, int(W.numel() * _bits_per_weight(t, W.shape[1])), 0.5 * loss)


def embedding_loss(t: str, W: torch.Tensor, f: torch.Tensor) -> float:
    """The estimated loss of embedding tier t on rows W (any whole rows of the embedding or head) with Fisher f."""
    Q = torch.from_numpy(tiers.round_trip(t, W.numpy()))
    return 0.5 * float((f * (W - Q).square()).sum())


def check_budget(model: nn.Module, tokenizer, bpw: float, linear_tiers=LINEAR_TIERS, embed_tiers=EMBED_TIERS) -> None:
    """ConfigError when `bpw` is no budget or is below the smallest file the tiers make; no gradient is taken."""
    if not bpw > 0:
        raise ConfigError(f"the bit budget must be > 0 bits per parameter, got {bpw}")
    linears, embeds, embed_tiers = planned_tensors(model, linear_tiers, embed_tiers)
    n_params = model_parameters(model)
    cheapest = unplanned_bits(model, tokenizer, linears, embeds)
    cheapest += sum(lin.weight.numel() * min(_bits_per_weight(t, lin.in_features) for t in linear_tiers)
                    for lin in linears.values())
    cheapest += sum(p.numel() for p in embeds) * min(tiers.tier(t).bits_for(embeds[0].shape[1]) for t in embed_tiers)
    if cheapest > bpw * n_params:
        raise ConfigError(f"{bpw:g} bits per parameter ({bpw * n_params / 8e6:.2f} MB) is below the smallest file "
                          f"these tiers make of this model ({cheapest / 8e6:.2f} MB, {cheapest / n_params:.2f} bits "
                          "per parameter)")


def measure(model: nn.Module, tokenizer, windows: torch.Tensor, linear_tiers=LINEAR_TIERS,
            embed_tiers=EMBED_TIERS) -> Sensitivity:
    """Each tensor's options: its bits and estimated loss in every tier (the module docstring's proxy)."""
    linears, embeds, embed_tiers = planned_tensors(model, linear_tiers, embed_tiers)
    # diag H of every linear's input, from the same forward passes as the gradients
    hdiag = {name: torch.zeros(lin.in_features) for name, lin in linears.items()}

    def add_input(name: str, x: torch.Tensor) -> None:  # a forward hook must return None, or it replaces the output
        hdiag[name].add_(x.detach().float().reshape(-1, x.shape[-1]).square().sum(0))

    hooks = [lin.register_forward_hook(lambda mod, inp, out, name=name: add_input(name, inp[0]))
             for name, lin in linears.items()]
    try:
        F = fisher(model, windows[:FISHER_WINDOWS], [lin.weight for lin in linears.values()] + embeds)
    finally:
        for h in hooks:
            h.remove()

    options: dict[str, list[Option]] = {}
    with torch.no_grad():
        for (name, lin), f in zip(linears.items(), F):
            W = lin.weight.detach().float()
            options[name] = [linear_option(t, W, f, hdiag[name]) for t in linear_tiers]
        n = sum(p.numel() for p in embeds)
        emb_F = F[len(linears):]
        options[EMBEDDING] = [Option(t, int(n * tiers.tier(t).bits_for(embeds[0].shape[1])),
                                     sum(embedding_loss(t, p.detach().float(), f) for p, f in zip(embeds, emb_F)))
                              for t in embed_tiers]
    return Sensitivity(options, unplanned_bits(model, tokenizer, linears, embeds), model_parameters(model))


def plan_for(sens: Sensitivity, bpw: float) -> Plan:
    """The plan that meets `bpw` file bits per parameter with the least estimated loss (algo.allocate)."""
    choice = allocate(sens.options, bpw * sens.n_params - sens.unplanned_bits)
    chosen = {name: next(o for o in sens.options[name] if o.tier == t) for name, t in choice.items()}
    est = (sens.unplanned_bits + sum(o.bits for o in chosen.values())) / 8
    log.info("budget %.3f bits/parameter: estimated %.2f MB", bpw, est / 1e6)
    return Plan(linears={n: t for n, t in choice.items() if n != EMBEDDING}, embed=choice[EMBEDDING], bpw=bpw,
                estimated_bytes=int(est), losses={n: o.loss for n, o in chosen.items()})


def plan_budget(model: nn.Module, tokenizer, windows: torch.Tensor, bpw: float,
                linear_tiers=LINEAR_TIERS, embed_tiers=EMBED_TIERS, weights=None, scratch=None,
                progress: bool = False) -> Plan:
    """The tier plan that meets `bpw` file bits per parameter with the least estimated loss.
    ConfigError, before any gradient is taken, when the budget is below what the cheapest tiers make.
    weights: a streamed model's shards (model/stream.py; the model on the meta device): measured one block at a time
    by model/budget_stream.py, its block inputs kept in `scratch` meanwhile, with a progress bar if `progress`; None:
    the model is in memory."""
    check_budget(model, tokenizer, bpw, linear_tiers, embed_tiers)
    if weights is None:
        return plan_for(measure(model, tokenizer, windows, linear_tiers, embed_tiers), bpw)
    from .budget_stream import measure_streamed

    return plan_for(measure_streamed(model, tokenizer, windows, weights, linear_tiers, embed_tiers, scratch,
                                     progress), bpw)
