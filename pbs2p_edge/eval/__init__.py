"""Evaluation of a (compressed) causal LM: perplexity over non-overlapping windows."""
