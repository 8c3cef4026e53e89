"""The compressed checkpoint directory: save from a torch model, load torch-free, rebuild a fake-quantized model."""

from ..pack.checkpoint_dir import Checkpoint, is_checkpoint, load_checkpoint
from .fake_quant import to_fake_quant_model
from .save import pack_result, save_checkpoint

__all__ = ["Checkpoint", "is_checkpoint", "load_checkpoint", "pack_result", "save_checkpoint", "to_fake_quant_model"]
