"""The one packed layer format (docs/FORMAT.md): layout definition and numpy reference packer/unpacker."""

from .layout import FORMAT_VERSION, LayerMeta, check_arrays, expected_arrays, mask_width
from .packer import PackedLayer, honest_bits, pack_layer, packed_layers, unpack_layer

__all__ = ["FORMAT_VERSION", "LayerMeta", "PackedLayer", "check_arrays", "expected_arrays", "honest_bits",
           "mask_width", "pack_layer", "packed_layers", "unpack_layer"]
