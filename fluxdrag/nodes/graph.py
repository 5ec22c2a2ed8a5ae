"""Checks on the queued graph itself, made before any model runs.

``check_patch_maps`` runs at the start of FluxDrag Invert (before the inversion): a LazyDrag Patch
fed by this Invert must get the same Correspondence Map as the Invert's ``edit_map``, otherwise
the inversion caches tokens the edit never reads and the mistake would surface only after a full
inversion. It reads ComfyUI's prompt (``io.Hidden.dynprompt``): node id → {class_type, inputs}, a
link being ``[node_id, output_index]``.
"""
from __future__ import annotations

from ..pipelines.common import FluxDragInputError

MISSING = object()   # default of an optional input that is not connected (validate_inputs)

PATCH_TYPES = {"FluxDragLazyDragPatch": "map"}   # patch node → its map input


def _same_link(a, b) -> bool:
    return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) == 2 \
        and str(a[0]) == str(b[0]) and int(a[1]) == int(b[1])


def check_patch_maps(dynprompt, invert_id) -> None:
    """Refuse a LazyDrag Patch whose ``map`` differs from the ``edit_map`` of the Invert that
    feeds its ``inversion`` (no-op outside a server, or for a paired inversion)."""
    if dynprompt is None or invert_id is None:
        return
    prompt = dynprompt.get_original_prompt() if hasattr(dynprompt, "get_original_prompt") else dynprompt
    me = prompt.get(str(invert_id), {})
    inputs = me.get("inputs", {})
    if inputs.get("cache_policy") == "paired":
        return
    edit_map = inputs.get("edit_map")
    for nid, n in prompt.items():
        key = PATCH_TYPES.get(n.get("class_type"))
        if key is None:
            continue
        ins = n.get("inputs", {})
        if not _same_link(ins.get("inversion"), [str(invert_id), 1]):
            continue
        if not _same_link(ins.get(key), edit_map):
            what = "has no 'edit_map'" if edit_map is None else f"'edit_map' comes from node {edit_map[0]}"
            raise FluxDragInputError(
                f"FluxDrag Invert (node {invert_id}) feeds LazyDrag Patch node {nid}, whose 'map' "
                f"comes from node {ins.get(key, ['?'])[0]}, but this Invert {what}: connect the same "
                f"Correspondence Map output to both (checked before inverting).")
