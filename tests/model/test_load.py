"""Tests of load_model on a saved tiny Hugging Face directory and on an unreachable hub id."""

import pytest
import torch

from pbs2p_edge.errors import ModelError
from pbs2p_edge.model.load import load_model


def test_load_hf_dir_gives_same_model_in_eval_mode(tiny_llama_dir, tiny_llama, tiny_ids):
    """tiny_llama_dir holds the weights of the tiny_llama fixture (same seed)."""
    model, tokenizer = load_model(str(tiny_llama_dir))
    assert not model.training and model.dtype == torch.float32
    ids = tiny_ids[:32][None]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, tiny_llama(ids).logits, rtol=0, atol=0)
    assert tokenizer("It is a truth")["input_ids"]


def test_load_in_other_dtype(tiny_llama_dir):
    model, _ = load_model(str(tiny_llama_dir), dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16


def test_offline_unknown_hub_id_is_one_line_model_error():
    with pytest.raises(ModelError, match="cannot load model 'no-such-org-pbs2p/no-such-model'") as err:
        load_model("no-such-org-pbs2p/no-such-model", offline=True)
    assert "\n" not in str(err.value)
