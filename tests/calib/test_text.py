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
