"""A bit budget's sensitivity (model/budget.py's measure) for a streamed model: one decoder block in memory at a time.

budget.measure takes the empirical Fisher, F = sum over windows of the squared gradient of the window's mean token
loss, by running the whole model forward and backward: a 7B model's float32 weights, gradients and F are 80 GB. Here
the same F comes from a backward pass taken block by block, as activation checkpointing does:

1. forward, block by block: each block's inputs on the windows go to a scratch directory (the diag H of every
   linear's input is summed on the way, as measure's hooks do);
2. the output head, a piece of its rows at a time (the 128k-row head of Llama 3 whole is 2 GB at float32): the
   log-sum-exp of every position's logits, then the loss's gradient at the final hidden states;
3. backward, last block first: each block is read again, re-run on its saved inputs with autograd, and the gradient
   at its output pulled back to its input; a linear's weight gradient on window j is g_j^T x_j (g: the gradient at its
   output, x: its input), squared and summed into its F there, so no weight takes a gradient of its own. Its options
   (every tier's bits and estimated loss, budget.linear_option) are made as soon as its block is done, and its F freed;
4. the embedding and the head: the gradient at block 0's input, pulled back through the embedding's lookup of the rows
   the windows use, and the head's gradient per window, a piece of rows at a time (a tied head adds both per window
   before squaring, as autograd does on the shared weight).

The options are measure's up to float rounding (the same operations in another grouping: a logit's row of the head
in pieces); every memory holds one block (its linears as the source stores them, each widened to float32 only while
it runs or its options are made: model/held.py), its F, the windows' activations at one block and a piece of the head.
[choice] For the decoder families whose block 0 input is the embedding's lookup (plus OPT's learned positions, which
take no gradient); an OPT with project_in plans on the whole model.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..algo.allocate import Option
from ..pack import tiers
from ..pack.architectures import EMBEDDING as EMBEDDING_NAME
from .arch import (ArchSpec, arch_for, block_linears, decoder_blocks, head_parameter_name, named_embed_modules,
                   named_tail_modules, run_block)
from .budget import (EMBED_TIERS, EMBEDDING, FISHER_WINDOWS, LINEAR_TIERS, Sensitivity, embedding_loss, linear_option,
                     model_parameters, planned_tensors, unplanned_bits)
from .capture import capture_inputs, lent_rows
from .heap import release_free_heap
from .held import hold_as_stored, widened, widened_with_grad
from .stream import StreamedWeights


def streams(model: nn.Module) -> bool:
    """Whether measure_streamed can plan this model (the module docstring's [choice])."""
    spec = arch_for(model)
    return not any(path.endswith("project_in") for path, _ in named_embed_modules(model, spec))


@torch.no_grad()
def measure_streamed(model: nn.Module, tokenizer, windows: torch.Tensor, weights: StreamedWeights,
                     linear_tiers=LINEAR_TIERS, embed_tiers=EMBED_TIERS, scratch: str | Path | None = None,
                     progress: bool = False) -> Sensitivity:
    """budget.measure's Sensitivity of a model on the meta device whose weights are read from `weights`, one block
    at a time. scratch: where the blocks' inputs are kept meanwhile (a temporary directory is made in it; None: the
    system's); FISHER_WINDOWS x seqlen x hidden float32 per block. progress: a bar over the blocks' two passes."""
    spec = arch_for(model)
    linears, embeds, embed_tiers = planned_tensors(model, linear_tiers, embed_tiers)
    ids = windows[:FISHER_WINDOWS]
    inputs = capture_inputs(model, ids, spec, "cpu", weights)
    blocks = decoder_blocks(model, spec)
    options: dict[str, list[Option]] = {}
    bar = tqdm(total=2 * len(blocks), desc="plan (forward, then backward)", unit="block", disable=not progress)
    with tempfile.TemporaryDirectory(prefix="budget-", dir=scratch) as tmp:
        saved = [Path(tmp) / f"x-{i}.pt" for i in range(len(blocks))]
        x, hdiag = inputs.hidden, {}
        for i, block in enumerate(blocks):
            torch.save(x, saved[i])
            with _block(block, spec, f"{spec.blocks}.{i}", weights) as (lins, held), widened(lins, held), \
                    _input_squares(lins, hdiag):
                x = torch.cat([run_block(block, x[j: j + 1], inputs.block_kwargs[i]) for j in range(len(x))])
            bar.update()
        with _tail(model, spec, weights) as tail:
            head = _Head(model, weights, tail, x, ids)
            g = head.hidden_gradient()
        for i in reversed(range(len(blocks))):
            with _block(blocks[i], spec, f"{spec.blocks}.{i}", weights) as (lins, held):
                F = {name: torch.zeros(lin.out_features, lin.in_features) for name, lin in lins.items()}
                with widened_with_grad(lins, held, F):
                    g = _pull_back(blocks[i], torch.load(saved[i], mmap=True), g, inputs.block_kwargs[i])
                for full in lins:
                    W = held.pop(full).float()
                    options[full] = [linear_option(t, W, F[full], hdiag[full]) for t in linear_tiers]
                    del F[full], W
            bar.update()
    bar.close()
    lookup = _lookup_gradients(model, spec, weights, ids, g)
    options[EMBEDDING] = head.embedding_options(embed_tiers, embeds, lookup)
    assert set(options) == set(linears) | {EMBEDDING}
    return Sensitivity(options, unplanned_bits(model, tokenizer, linears, embeds), model_parameters(model))


@contextlib.contextmanager
def _block(block: nn.Module, spec: ArchSpec, prefix: str,
           weights: StreamedWeights) -> Iterator[tuple[dict[str, nn.Linear], dict[str, torch.Tensor]]]:
    """Block `prefix` read while inside: (its linears, their weights as the source stores them), both by full name,
    the linears' own weights released (model/held.py widens them while they run); all released after."""
    weights.load(block, prefix, "cpu")
    lins = block_linears(block, spec)
    held = {f"{prefix}.{name}": w for name, w in hold_as_stored(lins, weights, prefix).items()}
    try:
        yield {f"{prefix}.{name}": lin for name, lin in lins.items()}, held
    finally:
        held.clear()
        StreamedWeights.release(block)
        release_free_heap()


@contextlib.contextmanager
def _hooked(lins: dict[str, nn.Linear], fn):
    """While inside, every call of a linear runs fn(its full name, its input, its output) after it (fn returns None: a
    forward hook that returns a value replaces the output)."""
    handles = [lin.register_forward_hook(lambda m, inp, out, name=name: fn(name, inp[0], out))
               for name, lin in lins.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _input_squares(lins: dict[str, nn.Linear], hdiag: dict[str, torch.Tensor]):
    """While inside, every call of a linear adds the squares of its input, summed over tokens, to hdiag[its full
    name] (budget.measure's diag H)."""
    def add(name: str, x: torch.Tensor, _out) -> None:
        sq = x.detach().float().reshape(-1, x.shape[-1]).square().sum(0)
        hdiag[name] = hdiag[name].add_(sq) if name in hdiag else sq

    return _hooked(lins, add)


def _pull_back(block: nn.Module, x: torch.Tensor, g: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The gradient at the block's input on every window j, given g[j] at its output: the block re-run on x[j] with
    autograd (its weights take none; its linears run as held.widened_with_grad's)."""
    out = torch.empty_like(g)
    for j in range(len(x)):
        with torch.enable_grad():
            xj = x[j: j + 1].clone().requires_grad_(True)
            (out[j: j + 1],) = torch.autograd.grad(run_block(block, xj, kwargs), xj, g[j: j + 1])
    return out


@contextlib.contextmanager
def _tail(model: nn.Module, spec: ArchSpec, weights: StreamedWeights) -> Iterator[list[nn.Module]]:
    """The modules between the last block and the head (the final norm), read while inside, released after."""
    found = named_tail_modules(model, spec)
    for path, m in found:
        weights.load(m, path, "cpu")
    try:
        yield [m for _, m in found]
    finally:
        for _, m in found:
            StreamedWeights.release(m)


def _lookup_gradients(model: nn.Module, spec: ArchSpec, weights: StreamedWeights, ids: torch.Tensor,
                      g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """(used, rows, grads): the sorted ids the windows use, their embedding rows (float32), and per window j the
    gradient of its loss at the rows it uses through the embedding's lookup, as (their indices in `used`, the
    gradient there) (g[j]: the gradient at block 0's input; the embedding module itself runs, so Gemma's scaling of
    the rows is in it)."""
    used = torch.unique(ids)
    rows = weights.read_rows(EMBEDDING_NAME[spec.family], used)
    grads = []
    with torch.enable_grad(), lent_rows(model, used, rows.clone().requires_grad_(True)) as lent:
        table = model.get_input_embeddings()
        for j in range(len(ids)):
            (gj,) = torch.autograd.grad(table(torch.searchsorted(used, ids[j: j + 1])), lent, g[j: j + 1])
            at = torch.searchsorted(used, torch.unique(ids[j]))
            grads.append((at, gj[at]))
    return used, rows, grads


# [choice] logits held at once: 64 MiB at float32 (the 8 windows' 4096 positions over 4096 rows of the head; all
# 49,152 of SmolLM2's would be 0.8 GB, and each piece has an exp and a gradient beside it)
LOGITS = 1 << 24


class _Head:
    """The output head over the final hidden states of the windows, read a piece of rows at a time."""

    def __init__(self, model: nn.Module, weights: StreamedWeights, tail: list[nn.Module], x: torch.Tensor,
                 ids: torch.Tensor):
        self.weights, self.n, self.S = weights, ids.shape[0], ids.shape[1]
        self.name = head_parameter_name(model)
        self.x = x.requires_grad_(True)
        with torch.enable_grad():
            h = x
            for m in tail:
                h = m(h)
        self.h = h  # the head's input, with its graph back to x
        self.hn = h.detach().reshape(self.n * self.S, -1)
        # each position's next token (the last has none: HF's causal-LM loss is the mean over the other S - 1)
        self.target = torch.cat([ids[:, 1:], torch.full((self.n, 1), -1, dtype=ids.dtype)], 1).reshape(-1)
        lse = torch.full((self.n * self.S,), -torch.inf)
        for _, W in self._pieces():
            lse = torch.logaddexp(lse, torch.logsumexp(self.hn @ W.t(), 1))
        self.lse = lse

    def _pieces(self) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, rows) of the head, float32, as many rows at a time as keep the windows' logits over them to
        LOGITS elements (read from the source about stream.READ_CHUNK elements at a time)."""
        step = max(1, LOGITS // len(self.hn))
        r0 = 0
        for piece in self.weights.row_pieces(self.name).pieces():
            W = torch.from_numpy(piece)
            for a in range(0, W.shape[0], step):
                yield r0 + a, W[a: a + step]
            r0 += W.shape[0]

    def _dlogits(self, r0: int, W: torch.Tensor) -> torch.Tensor:
        """The gradient of every window's mean token loss at the logits of rows [r0, r0 + len(W)): (n * S, rows)."""
        d = torch.exp(self.hn @ W.t() - self.lse[:, None])
        mine = (self.target >= r0) & (self.target < r0 + W.shape[0])
        d[mine.nonzero()[:, 0], self.target[mine] - r0] -= 1
        d[self.target < 0] = 0
        return d.div_(self.S - 1)

    def hidden_gradient(self) -> torch.Tensor:
        """The gradient of each window's loss at the last block's output, (n, S, D)."""
        g = torch.zeros_like(self.hn)
        for r0, W in self._pieces():
            g.addmm_(self._dlogits(r0, W), W)
        (gx,) = torch.autograd.grad(self.h, self.x, g.reshape(self.h.shape))
        return gx

    def embedding_options(self, embed_tiers, embeds: list[nn.Parameter],
                          lookup: tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]) -> list[Option]:
        """The embedding / head's options (budget.measure's): per tier, its bits and 0.5 sum F (W - Q(W))^2 over the
        embedding's and the head's rows (one tensor when tied: each window's head and lookup gradients added)."""
        used, rows, grads = lookup
        loss = dict.fromkeys(embed_tiers, 0.0)
        tied = len(embeds) == 1
        if not tied:  # the embedding's F: only the rows the windows use have one
            f = torch.zeros_like(rows)
            for at, gj in grads:
                f[at] += gj.square()
            for t in embed_tiers:
                loss[t] += embedding_loss(t, rows, f)
        for r0, W in self._pieces():
            f = torch.zeros_like(W)
            d = self._dlogits(r0, W)
            for j, (at, gl) in enumerate(grads):
                gj = d[j * self.S: (j + 1) * self.S].t() @ self.hn[j * self.S: (j + 1) * self.S]
                if tied:  # the rows of this piece that window j looks up
                    here = (used[at] >= r0) & (used[at] < r0 + W.shape[0])
                    gj[used[at][here] - r0] += gl[here]
                f.add_(gj.square_())
            for t in embed_tiers:
                loss[t] += embedding_loss(t, W, f)
        n = sum(p.numel() for p in embeds)
        return [Option(t, int(n * tiers.tier(t).bits_for(embeds[0].shape[1])), loss[t]) for t in embed_tiers]
