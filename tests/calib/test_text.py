"""Tests of corpus specs: local files, austen:<novel>, hub corpora without `datasets`, unknown specs."""

import builtins

import pytest

from pbs2p_edge.calib import text as text_mod
from pbs2p_edge.calib.text import load_text
from pbs2p_edge.errors import ConfigError, DataError


def test_local_utf8_file(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("héllo\nworld", encoding="utf-8")
    assert load_text(str(f)) == "héllo\nworld" == load_text(str(f), split="test")


def test_bad_local_files(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_text(str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n")
    with pytest.raises(DataError, match="empty"):
        load_text(str(empty))
    with pytest.raises(DataError, match="not a file"):
        load_text(str(tmp_path))


def test_unknown_spec_lists_choices():
    with pytest.raises(DataError, match=r"unknown corpus 'wikitext3'; choose one of austen:emma.*wikitext2, c4, ptb"):
        load_text("wikitext3")
    with pytest.raises(ConfigError, match="split"):
        load_text("wikitext2", split="validation")


def test_austen_spec_goes_to_the_novel(monkeypatch):
    monkeypatch.setattr(text_mod, "austen_text", lambda novel: f"<{novel}>")
    assert load_text("austen:emma") == "<emma>"


def test_hub_corpus_without_datasets_is_one_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    for spec in ["wikitext2", "c4", "ptb"]:
        with pytest.raises(DataError, match="pip install datasets"):
            load_text(spec, split="test")


class _FakeDatasets:
    """Stands in for the `datasets` module: records each load_dataset call and returns column dicts."""

    def __init__(self, tables, fail=None):
        self.tables, self.fail, self.calls = tables, fail, []

    def load_dataset(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.fail is not None:
            raise self.fail
        return self.tables[(args[0], kwargs.get("split"))]


def _fake(monkeypatch, tables, fail=None):
    import sys

    fake = _FakeDatasets(tables, fail)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    return fake


def test_hub_corpora_follow_the_gptq_conventions(monkeypatch):
    c4_train = [f"train doc {i}" for i in range(25000)]
    c4_val = [f"val doc {i}" for i in range(1500)]
    fake = _fake(monkeypatch, {
        ("wikitext", "train"): {"text": [" = Title = \n", "", " line one\n"]},
        ("wikitext", "test"): {"text": ["a\n", "b\n"]},
        ("ptb_text_only", "test"): {"sentence": ["no it was n't", "the <unk> rose"]},
        ("allenai/c4", "train"): {"text": c4_train},
        ("allenai/c4", "validation"): {"text": c4_val},
    })
    assert load_text("wikitext2", "train") == " = Title = \n" + "\n\n" + "" + "\n\n" + " line one\n"
    assert load_text("wikitext2", "test") == "a\n\n\nb\n"
    assert fake.calls[0] == (("wikitext", "wikitext-2-raw-v1"), {"split": "train"})
    assert load_text("ptb", "test") == "no it was n't the <unk> rose"
    assert fake.calls[2] == (("ptb_text_only", "penn_treebank"), {"split": "test"})
    train = load_text("c4", "train")
    assert train.split("\n\n") == c4_train[:20000]  # only the first C4_TRAIN_DOCS documents
    assert fake.calls[3][1]["data_files"] == {"train": "en/c4-train.00000-of-01024.json.gz"}
    test = load_text("c4", "test")
    assert test == " ".join(c4_val[:1100])  # GPTQ's C4 evaluation slice
    assert fake.calls[4][1]["data_files"] == {"validation": "en/c4-validation.00000-of-00008.json.gz"}


def test_hub_failure_is_one_data_error(monkeypatch):
    _fake(monkeypatch, {}, fail=ConnectionError("Couldn't reach 'wikitext' on the Hub (LocalEntryNotFoundError)\nmore"))
    with pytest.raises(DataError, match=r"cannot load dataset 'wikitext' .*\(offline\?\): Couldn't reach") as exc:
        load_text("wikitext2", "test")
    assert "\n" not in str(exc.value)
