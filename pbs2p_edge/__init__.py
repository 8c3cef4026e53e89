"""pbs2p-edge: compress Hugging Face causal LMs with PBS2P (1-bit + N:M) and ship them to edge CPUs.

Importing this package is cheap: torch is imported only by the modules that need it.
"""

__version__ = "0.1.0"
