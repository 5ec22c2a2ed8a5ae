"""Pure torch/numpy building blocks of ComfyUI-FluxDrag. Nothing here imports comfy."""
