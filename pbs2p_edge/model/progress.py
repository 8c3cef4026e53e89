"""A compression's finished blocks on disk, so that a killed run resumes at the first unfinished one (--resume).

The directory `.<checkpoint name>.progress` beside the checkpoint holds:
  run.json           what the run is (source, text, windows, config, blocks, budget): a resumed run must be
                     the same run, or it is refused
  plan.json          the bit budget's plan, when there is one (measured once)
  start.pt           the CFS importances and N per block, computed once before block 0
  block-<i>.pt       block i's results (each linear's LayerResult / GridResult / FloatResult, or its packed form
                     checkpoint.save.StoredResult as plain tensors), tiers, N and
                     recovery entry, and the block's parameters other than its linears' weights (norms and biases,
                     which recovery changes); the linear weights are the results' dequantized values
  act-<i>.pt         the activations after block i (and the full-precision ones recovery targets); only the
                     latest is kept
Every file is written to a temp and renamed in, so a file that exists is complete; block i is finished when both
block-<i>.pt and act-<i>.pt exist. Resuming loads the finished blocks' results and parameters into the model and
the latest activations, and goes on from there: the same operations on the same values as an uninterrupted run,
so the same checkpoint bytes (at a fixed thread count: torch's sums may depend on it). A run's finished blocks keep
their packed results here, not in memory: the checkpoint's writer reads them back one array at a time (kept()). The
directory is removed once the checkpoint is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..files import durable
from ..algo.gptq_grid import FloatResult, GridResult
from ..algo.result import LayerResult
from ..errors import ConfigError, FormatError
from ..pack.safetensors_stream import RowPieces
from ..pack.tiers import Tier
from ..files.write_failure import write_failure

_SAFE = [LayerResult, GridResult, FloatResult, Tier]  # the classes torch.load may rebuild from these files


def _packed(r) -> bool:
    """Whether a saved result is a StoredResult's to_tensors (else the result object itself was saved)."""
    return isinstance(r, dict) and "stored_result" in r


def progress_dir(out_dir) -> Path:
    out = Path(out_dir)
    return out.parent / f".{out.name}.progress"


class Progress:
    """The progress directory of one run; open() starts it over unless `resume` finds the same run there."""

    def __init__(self, path: Path, run: dict):
        self.path, self.run = path, run

    @classmethod
    def open(cls, path: Path, run: dict, resume: bool) -> Progress:
        """run: a JSON-able description of everything the compression's bytes depend on."""
        if resume and (path / "run.json").is_file():  # without it, a killed run never got to its first block
            try:
                found = json.loads((path / "run.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                found = None
            if found != run:
                diff = sorted(k for k in set(run) | set(found or {}) if (found or {}).get(k) != run.get(k))
                raise ConfigError(f"{path} holds another run (it differs in: {', '.join(diff) or 'everything'}); "
                                  "give the same options to resume it, or omit --resume to start over")
            return cls(path, run)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir()
        p = cls(path, run)
        p._write_text("run.json", json.dumps(run, sort_keys=True, indent=1))
        return p

    # -- writing -----------------------------------------------------------------------------------

    def _write_text(self, name: str, text: str) -> None:
        self._publish(name, lambda f: f.write(text.encode()))

    def _save(self, name: str, obj) -> None:
        self._publish(name, lambda f: torch.save(obj, f))

    def _publish(self, name: str, write) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path / name)
        except BaseException as e:
            Path(tmp).unlink(missing_ok=True)
            failure = write_failure(self.path / name, e, "the finished blocks are kept for --resume")
            if failure is not None:
                raise failure from None
            raise
        durable.fsync_path(self.path)

    def save_plan(self, plan: dict) -> None:
        """The bit budget's plan (model.budget.Plan's fields), measured once: a resumed run reuses it."""
        self._write_text("plan.json", json.dumps(plan, sort_keys=True))

    def plan(self) -> dict | None:
        p = self.path / "plan.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FormatError(f"{p}: unreadable ({exc}); omit --resume to start over") from exc

    def save_start(self, importance: list[float], block_n: list[int]) -> None:
        self._save("start.pt", {"importance": importance, "block_n": block_n})

    def save_block(self, i: int, block: dict, x: torch.Tensor, x_fp: torch.Tensor | None) -> None:
        """block: {"results", "tiers", "layer_n", "recovery", "params"} of block i; x, x_fp: the activations after it."""
        results = {k: r.to_tensors() if hasattr(r, "to_tensors") else r for k, r in block["results"].items()}
        self._save(f"block-{i}.pt", {**block, "results": results})
        self._save(f"act-{i}.pt", {"x": x.cpu(), "x_fp": None if x_fp is None else x_fp.cpu()})
        (self.path / f"act-{i - 1}.pt").unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # -- reading -----------------------------------------------------------------------------------

    def _load(self, name: str, mmap: bool = False):
        try:
            with torch.serialization.safe_globals(_SAFE):
                return torch.load(self.path / name, map_location="cpu", weights_only=True, mmap=mmap)
        except (OSError, RuntimeError, ValueError, EOFError) as exc:
            raise FormatError(f"{self.path / name}: unreadable ({exc}); omit --resume to start over") from exc

    def start(self) -> dict | None:
        return self._load("start.pt") if (self.path / "start.pt").is_file() else None

    def finished(self) -> int:
        """How many leading blocks are finished (both files of each, the activations of the last)."""
        k = 0
        while (self.path / f"block-{k}.pt").is_file():
            k += 1
        while k and not (self.path / f"act-{k - 1}.pt").is_file():
            k -= 1
        return k

    def block(self, i: int) -> dict:
        from ..checkpoint.save import StoredResult

        b = self._load(f"block-{i}.pt")
        return {**b, "results": {k: StoredResult.from_tensors(r) if _packed(r) else r for k, r in b["results"].items()}}

    def kept(self, i: int) -> dict:
        """Block i's results, each a StoredResult whose arrays are RowPieces read from block-<i>.pt when the
        checkpoint is written: a finished block's results leave memory (the paper structure's 3.5 bits per weight
        are 2.8 GB for a 7B model) and the writer holds one array at a time. A result not saved in its stored form
        (compress_model without `compact`) is returned as it was saved."""
        from ..checkpoint.save import StoredResult

        name = f"block-{i}.pt"
        results = self._load(name, mmap=True)["results"]  # mapped: the arrays are not read here
        return {full: StoredResult.from_tensors(r, lambda key, t, full=full: self._array_pieces(name, full, key, t))
                if _packed(r) else r for full, r in results.items()}

    def _array_pieces(self, name: str, full: str, key: str, t: torch.Tensor) -> RowPieces:
        """Array `key` of result `full` in file `name` (t: its mapped tensor, for the shape and dtype) as one piece,
        mapped from the file again when it is written (and unmapped once written)."""
        def pieces():
            b = self._load(name, mmap=True)["results"][full]["stored_result"]
            yield (b["arrays"] if "meta" in b else b)[key].numpy()

        return RowPieces(tuple(t.shape), t.numpy().dtype, pieces)

    def activations(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        a = self._load(f"act-{i}.pt")
        return a["x"], a["x_fp"]
