# Sourced by the scripts that run Python: PY is the project's interpreter, .venv/bin/python (made by
# scripts/setup.sh), never whatever python3 the PATH holds, which on a fresh machine has none of the packages.
if [ ! -x .venv/bin/python ]; then
    echo "$(basename "$0"): no project environment (.venv); run 'bash scripts/setup.sh' first" >&2
    exit 2
fi
PY=.venv/bin/python
