"""Toy world: synthetic drag scenes in FLUX latent space with exact ground truth, a small trained
FLUX-architecture model (ComfyUI's own classes) and a scored benchmark of drag methods (issue 8).

``scenes`` and ``metrics`` are pure torch; ``model``, ``train`` and ``run`` need ComfyUI.
"""
