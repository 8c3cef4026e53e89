"""The built-in `debian-reference` corpus: the Debian Reference manual's body, from Debian's debian-reference-en."""

import shutil

import pytest

from pbs2p_edge.calib import debian_reference
from pbs2p_edge.calib.text import load_text
from pbs2p_edge.errors import DataError

needs_debian = pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("apt-get") is None,
                                  reason="needs dpkg-deb and apt-get to fetch debian-reference-en")


def test_body_starts_at_the_first_chapter_heading():
    nbsp = "\u00a0"
    manual = f"Debian Reference\nTable of Contents\n1. Tutorials\n  See Chapter 1. again\n\nChapter{nbsp}1.{nbsp}Tutorials\nText."
    assert debian_reference.body(manual) == f"Chapter{nbsp}1.{nbsp}Tutorials\nText."  # a heading starts a line
    with pytest.raises(DataError, match="no 'Chapter 1.' heading"):
        debian_reference.body("Debian Reference\nPreface\nno chapters here\n")


@needs_debian
def test_the_manual_is_fetched_unpacked_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PBS2P_EDGE_CACHE", str(tmp_path))
    text = load_text("debian-reference", split="test")
    assert text.startswith("Chapter\u00a01.\u00a0GNU/Linux tutorials\n")
    assert "apt-get" in text and "Austen" not in text
    assert 500_000 < len(text) < 2_000_000
    assert (tmp_path / "debian-reference.txt").read_text(encoding="utf-8") == text  # the cache is the text
    shutil.rmtree(tmp_path / "debian-reference-en-deb")  # a later call reads only the cached text
    assert load_text("debian-reference") == text
