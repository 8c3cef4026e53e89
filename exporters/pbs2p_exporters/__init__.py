"""Writers of packed models (GGUF, ONNX). numpy + pbs2p_edge.pack only: never imports torch."""

from .gguf_export import export_gguf
from .gguf_read import read_gguf_packed
from .inspect import inspect_file

__all__ = ["export_gguf", "inspect_file", "read_gguf_packed"]
