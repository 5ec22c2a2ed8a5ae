"""Shared bits of the node layer: the pack's custom types and category; the checks and
conversions the nodes share with the pipelines live in ``pipelines/common.py``."""
from __future__ import annotations

import functools

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
    user_warnings,
)

Inversion = io.Custom("FLUXDRAG_INVERSION")
DragInstructions = io.Custom("DRAG_INSTRUCTIONS")
EditMap = io.Custom("FLUXDRAG_MAP")

CATEGORY = "FluxDrag"


def shows_warnings(node_cls: type[io.ComfyNode]) -> type[io.ComfyNode]:
    """Class decorator: what a node's ``execute`` reports with ``warnings.warn`` (a rescaled
    drawing, a resized mask, mixed solvers, ...) reaches the user — the node's text in the UI,
    a progress-text event over the API, the log at WARNING — not only the server's stderr.
    Nodes that declare ``io.Hidden.unique_id`` get the text on the node itself."""
    inner = node_cls.execute.__func__
    if getattr(inner, "_fluxdrag_shows_warnings", False):
        return node_cls
    name = node_cls.define_schema().display_name

    @functools.wraps(inner)
    def execute(cls, *args, **kwargs):
        uid = getattr(getattr(cls, "hidden", None), "unique_id", None)
        with user_warnings(uid, name):
            return inner(cls, *args, **kwargs)

    execute._fluxdrag_shows_warnings = True
    node_cls.execute = classmethod(execute)
    return node_cls
