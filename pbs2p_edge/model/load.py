"""Load a causal LM and its tokenizer from any ModelSource, in eval mode, as a typed failure when it cannot."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import ModelError, Pbs2pError, one_line
from .arch import arch_for
from ..pack.architectures import check_config
from .sources import ModelSource, resolve_source

log = logging.getLogger(__name__)


def open_model_streamed(source: str | ModelSource, output: str | None = None):
    """(model on the meta device, tokenizer, StreamedWeights) for a Hugging Face directory of safetensors shards
    (model/stream.py) or a GGUF file (model/gguf_stream.py), after the same config check as load_model; None for a
    hub id, or a source whose stored tensors do not cover the model (load it whole with load_model)."""
    from transformers import AutoConfig, AutoTokenizer

    from .gguf_stream import open_gguf_streamed
    from .stream import open_streamed

    src = source if isinstance(source, ModelSource) else resolve_source(source)
    if src.kind not in ("hf_dir", "gguf"):
        return None
    kwargs = {"gguf_file": src.gguf_file} if src.kind == "gguf" else {}
    try:
        config = AutoConfig.from_pretrained(src.location, **kwargs)
        check_config(config.to_dict(), output)
        if src.kind == "gguf":
            opened = open_gguf_streamed(Path(src.location) / src.gguf_file, config)
        else:
            opened = open_streamed(src.location, config)
        if opened is None:
            return None
        tokenizer = AutoTokenizer.from_pretrained(src.location, **kwargs)  # as load_model: the same tokenizer out
    except Pbs2pError:
        raise
    except Exception as exc:  # transformers raises anything on a bad directory or config (asserts included)
        raise ModelError(f"cannot load model {src.text!r} from {src.location}: {one_line(exc)}") from exc
    model, weights = opened
    arch_for(model)
    log.info("streaming %s (%s) from its shards", src.text, model.config.model_type)
    return model, tokenizer, weights


def load_model(source: str | ModelSource, device: str = "cpu", dtype: torch.dtype = torch.float32, offline: bool = False,
               output: str | None = None):
    """(model, tokenizer) for `source`, on `device`, weights in `dtype`, eval mode.

    GGUF sources are dequantized by transformers (needs the `gguf` package). `offline=True` never
    touches the network (hub ids must then be in the local cache). The config is checked against
    pack/architectures.py (for the `output` format ".gguf" / ".onnx" the model will be exported to, when
    given) before any weight is read, so an unusable model fails in a second and not half-way through a run.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = source if isinstance(source, ModelSource) else resolve_source(source)
    kwargs: dict = {"local_files_only": offline}
    if src.gguf_file is not None:
        kwargs["gguf_file"] = src.gguf_file
    try:
        check_config(AutoConfig.from_pretrained(src.location, **kwargs).to_dict(), output)
        model = AutoModelForCausalLM.from_pretrained(src.location, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(src.location, **kwargs)
    except Pbs2pError:
        raise
    except Exception as exc:  # transformers raises anything on a bad directory or config (asserts included)
        where = "the hub (offline or unknown id?)" if src.kind == "hub" else src.location
        raise ModelError(f"cannot load model {src.text!r} from {where}: {one_line(exc)}") from exc
    arch_for(model)  # the layout of what was loaded
    if src.gguf_file is not None and hasattr(model.config, "quantization_config"):
        # transformers marks a model read from a GGUF as "gguf"-quantized although its weights are now float: the
        # config a checkpoint saves describes the float model (as a streamed GGUF's does, model/gguf_stream.py)
        delattr(model.config, "quantization_config")
    model.eval()
    model.to(device)
    log.info("loaded %s (%s) on %s", src.text, model.config.model_type, device)
    return model, tokenizer
