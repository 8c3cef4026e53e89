"""write_safetensors: the bytes safetensors' own writer makes, whether a tensor is given whole or in row pieces."""

from __future__ import annotations

import io

import numpy as np
import pytest
from safetensors.numpy import load, save_file

from pbs2p_edge.errors import FormatError
from pbs2p_edge.pack.safetensors_stream import RowPieces, write_safetensors

TAG = {"format": "pbs2p-checkpoint/test"}


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((13, 7)).astype(np.float32), "a.mask": rng.integers(0, 255, 40, dtype=np.uint8),
            "pos": np.arange(5, dtype=np.int64), "empty": np.zeros((0, 4), np.float32),
            "scalar": np.array(2.5, np.float32), "half": rng.standard_normal(6).astype(np.float16),
            "flags": np.array([True, False, True]), "t": rng.standard_normal((3, 4)).astype(np.float32).T}


def _write(tensors, metadata=TAG) -> bytes:
    f = io.BytesIO()
    write_safetensors(f, tensors, metadata)
    return f.getvalue()


def test_the_bytes_of_safetensors_save_file(tmp_path):
    tensors = _tensors()
    save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, str(tmp_path / "ref.safetensors"),
              metadata=TAG)
    assert _write(tensors) == (tmp_path / "ref.safetensors").read_bytes()
    back = load(_write(tensors, None))
    assert set(back) == set(tensors) and all(np.array_equal(back[k], v) for k, v in tensors.items())


@pytest.mark.parametrize("step", [1, 4, 13, 20])
def test_row_pieces_write_what_the_whole_array_writes(step):
    tensors = _tensors()
    w = tensors["w"]
    pieced = {**tensors, "w": RowPieces(w.shape, w.dtype, lambda: (w[r: r + step] for r in range(0, 13, step)))}
    assert _write(pieced) == _write(tensors)


def test_every_tensor_as_row_pieces_writes_what_the_whole_arrays_write():
    """A streamed model's shards give every tensor as RowPieces, a 0-d or empty one included."""
    tensors = _tensors()
    pieced = {k: RowPieces(v.shape, v.dtype, lambda v=v: iter([np.ascontiguousarray(v)])) for k, v in tensors.items()}
    assert _write(pieced) == _write(tensors)


@pytest.mark.parametrize("pieces,message", [
    (lambda w: iter([w[:5]]), "gave 5 rows"),
    (lambda w: iter([w, w[:1]]), "gave 14 rows"),
    (lambda w: iter([w[:, :3].copy()]), "does not fit"),
    (lambda w: iter([w.astype(np.float64)]), "does not fit"),
    (lambda w: iter([w.T.copy().T]), "does not fit"),  # not C-contiguous
])
def test_pieces_that_do_not_make_the_tensor_are_refused(pieces, message):
    w = _tensors()["w"]
    with pytest.raises(FormatError, match=message):
        _write({"w": RowPieces(w.shape, w.dtype, lambda: pieces(w))})


def test_a_dtype_safetensors_has_no_name_for_is_refused_before_writing():
    f = io.BytesIO()
    with pytest.raises(FormatError, match="complex64"):
        write_safetensors(f, {"z": np.zeros(2, np.complex64)})
    assert f.getvalue() == b""
