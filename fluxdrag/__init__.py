"""The runtime of ComfyUI-FluxDrag, an importable package with no ComfyUI at import time.

Layers (``docs/architecture.md``): ``core`` (pure torch) ← ``attention_patches`` (the only code
touching ComfyUI's FLUX internals) ← ``pipelines`` (one module per method) ← ``nodes`` (V3 nodes);
``toyworld`` holds the toy scenes and the toy models the toy nodes load. ComfyUI loads the pack
through the repository's top-level ``__init__.py``, which imports ``nodes`` from here; tests,
benchmarks and scripts import ``fluxdrag.…`` with the repository root on ``sys.path``
(``pytest.ini``'s ``pythonpath``, or ``python -m`` from the repository root).
"""
