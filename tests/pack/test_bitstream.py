"""Tests of the LSB-first per-row bit streams."""

import numpy as np
import pytest

from pbs2p_edge.pack.bitstream import pack_bits, pack_fields, unpack_bits, unpack_fields


def test_lsb_first_layout_by_hand():
    # fields 0b101, 0b011 of width 3 -> bits 1,0,1,1,1,0 -> byte 0b00011101
    assert pack_fields(np.array([[5, 3]]), 3).tolist() == [[0b00011101]]
    # 9 single bits -> 2 bytes, bit 8 is bit 0 of byte 1
    bits = np.zeros((1, 9), bool)
    bits[0, 0] = bits[0, 8] = True
    assert pack_bits(bits).tolist() == [[1, 1]]


@pytest.mark.parametrize("width", [1, 2, 3, 5, 7, 13, 14])
@pytest.mark.parametrize("R,F", [(1, 1), (7, 9), (3, 72)])
def test_fields_round_trip(width, R, F):
    rng = np.random.default_rng(width * 100 + F)
    fields = rng.integers(0, 1 << width, size=(R, F))
    stream = pack_fields(fields, width)
    assert stream.shape == (R, (F * width + 7) // 8) and stream.dtype == np.uint8
    assert np.array_equal(unpack_fields(stream, F, width), fields)
    # padding bits are zero
    tail = F * width % 8
    if tail:
        assert np.all(stream[:, -1] >> tail == 0)


def test_bits_round_trip():
    rng = np.random.default_rng(1)
    bits = rng.random((5, 129)) < 0.5
    assert np.array_equal(unpack_bits(pack_bits(bits), 129), bits)


def test_pack_bits_of_a_column_selection_is_c_contiguous():
    """signs[:, salient] is Fortran-ordered; safetensors stores raw buffers, so the stream must be row-major."""
    rng = np.random.default_rng(0)
    bits = rng.random((32, 64)) < 0.5
    cols = rng.random(64) < 0.8
    stream = pack_bits(bits[:, cols])
    assert stream.flags["C_CONTIGUOUS"]
    assert np.frombuffer(stream.tobytes(order="A"), np.uint8).reshape(stream.shape).tolist() == stream.tolist()
    assert (unpack_bits(stream, int(cols.sum())) == bits[:, cols]).all()
