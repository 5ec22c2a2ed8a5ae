"""ComfyUI-FluxDrag: training-free drag-based image editing for FLUX models in ComfyUI.

ComfyUI imports this file as the pack's package; the runtime is the subpackage ``fluxdrag/``
(the repository root has no top-level ``nodes`` that could shadow ComfyUI's, so it can sit on
``sys.path``).
The V3 entry point imports the node modules lazily so that the pure-torch parts
(``fluxdrag/core/``) stay importable without ComfyUI.
"""

WEB_DIRECTORY = "./js"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]


async def comfy_entrypoint():
    """V3 entry point: return the pack's ``ComfyExtension`` (and put the example picture the
    shipped workflows load into ComfyUI's input folder, once)."""
    from .fluxdrag.nodes import FluxDragExtension
    from .fluxdrag.nodes.editor import install_example_input

    install_example_input()
    return FluxDragExtension()
