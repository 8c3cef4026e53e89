"""Tests of the built-in Austen corpora extracted from Debian's r-cran-janeaustenr."""

import shutil
from pathlib import Path

import pytest

from pbs2p_edge.calib import austen
from pbs2p_edge.errors import DataError

_HAVE_SOURCE = austen.SYSTEM_DATA.joinpath("Rdata.rdx").is_file() or (
    shutil.which("dpkg-deb") is not None and shutil.which("apt-get") is not None
)
needs_debian = pytest.mark.skipif(not _HAVE_SOURCE, reason="needs r-cran-janeaustenr installed, or dpkg-deb and apt-get to fetch it")


@needs_debian
def test_prideprejudice_from_the_user_cache():
    """Default cache (~/.cache/pbs2p-edge): the first run downloads/extracts, later runs read the cache."""
    text = austen.austen_text("prideprejudice")
    assert text.startswith("PRIDE AND PREJUDICE\n")
    assert "It is a truth universally acknowledged, that a single man in possession\nof a good fortune" in text
    assert 600_000 < len(text) < 800_000


@needs_debian
def test_extraction_into_a_fresh_cache(tmp_path, monkeypatch):
    """Parse the R database directly (no cached text) and write all six novels atomically."""
    data_dir = austen.find_rdata_dir()  # system package or the user cache's unpacked .deb
    monkeypatch.setenv("PBS2P_EDGE_CACHE", str(tmp_path))
    monkeypatch.setattr(austen, "find_rdata_dir", lambda cache=None: data_dir)
    emma = austen.austen_text("emma")
    assert emma.startswith("EMMA\n") and "Emma Woodhouse, handsome, clever, and rich" in emma
    cached = sorted(p.name for p in (tmp_path / "austen").iterdir())
    assert cached == sorted(f"{n}.txt" for n in austen.NOVELS)  # no temp files left behind
    assert (tmp_path / "austen" / "emma.txt").read_text(encoding="utf-8") == emma
    lines = austen.read_rdata_lines(data_dir, "persuasion")
    assert "\n".join(lines) == austen.austen_text("persuasion") and len(lines) > 8000


def test_unknown_novel_and_object(tmp_path):
    with pytest.raises(DataError, match="choose one of emma, mansfieldpark"):
        austen.austen_text("ulysses")
    if _HAVE_SOURCE:
        with pytest.raises(DataError, match="has no object 'ulysses'"):
            austen.read_rdata_lines(austen.find_rdata_dir(), "ulysses")


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PBS2P_EDGE_CACHE", str(tmp_path))
    assert austen.cache_dir() == tmp_path
    monkeypatch.delenv("PBS2P_EDGE_CACHE")
    assert austen.cache_dir() == Path.home() / ".cache" / "pbs2p-edge"
