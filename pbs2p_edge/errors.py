"""Typed exceptions: every user-facing failure is a Pbs2pError subclass, so the CLI can print one line."""


def one_line(exc: BaseException) -> str:
    """The first line of a library's exception message (its type name when empty): for our one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Pbs2pError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(Pbs2pError, ValueError):
    """An invalid option: unknown method, N:M out of range, M not dividing a layer width, nsamples 0."""


class ModelError(Pbs2pError):
    """A model source that cannot be used: missing path, unsupported architecture, unreadable weights."""


class DataError(Pbs2pError):
    """Text that cannot be used: unknown corpus, empty, not UTF-8, too short for one window."""


class FormatError(Pbs2pError):
    """A file of ours (checkpoint, GGUF, ONNX) that is corrupt, truncated or of an unknown version."""


class OutputError(Pbs2pError):
    """An output path that cannot be written (missing directory, no permission, unknown extension)."""


class NativeError(Pbs2pError):
    """A status code returned by libpbs2p, with the library's message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (status {status})")
        self.status = status


class MissingExtra(Pbs2pError):
    """A command needs packages of an optional extra that are not installed (pbs2p_edge/extras.py names them)."""
