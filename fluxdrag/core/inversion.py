"""The inversion record: what ``FluxDrag Invert`` hands to the nodes that edit and sample back.

Pure data. ``z_T`` is the inverted latent in the *model's* latent space (after ComfyUI's
``process_latent_in``), kept exactly so that sampling back starts bit-for-bit where the inversion
ended. ``sigmas`` is the sampling-direction schedule (decreasing); the inversion ran it reversed.
``caches`` holds whatever capture controllers stored during the inversion (e.g. LazyDrag's token
cache), keyed by the edit map's cache name. The record is a node output: the nodes downstream
read it and never change or free it, so one record feeds any number of samplers, and a record
ComfyUI keeps in its cache gives the same edit when the graph is queued again. Its caches go when
the record goes (ComfyUI drops the output); a pipeline that makes a record for one run of its own
(DragFlow) frees them when that run ends (:meth:`InversionRecord.free_caches`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .solvers import MATCHING_SAMPLER


@dataclass
class InversionRecord:
    z_T: torch.Tensor                 # (B, C, h, w) model-space latent at sigmas[0]
    sigmas: torch.Tensor              # sampling direction, sigmas[0] = start, sigmas[-1] = 0
    solver: str                       # inversion solver
    steps: int                        # steps of the full schedule before the strength cut
    strength: float
    z_0: Optional[torch.Tensor] = None  # model-space source latent
    trajectory: list = field(default_factory=list)  # model-space latents after each inversion step
    caches: dict = field(default_factory=dict)      # {cache name: TokenCache}, read-only downstream
    scheduler: str = "simple"         # the sigma schedule's scheduler
    guidance: float = 1.0             # FLUX guidance the inversion ran at
    #: the edit map the caches were captured for (e.g. a ``LazyDragPlan``; None: no edit map);
    #: an edit node checks it is the map it was given (identity)
    edit_map: Optional[Any] = None
    cache_policy: str = "cpu"         # "cpu" / "fp8" / "device", or "paired" (no cache)

    @property
    def sample_solver(self) -> str:
        """The sampling solver that reconstructs this inversion."""
        return MATCHING_SAMPLER[self.solver]

    @property
    def latent_shape(self) -> tuple:
        return tuple(self.z_T.shape)

    def free_caches(self) -> None:
        """Empty the caches: only for the owner of a record made for one run (never a node output)."""
        for c in self.caches.values():
            free = getattr(c, "free", None)
            if free is not None:
                free()

    def cache_bytes(self) -> int:
        return sum(int(getattr(c, "nbytes", 0)) for c in self.caches.values())
