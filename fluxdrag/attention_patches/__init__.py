"""The only code that touches ComfyUI's FLUX internals, through ComfyUI's own hooks."""
