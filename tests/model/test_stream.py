"""Block streaming (model/stream.py): a model compressed from its safetensors shards, one block in memory at a time,
gives the checkpoint of the same model held in memory, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pbs2p_edge import commands
from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.errors import FormatError, ModelError
from pbs2p_edge.model import stream
from pbs2p_edge.model.stream import StreamedWeights, open_streamed, shard_index
from pbs2p_edge.pack import checkpoint_dir
from pbs2p_edge.pack.checkpoint_dir import load_checkpoint

from conftest import make_tiny_gemma3, make_tiny_llama, make_tiny_opt
from saved_models import checkpoint_snapshot as snapshot
from saved_models import english_text, save_hf_dir

CALIB = {"nsamples": 3, "seqlen": 24, "progress": False}
PBS2P = CompressConfig(method="pbs2p", n=4, m=8, seed=0)


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "english.txt"
    path.write_text(english_text(12))
    return path


def compress_both(monkeypatch, src: Path, out: Path, text: Path, cfg=PBS2P, **kw) -> tuple[dict, dict]:
    """The checkpoint snapshots of `src` compressed streamed and loaded whole (open_model_streamed made to decline)."""
    s = commands.compress(str(src), str(out / "streamed"), cfg, calib=str(text), **CALIB, **kw)
    assert s["streamed"] is True
    with monkeypatch.context() as m:
        m.setattr("pbs2p_edge.model.load.open_model_streamed", lambda *a, **k: None)
        w = commands.compress(str(src), str(out / "whole"), cfg, calib=str(text), **CALIB, **kw)
    assert w["streamed"] is False
    return snapshot(out / "streamed"), snapshot(out / "whole")


@pytest.mark.parametrize("kind", ["llama", "llama-tied", "opt", "gemma3"])
def test_streamed_compression_writes_the_bytes_of_the_model_in_memory(monkeypatch, tmp_path, tiny_tokenizer, text,
                                                                    kind):
    # gemma3: its embedding scales the rows it looks up, which a streamed capture must keep
    model = {"opt": make_tiny_opt, "gemma3": make_tiny_gemma3}.get(kind, make_tiny_llama)()
    if kind == "llama-tied":
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM(model.config.__class__(**{**model.config.to_dict(), "tie_word_embeddings": True}))
    src = save_hf_dir(model, tiny_tokenizer, tmp_path / "src")
    streamed, whole = compress_both(monkeypatch, src, tmp_path, text)
    assert streamed == whole
    meta = json.loads(streamed["pbs2p.json"])
    assert bool(meta["tied"]) == (kind != "llama")  # OPT and Gemma tie their heads too


def test_recovery_and_a_partial_run_stream_to_the_same_bytes(monkeypatch, tmp_path, tiny_llama_dir, text):
    """Recovery changes the norms of a block that is then released; --blocks 1 leaves block 1 as stored, read from the
    shards when the checkpoint is written."""
    import dataclasses

    cfg = dataclasses.replace(PBS2P, recover_steps=3)
    streamed, whole = compress_both(monkeypatch, tiny_llama_dir, tmp_path, text, cfg=cfg, blocks=1)
    assert streamed == whole
    assert json.loads(streamed["pbs2p.json"])["blocks"] == {"compressed": 1, "total": 2}


def test_large_dense_tensors_are_written_from_row_pieces_with_the_same_bytes(monkeypatch, tmp_path, tiny_llama_dir,
                                                                             text):
    """Every dense tensor goes from the shards to the checkpoint as it is written, one larger than READ_CHUNK (an 8B
    model's 2.1 GB embedding) in pieces, never whole in memory; the bytes are those of the model held in memory."""
    from pbs2p_edge.pack.safetensors_stream import RowPieces

    monkeypatch.setattr(stream, "READ_CHUNK", 7 * 64 + 3)  # pieces of 7 rows of a 64-wide tensor
    given = []
    row_pieces = StreamedWeights.row_pieces
    monkeypatch.setattr(StreamedWeights, "row_pieces", lambda self, name: given.append(row_pieces(self, name)) or
                        given[-1])
    streamed, whole = compress_both(monkeypatch, tiny_llama_dir, tmp_path, text, blocks=1)
    assert streamed == whole
    assert given and all(isinstance(g, RowPieces) for g in given)  # a shard's tensors are never held together
    pieced = [g for g in given if len(list(g.pieces())) > 1]
    assert len(pieced) >= 9 and all(g.shape[0] > 7 for g in pieced)  # embedding, head, block 1's seven linears


def test_bfloat16_shards_with_an_index_stream_as_from_pretrained_widens_them(monkeypatch, tmp_path, tiny_tokenizer,
                                                                               text):
    src = tmp_path / "src"
    src.mkdir()
    make_tiny_llama().to(torch.bfloat16).save_pretrained(src, max_shard_size="40KB")
    tiny_tokenizer.save_pretrained(src)
    assert (src / stream.INDEX_JSON).is_file() and len(list(src.glob("*.safetensors"))) > 2
    streamed, whole = compress_both(monkeypatch, src, tmp_path, text)
    assert streamed == whole


def test_one_decoder_block_is_in_memory_at_a_time(monkeypatch, tmp_path, tiny_llama_dir, text):
    seen: list[tuple[str, list[int]]] = []
    load = StreamedWeights.load

    def recording(self, module, prefix, device):
        blocks = module_root[0].model.layers
        seen.append((prefix, [i for i, b in enumerate(blocks) if any(not p.is_meta for p in b.parameters())]))
        load(self, module, prefix, device)

    module_root: list = []
    opened = stream.open_streamed

    def keep_root(directory, config):
        out = opened(directory, config)
        module_root.append(out[0])
        return out

    monkeypatch.setattr(StreamedWeights, "load", recording)
    monkeypatch.setattr("pbs2p_edge.model.stream.open_streamed", keep_root)
    commands.compress(str(tiny_llama_dir), str(tmp_path / "out"), PBS2P, calib=str(text), **CALIB)
    # CFS's pass over both blocks, then both compressed: each block read with no other block held
    blocks = [(prefix, held) for prefix, held in seen if prefix.startswith("model.layers.")]
    assert blocks == [("model.layers.0", []), ("model.layers.1", [])] * 2
    assert all(p.is_meta for p in module_root[0].parameters())  # everything released at the end


def test_large_tensors_are_read_in_pieces_with_the_same_values(monkeypatch, tiny_llama_dir):
    from safetensors.torch import load_file

    stored = load_file(str(tiny_llama_dir / "model.safetensors"))
    model, weights = open_streamed(tiny_llama_dir, make_tiny_llama().config)
    monkeypatch.setattr(stream, "READ_CHUNK", 7 * 64 + 3)  # pieces of 7 rows, the last one short
    for name, t in weights.read(weights.stored).items():
        assert torch.equal(t, stored[name].float()), name
    rows = torch.tensor([0, 5, 6, 319])
    assert torch.equal(weights.read_rows("model.embed_tokens.weight", rows), stored["model.embed_tokens.weight"][rows])


def test_directories_that_do_not_stream_load_whole_and_broken_ones_fail_in_one_line(tmp_path, tiny_tokenizer):
    config = make_tiny_llama().config
    pickled = tmp_path / "pickled"
    save_hf_dir(make_tiny_llama(), tiny_tokenizer, pickled)
    (pickled / "model.safetensors").unlink()
    assert open_streamed(pickled, config) is None  # no safetensors: transformers' loader decides
    partial = save_hf_dir(make_tiny_llama(), tiny_tokenizer, tmp_path / "partial")
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(partial / "model.safetensors"))
    del tensors["lm_head.weight"]
    save_file(tensors, str(partial / "model.safetensors"), metadata={"format": "pt"})
    assert open_streamed(partial, config) is None  # a parameter the shards lack
    (partial / stream.INDEX_JSON).write_text(json.dumps({"weight_map": {"a": "model-00009.safetensors"}}))
    with pytest.raises(ModelError, match="names shards that are not there: model-00009"):
        shard_index(partial)
    (partial / stream.INDEX_JSON).unlink()
    (partial / "model.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{]")
    with pytest.raises(ModelError, match="cannot read its safetensors header") as err:
        shard_index(partial)
    assert "\n" not in str(err.value)


