"""Hugging Face model side: resolving and loading sources, architecture registry, layer-by-layer compression."""
