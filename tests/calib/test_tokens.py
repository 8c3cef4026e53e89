"""Tests of encode: one 1-D int64 stream equal to the tokenizer's own output."""

import pytest
import torch

from pbs2p_edge.calib.tokens import encode
from pbs2p_edge.errors import DataError


def test_encode_matches_tokenizer(tiny_tokenizer):
    text = "It is a truth universally acknowledged. " * 50
    ids = encode(tiny_tokenizer, text)
    assert ids.dtype == torch.long and ids.dim() == 1
    assert ids.tolist() == tiny_tokenizer(text)["input_ids"]
    assert tiny_tokenizer.decode(ids.tolist()) == text


def test_empty_text_is_an_error(tiny_tokenizer):
    with pytest.raises(DataError, match="no tokens"):
        encode(tiny_tokenizer, "")