def test_dense_tensors_over_the_shard_size_are_written_in_shards_and_read_back(monkeypatch, tmp_path, tiny_llama_dir,
                                                                                text):
    whole = tmp_path / "one"
    commands.compress(str(tiny_llama_dir), str(whole), PBS2P, calib=str(text), **CALIB)
    monkeypatch.setattr(checkpoint_dir, "DENSE_SHARD_BYTES", 30_000)
    sharded = tmp_path / "sharded"
    commands.compress(str(tiny_llama_dir), str(sharded), PBS2P, calib=str(text), **CALIB)
    shards = sorted(p.name for p in sharded.glob("dense-*"))
    assert not (sharded / "dense.safetensors").exists() and len(shards) >= 3
    assert shards[-1] == f"dense-{len(shards):05d}-of-{len(shards):05d}.safetensors"
    a, b = load_checkpoint(whole), load_checkpoint(sharded)
    assert set(a.dense) == set(b.dense) and all((a.dense[k] == b.dense[k]).all() for k in a.dense)
    assert a.meta["dense_dtypes"] == b.meta["dense_dtypes"] and a.tied == b.tied
    (sharded / shards[1]).unlink()
    with pytest.raises(FormatError, match="dense shards are not"):
        load_checkpoint(sharded)
    (whole / "dense.safetensors").rename(sharded / "dense.safetensors")
    with pytest.raises(FormatError, match="holds both dense.safetensors and dense shards"):
        load_checkpoint(sharded)


