"""ComfyUI-FluxDrag: training-free drag-based image editing for FLUX models in ComfyUI.

ComfyUI imports this file as the pack's package. The V3 entry point imports the node
modules lazily so that the pure-torch parts (``core/``) stay importable without ComfyUI.
"""

WEB_DIRECTORY = "./js"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]


async def comfy_entrypoint():
    """V3 entry point: return the pack's ``ComfyExtension`` (and put the example picture the
    shipped workflows load into ComfyUI's input folder, once)."""
    from .nodes import FluxDragExtension
    from .nodes.editor import install_example_input

    install_example_input()
    return FluxDragExtension()
