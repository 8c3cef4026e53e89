"""Files the user names and files we write: atomic and durable writes, stale temps, modes, one-line failures, UTF-8 text.

Shared by the checkpoint writer and the exporters; imports nothing of the package but its errors.
"""
