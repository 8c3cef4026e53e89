"""Load the text named by a corpus spec: `austen:<novel>`, `debian-reference`, a local UTF-8 file, or wikitext2 / c4 /
ptb via `datasets`."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError
from . import debian_reference
from ..files.text_file import read_text_file
from .austen import NOVELS, austen_text

HUB_CORPORA = ("wikitext2", "c4", "ptb")
SPLITS = ("train", "test")
C4_TRAIN_DOCS = 20000  # first documents of the C4 train shard; ~10M tokens, plenty for 128 x 2048 windows
C4_TEST_DOCS = 1100  # GPTQ's C4 evaluation slice: the first 1100 validation documents


def corpus_choices() -> str:
    return ", ".join([f"austen:{n}" for n in NOVELS] + [debian_reference.NAME] + list(HUB_CORPORA) + ["<path to a UTF-8 text file>"])


def _load_dataset(*args, **kwargs):
    try:
        import datasets
    except ImportError:
        raise DataError("hub corpora (wikitext2, c4, ptb) need the `datasets` package: pip install datasets") from None
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # datasets raises many unrelated types for "offline" / "not found"
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot load dataset {args[0]!r} from the Hugging Face hub (offline?): {line}") from exc


def _hub_text(name: str, split: str) -> str:
    """The papers' conventions (GPTQ's datautils): WikiText2 joined with "\\n\\n"; PTB sentences with " "."""
    if name == "wikitext2":
        data = _load_dataset("wikitext", "wikitext-2-raw-v1", split=split)
        return "\n\n".join(data["text"])
    if name == "ptb":
        data = _load_dataset("ptb_text_only", "penn_treebank", split=split)
        return " ".join(data["sentence"])
    # c4: one train shard for calibration; the first validation shard for evaluation.
    if split == "train":
        data = _load_dataset("allenai/c4", data_files={"train": "en/c4-train.00000-of-01024.json.gz"}, split="train")
        return "\n\n".join(data["text"][:C4_TRAIN_DOCS])
    data = _load_dataset("allenai/c4", data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"}, split="validation")
    return " ".join(data["text"][:C4_TEST_DOCS])


def load_text(spec: str, split: str = "train") -> str:
    """The whole text of corpus `spec`; `split` is 'train' (calibration) or 'test' (evaluation).

    austen:<novel> has no splits: the whole novel is returned for both, so calibrate on one novel
    and evaluate on another. debian-reference (the manual's body) and a local file are returned as is for both.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if spec.startswith("austen:"):
        return austen_text(spec.split(":", 1)[1])
    if spec == debian_reference.NAME:
        return debian_reference.debian_reference_text()
    if spec in HUB_CORPORA:
        return _hub_text(spec, split)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_file():
            raise DataError(f"{spec} is not a file")
        return read_text_file(path)
    raise DataError(f"unknown corpus {spec!r}; choose one of {corpus_choices()}")
