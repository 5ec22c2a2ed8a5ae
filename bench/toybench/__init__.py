"""Toy-world benchmark: metrics, baselines, the pack's methods as benchmark rows, the runner and
the training script. Scenes and the shipped model are runtime code of the pack (``fluxdrag/toyworld/``);
this package imports them, never the reverse. ``metrics`` is pure torch; ``train`` and ``run``
need ComfyUI (found by ``tools/comfy_env``).
"""
