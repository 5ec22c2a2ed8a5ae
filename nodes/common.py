"""Shared bits of the node layer: the pack's custom types and category; the checks and
conversions the nodes share with the pipelines live in ``pipelines/common.py``."""
from __future__ import annotations

from comfy_api.latest import io

from ..pipelines.common import (  # noqa: F401  (re-exported for the node modules)
    START_KEY,
    FluxDragInputError,
    StepProgress,
    check_batch,
    check_latent,
    image_at,
    mask_at,
    require_flux,
    sampling_sigmas,
    to_latent,
    to_model_space,
)

Inversion = io.Custom("FLUXDRAG_INVERSION")
DragInstructions = io.Custom("DRAG_INSTRUCTIONS")
EditMap = io.Custom("FLUXDRAG_MAP")

CATEGORY = "FluxDrag"
