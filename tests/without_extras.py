"""Runs `pbs2p-edge ARGV` as on a device with only the core dependencies (numpy, cffi, gguf): the packages of the
optional extras (pbs2p_edge/extras.py) cannot be imported. `python tests/without_extras.py ARGV...`; the exit status
is the command's."""

from __future__ import annotations

import sys

from pbs2p_edge.extras import EXTRAS


def hide_extras() -> None:
    """Every extra's top-level module absent: None in sys.modules is Python's own mark for that (an import raises
    ModuleNotFoundError, importlib.util.find_spec returns None)."""
    for modules in EXTRAS.values():
        for name in modules:
            sys.modules[name] = None


if __name__ == "__main__":
    hide_extras()
    from pbs2p_edge.cli import main

    sys.exit(main(sys.argv[1:]))
