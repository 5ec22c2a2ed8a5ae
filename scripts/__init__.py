"""Developer and user scripts, run from the repository root as ``python -m scripts.NAME`` (never imported by the runtime)."""
