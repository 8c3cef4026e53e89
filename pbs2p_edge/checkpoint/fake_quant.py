"""to_fake_quant_model: a checkpoint as a dense transformers model whose compressed linears hold W_hat."""

from __future__ import annotations

import torch

from ..errors import FormatError, one_line
from ..pack import unpack_layer
from ..pack.checkpoint_dir import load_checkpoint


def _embedding_keys(ckpt) -> list[str]:
    """The stored 2-D embedding and head matrices (tied copies are stored once)."""
    return [k for k, v in ckpt.dense.items() if v.ndim == 2 and (k.endswith("embed_tokens.weight") or k == "lm_head.weight")]


def to_fake_quant_model(path, dtype: torch.dtype = torch.float32):
    """(model, tokenizer or None) built from config.json, dense.safetensors and the unpacked linears, with the
    token embedding / head rounded to the checkpoint's embedding tier when it names one."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    ckpt = load_checkpoint(path)
    try:
        config = AutoConfig.from_pretrained(str(ckpt.path))
    except Exception as e:  # transformers raises OSError / ValueError / KeyError / its strict field validation errors
        raise FormatError(f"{ckpt.path}: config.json is not a usable model config ({one_line(e)})") from None
    state = {k: torch.from_numpy(v) for k, v in ckpt.dense.items()}
    for name, p in ckpt.layers.items():
        state[f"{name}.weight"] = torch.from_numpy(unpack_layer(p))
    for name, g in ckpt.grids.items():
        state[f"{name}.weight"] = torch.from_numpy(g.decode())
    if embed_tier := ckpt.embed_tier:  # as the GGUF export will store them
        for key in _embedding_keys(ckpt):
            state[key] = torch.from_numpy(ckpt.embedding_values(key, embed_tier))
    try:
        with torch.device("meta"):  # the shapes the config implies, before allocating what it says
            skeleton = AutoModelForCausalLM.from_config(config, dtype=dtype)
    except Exception as e:  # transformers' modules assert on impossible values (a padding id past the vocabulary)
        raise FormatError(f"{ckpt.path}: config.json does not describe a model ({type(e).__name__}: {one_line(e)})") \
            from None
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    missing = [k for k in shapes if k not in state and k not in ckpt.tied]
    unexpected = [k for k in state if k not in shapes]
    wrong = [k for k in state if k in shapes and tuple(state[k].shape) != shapes[k]]
    if missing or unexpected or wrong:
        raise FormatError(f"{ckpt.path}: checkpoint does not match its config (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}, other shapes {[(k, tuple(state[k].shape), shapes[k]) for k in wrong[:2]]})")
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    model.eval()
    tokenizer = None
    if ckpt.tokenizer_json:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(ckpt.path))
        except Exception as e:  # transformers raises JSON / OSError / ValueError / its own errors on a broken file
            raise FormatError(f"{ckpt.path}: unreadable tokenizer ({type(e).__name__}: {one_line(e)})") from None
    return model, tokenizer
