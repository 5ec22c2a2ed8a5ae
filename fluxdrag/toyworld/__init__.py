"""The toy world, runtime part: synthetic drag scenes in FLUX latent space with exact ground truth
(``scenes``) and the shipped toy FLUX-architecture model (``model``, ``toyflux.safetensors``).

Runtime code of the pack (the toy-world nodes use it): it never looks for ComfyUI or changes its
arguments; ``model`` builds with whatever ``comfy`` package is importable (the running server's).
The benchmark, training and metrics live in ``bench/toybench`` and import this, never the reverse.
"""
