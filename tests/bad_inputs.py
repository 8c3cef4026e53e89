"""Families of broken inputs made from valid ones, for the bad-input tests (tests/test_cli.py) and the Python-side
fuzz benchmark (bench/python_fuzz.py): every one must give one error line and exit status 2."""

from __future__ import annotations

import json
import shutil
import struct

import gguf


def corrupt_ggufs(src, root):
    """name -> path: a family of broken copies of the pbs2p GGUF `src`: truncations in the header, the key-values,
    the tensor infos and the data; counts and lengths that overrun the file; n_dims 0xFFFFFFFF; well-formed files with
    impossible hyper-parameters (head_count 0, vocab_size 1e9, architecture "llamb"); a token string that is not
    UTF-8 (same length, so every offset stays valid)."""
    data = src.read_bytes()
    reader = gguf.GGUFReader(str(src))
    base = reader.data.__array_interface__["data"][0]
    infos = min(int(t.field.offset) for t in reader.tensors)  # the first tensor info
    out = {}

    def put(name, b):
        out[name] = root / f"{name}.gguf"
        out[name].write_bytes(bytes(b))

    for name, cut in [("cut-magic", 3), ("cut-header", 20), ("cut-kv", 24 + (infos - 24) // 3), ("cut-kv-end", infos - 5),
                      ("cut-infos", infos + 13), ("cut-data", int(reader.data_offset) + 100), ("cut-last", len(data) - 1)]:
        put(name, data[:cut])
    for name, at, fmt, value in [("huge-tensor-count", 8, "<Q", 1 << 62), ("huge-kv-count", 16, "<Q", 1 << 62),
                                 ("huge-key-length", 24, "<Q", 1 << 60), ("ndims-ffffffff", None, "<I", 0xFFFFFFFF)]:
        b = bytearray(data)
        if at is None:  # a tensor info: u64 name length, name, u32 n_dims
            at = infos + 8 + struct.unpack_from("<Q", b, infos)[0]
        struct.pack_into(fmt, b, at, value)
        put(name, b)
    for name, key, value in [("head-count-0", b"llama.attention.head_count", 0), ("vocab-1e9", b"llama.vocab_size", 10**9)]:
        b = bytearray(data)
        at = b.find(struct.pack("<Q", len(key)) + key + struct.pack("<I", 4))  # a UINT32 key-value
        if at >= 0:  # vocab_size is optional
            struct.pack_into("<I", b, at + 8 + len(key) + 4, value)
            put(name, b)
    b = bytearray(data)
    arch = b.find(b"general.architecture")
    at = b.find(b"llama", arch + len("general.architecture"))
    b[at:at + 5] = b"llamb"  # well-formed, readable by gguf-py, not an architecture libpbs2p runs
    put("architecture-llamb", b)
    tokens = reader.fields["tokenizer.ggml.tokens"]
    token = next(tokens.parts[i] for i in tokens.data if len(tokens.parts[i]) > 1)
    b = bytearray(data)
    b[token.__array_interface__["data"][0] - base] = 0xFF
    put("token-not-utf8", b)
    b = bytearray(data)  # an array of 2^60 elements in a 100 KB file (gguf-py would walk it until memory runs out)
    key = b"pbs2p.linear.honest_bits"
    at = b.find(struct.pack("<Q", len(key)) + key)
    struct.pack_into("<Q", b, at + 8 + len(key) + 4 + 4, 1 << 60)  # after the value type and the element type
    put("huge-array-count", b)
    return out


def corrupt_checkpoints(src, root):
    """name -> directory: broken copies of the checkpoint `src`: each file missing, cut in half, or garbage; a
    safetensors header length past the file; pbs2p.json fields of the wrong kind or naming what is not there;
    config.json naming another architecture or no sizes."""
    out = {}

    def copy(name):
        out[name] = shutil.copytree(src, root / name)
        return out[name]

    for f in ("pbs2p.json", "config.json", "packed.safetensors", "dense.safetensors"):
        (copy(f"missing-{f}") / f).unlink()
        data = (src / f).read_bytes()
        (copy(f"cut-{f}") / f).write_bytes(data[: len(data) // 2])
        (copy(f"garbage-{f}") / f).write_bytes(b"\x00\xffnot this file\n")
    for f in ("packed.safetensors", "dense.safetensors"):
        b = bytearray((src / f).read_bytes())
        struct.pack_into("<Q", b, 0, 1 << 62)
        (copy(f"huge-header-{f}") / f).write_bytes(bytes(b))
    meta = json.loads((src / "pbs2p.json").read_text())
    first = next(iter(meta["layers"]))
    edits = {
        "format": "pbs2p-something", "format_version": 99, "compress_config": "pbs2p", "layers": [],
        "layer-rows": {**meta["layers"], first: {**meta["layers"][first], "rows": 3}},
        "layer-not-a-table": {**meta["layers"], first: 7},
        "layer-has-mu": {**meta["layers"], first: {**meta["layers"][first], "has_mu": "x"}}, "extra": True,
        "tiers": {first: "q9_9"}, "tied": {"lm_head.weight": "model.nothing.weight"},
        "blocks": {"compressed": 5, "total": 2}, "embed_tier": "q9_9", "grid_layers": [1, 2],
    }
    for key, value in edits.items():
        field = key.split("-")[0] if key.startswith("layer-") else key
        m = dict(meta, **{"layers" if field == "layer" else field: value})
        (copy(f"meta-{key}") / "pbs2p.json").write_text(json.dumps(m))
    config = json.loads((src / "config.json").read_text())
    (copy("config-gpt2") / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    (copy("config-no-sizes") / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (copy("config-list") / "config.json").write_text("[1, 2, 3]")
    for name, edit in [("theta-none", {"rope_theta": None, "rope_parameters": {"rope_type": "default", "rope_theta": None}}),
                       ("eps-text", {"rms_norm_eps": "x"}), ("eps-none", {"rms_norm_eps": None}),
                       ("type-table", {"model_type": {"a": 1}}), ("positions-none", {"max_position_embeddings": None}),
                       ("pad-past-vocab", {"pad_token_id": 1 << 40})]:
        (copy(f"config-{name}") / "config.json").write_text(json.dumps({**config, **edit}))
    alpha = next(k for k in _safetensors_names(src / "packed.safetensors") if k.endswith(".alpha"))
    nan = copy("nan-scale")
    arrays = _load(nan / "packed.safetensors")
    arrays[alpha] = arrays[alpha].copy()
    arrays[alpha].reshape(-1)[0] = float("nan")
    _save(arrays, nan / "packed.safetensors")
    return out


def _safetensors_names(path) -> list[str]:
    return list(_load(path))


def _load(path):
    from safetensors.numpy import load_file

    return load_file(str(path))


def _save(arrays, path) -> None:
    from safetensors.numpy import save_file

    save_file(arrays, str(path))
