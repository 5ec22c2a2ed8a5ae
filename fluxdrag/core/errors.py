"""A readable name for the pack's exception classes in ComfyUI's error reports.

ComfyUI loads a custom node package under a module name made from its install path and reports an
error's type as ``module.QualName`` (``execution.full_type_name``), so without this every message
would start with ``/…/custom_nodes/ComfyUI-FluxDrag.nodes.common.FluxDragInputError``.
"""
from __future__ import annotations

PUBLIC_MODULE = "fluxdrag"


def public_name(cls: type) -> type:
    """Class decorator: report the exception as ``fluxdrag.<Name>`` wherever the pack lies."""
    cls.__module__ = PUBLIC_MODULE
    return cls
