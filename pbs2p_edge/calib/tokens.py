"""Tokenize a whole corpus once into the 1-D id stream that windows are cut from."""

from __future__ import annotations

import logging

import torch

from ..errors import DataError


def encode(tokenizer, text: str) -> torch.Tensor:
    """1-D int64 ids of `text`, tokenized in one call as GPTQ does (so a tokenizer that adds BOS adds
    it once, at the very start). The "sequence longer than model_max_length" warning is silenced:
    the stream is cut into windows afterwards."""
    tf_logger = logging.getLogger("transformers.tokenization_utils_base")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        ids = tokenizer(text)["input_ids"]
    finally:
        tf_logger.setLevel(level)
    if len(ids) == 0:
        raise DataError("the text tokenizes to no tokens")
    return torch.tensor(ids, dtype=torch.long)
