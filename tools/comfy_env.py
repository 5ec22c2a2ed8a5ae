"""Find a ComfyUI checkout and build tiny FLUX-architecture models through ComfyUI's own classes.

Used by tier-2 tests, ``bench/`` and ``scripts/`` (never by the pack's runtime code, which uses
the ComfyUI that imported it). Nothing here installs ComfyUI; ``find_comfyui`` looks, in order, at
``$COMFYUI_PATH``, the ComfyUI whose ``custom_nodes`` holds this pack, and ``~/comfy/ComfyUI``
(comfy-cli's default location).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

TINY_FLUX = dict(
    image_model="flux", guidance_embed=True, in_channels=16, out_channels=16, vec_in_dim=32,
    context_in_dim=64, hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2,
    depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True,
    txt_ids_dims=[],
)


PACK_ROOT = Path(__file__).resolve().parent.parent


def is_comfyui(path: Path) -> bool:
    """A ComfyUI source tree: ``main.py`` next to the ``comfy`` package."""
    return (path / "main.py").is_file() and (path / "comfy").is_dir()


def comfyui_candidates(environ=None, pack_root: Path | None = None,
                       home: Path | None = None) -> list[tuple[str, Path]]:
    """Where ComfyUI is looked for, in order: (label, path)."""
    environ = os.environ if environ is None else environ
    pack_root = PACK_ROOT if pack_root is None else Path(pack_root)
    home = Path.home() if home is None else Path(home)
    out = []
    if environ.get("COMFYUI_PATH"):
        out.append(("$COMFYUI_PATH", Path(environ["COMFYUI_PATH"]).expanduser()))
    if pack_root.parent.name == "custom_nodes":
        out.append(("the ComfyUI holding this pack", pack_root.parent.parent))
    out.append(("~/comfy/ComfyUI", home / "comfy" / "ComfyUI"))
    return out


def find_comfyui(environ=None, pack_root: Path | None = None, home: Path | None = None) -> Path | None:
    """The ComfyUI to use: ``$COMFYUI_PATH``, then the ComfyUI whose ``custom_nodes`` holds this
    pack, then ``~/comfy/ComfyUI``; None when none of them is a ComfyUI tree. A set
    ``$COMFYUI_PATH`` that is not a ComfyUI is skipped (``not_found_message`` says so)."""
    for _, c in comfyui_candidates(environ, pack_root, home):
        if is_comfyui(c):
            return c.resolve()
    return None


def not_found_message(environ=None, pack_root: Path | None = None, home: Path | None = None) -> str:
    """One message naming the three places looked at and how to get ComfyUI."""
    environ = os.environ if environ is None else environ
    pack_root = PACK_ROOT if pack_root is None else Path(pack_root)
    env = environ.get("COMFYUI_PATH")
    places = [f"$COMFYUI_PATH ({env} is not a ComfyUI tree)" if env else "$COMFYUI_PATH (not set)",
              f"the ComfyUI holding this pack ({pack_root} is not inside a ComfyUI/custom_nodes folder)"
              if pack_root.parent.name != "custom_nodes" else
              f"the ComfyUI holding this pack ({pack_root.parent.parent} has no main.py/comfy)",
              f"~/comfy/ComfyUI ({(Path.home() if home is None else Path(home)) / 'comfy' / 'ComfyUI'} missing)"]
    return ("ComfyUI not found. Looked at: " + "; ".join(places) + ". Fix: clone this pack into "
            "ComfyUI/custom_nodes/, or set COMFYUI_PATH to a ComfyUI folder, or get ComfyUI with "
            "'pip install comfy-cli && comfy install' (installs to ~/comfy/ComfyUI) or "
            "'git clone https://github.com/comfyanonymous/ComfyUI' plus its requirements.txt.")


def import_comfy(path: Path | None = None, cpu: bool = True) -> Path:
    """Put ComfyUI first on ``sys.path`` and select the CPU before ``comfy.model_management`` loads.

    For scripts, benchmarks and tests only: a running ComfyUI server has already imported
    ``comfy``, and the pack's runtime code never calls this."""
    path = path or find_comfyui()
    if path is None:
        raise RuntimeError(not_found_message())
    p = str(path)
    if p in sys.path:
        sys.path.remove(p)
    sys.path.insert(0, p)
    import comfy.cli_args

    if cpu:
        comfy.cli_args.args.cpu = True
    return path


def build_flux(config: dict | None = None, seed: int = 0, init_std: float = 0.05,
               state_dict: dict | None = None, dtype=None):
    """A FLUX-architecture MODEL (ModelPatcher) built through ``comfy.supported_models.Flux``.

    Random init from ComfyUI is near zero, so weights are re-initialised with a seeded normal
    (``init_std``) unless ``state_dict`` is given.
    """
    import torch

    from fluxdrag.toyworld.model import build_flux_model

    cfg = dict(TINY_FLUX)
    cfg.update(config or {})
    patcher = build_flux_model(cfg, state_dict=state_dict, dtype=dtype)
    if state_dict is None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _, p in sorted(patcher.model.diffusion_model.named_parameters()):
                p.copy_(torch.randn(p.shape, generator=g) * init_std)
    return patcher


def tiny_conditioning(config: dict | None = None, seed: int = 0, tokens: int = 8,
                      guidance: float = 3.5):
    """A FLUX CONDITIONING list matching ``build_flux``'s text/vector sizes."""
    import torch

    cfg = dict(TINY_FLUX)
    cfg.update(config or {})
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(1, tokens, cfg["context_in_dim"], generator=g)
    pooled = torch.randn(1, cfg["vec_in_dim"], generator=g)
    return [[ctx, {"pooled_output": pooled, "guidance": guidance}]]


TINY_SD15 = dict(
    use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True,
    legacy=False, adm_in_channels=None, in_channels=4, model_channels=32, num_res_blocks=[1, 1],
    transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1], channel_mult=[1, 2],
    transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=64, num_heads=2,
    num_head_channels=-1, dtype=None, disable_self_attentions=None,
    num_attention_blocks=None, use_temporal_attention=False, use_temporal_resblock=False,
)


def build_sd15(config: dict | None = None, seed: int = 0, init_std: float = 0.05):
    """A tiny SD1.x UNet MODEL built through ``comfy.supported_models.SD15``."""
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    cfg = dict(TINY_SD15)
    cfg.update(config or {})
    mc = comfy.supported_models.SD15(cfg)
    mc.set_inference_dtype(torch.float32, None)
    base = mc.get_model({}, device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(base.diffusion_model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * init_std)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)