def test_the_widest_inputs_hessian_is_made_after_every_other_fit(monkeypatch, tmp_path, tiny_llama_dir, text):
    """A streamed block's down_proj (K = intermediate, the largest H) gets its Hessian from a second forward once the
    other six linears are fitted: no fit runs beside it; the checkpoint is still the one-forward bytes (the tests
    above compare with the model held in memory, which makes every H in one forward)."""
    import pbs2p_edge.algo.compress_layer as compress_layer_module
    from pbs2p_edge.model import sequential

    events: list[tuple] = []
    late_hessians = sequential._late_hessians
    monkeypatch.setattr(sequential, "_late_hessians",
                        lambda block, linears, late, prefix, *a: events.append(("H", prefix, sorted(late)))
                        or late_hessians(block, linears, late, prefix, *a))
    fit = compress_layer_module.compress_layer
    monkeypatch.setattr(compress_layer_module, "compress_layer",
                        lambda W, H, *a, **k: events.append(("fit", H.shape[0])) or fit(W, H, *a, **k))
    commands.compress(str(tiny_llama_dir), str(tmp_path / "out"), PBS2P, calib=str(text), **CALIB)
    config = make_tiny_llama().config
    hidden, inter = config.hidden_size, config.intermediate_size
    assert inter > hidden
    assert events == [*[("fit", hidden)] * 6, ("H", "model.layers.0", ["mlp.down_proj"]), ("fit", inter),
                      *[("fit", hidden)] * 6, ("H", "model.layers.1", ["mlp.down_proj"]), ("fit", inter)]


def test_a_streamed_blocks_other_linears_hold_no_float32_weight_during_a_fit(monkeypatch, tmp_path, tiny_llama_dir,
                                                                             text):
    """A streamed block's linears are held as stored until their own fit (and widened only while each runs): when a
    linear is fitted, every other linear of its block has released its float32 weight (at the Llama-3-8B shape the
    six others' were 0.64 GB beside the MLP fits). The checkpoint bytes are the in-memory model's (tests above)."""
    import pbs2p_edge.algo.compress_layer as compress_layer_module
    from pbs2p_edge.model import sequential

    blocks: list[dict] = []
    block_linears = sequential.block_linears
    monkeypatch.setattr(sequential, "block_linears", lambda *a: blocks.append(block_linears(*a)) or blocks[-1])
    held: list[list[int]] = []
    fit = compress_layer_module.compress_layer
    monkeypatch.setattr(compress_layer_module, "compress_layer", lambda W, H, *a, **k: held.append(
        sorted(lin.weight.numel() for lin in blocks[-1].values())) or fit(W, H, *a, **k))
    commands.compress(str(tiny_llama_dir), str(tmp_path / "out"), PBS2P, calib=str(text), **CALIB)
    config = make_tiny_llama().config
    assert len(held) == 7 * config.num_hidden_layers
    assert all(sizes[:-1] == [0] * 6 and sizes[-1] > 0 for sizes in held), held
