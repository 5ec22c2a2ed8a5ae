"""ComfyUI nodes (V3 schema). Thin: they name inputs, validate, call ``core``/``attention_patches``."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from . import attention_drag, contextdrag, dragflow, editor, instructions, inversion, lazydrag, toyworld
from .common import shows_warnings

NODE_MODULES = [inversion, instructions, lazydrag, editor, contextdrag, attention_drag, dragflow, toyworld]
for _module in NODE_MODULES:
    for _node in _module.NODES:
        shows_warnings(_node)


def all_nodes() -> list[type[io.ComfyNode]]:
    out: list = []
    for m in NODE_MODULES:
        out.extend(m.NODES)
    return out


class FluxDragExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()
