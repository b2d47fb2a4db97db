"""Command modules, one per stage, each a thin typer layer over the library API.

Each module imports only typer (and the standard library) at import time, so ``gliorad --help`` stays
fast; ``gliorad.cli`` registers them. The package re-exports nothing: its public API is the
command line.
"""

__all__: list[str] = []
