"""The shipped toy FLUX model as a normal ComfyUI MODEL, its conditioning, and small flow solvers.

``load_toy_model()`` builds the FLUX-architecture network through ComfyUI's own classes
(``build_flux_model`` → ``comfy.supported_models.Flux`` → ModelPatcher) and loads
``toyflux.safetensors``; the CONDITIONING carries the fixed text tokens, pooled vector and guidance
saved in ``toyflux.json``. Scenes are in FLUX *model space*; ComfyUI LATENTs are in VAE space,
related by ``comfy.latent_formats.Flux``: model = (latent − 0.1159) · 0.3611.

The Euler solvers here call the raw velocity v(x, σ) of the diffusion model (rectified flow,
x_σ = (1−σ)·x0 + σ·ε, v = ε − x0), as ComfyUI's FLUX model does under its CONST sampling.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "toyflux.safetensors"
META = HERE / "toyflux.json"
# the toy FLUX fine-tuned to read a ReferenceLatent like FLUX.1 Kontext (bench/toybench/train_kontext.py)
KONTEXT_WEIGHTS = HERE / "toykontext.safetensors"
#: Toy Model Loader choices → weights
TOY_MODELS = {"toy FLUX": WEIGHTS, "toy Kontext": KONTEXT_WEIGHTS}

# comfy/latent_formats.py, class Flux (checked against ComfyUI 0.8.0 in the tier-2 test)
FLUX_SCALE = 0.3611
FLUX_SHIFT = 0.1159
# ModelSamplingFlux default shift (mu) used by ComfyUI for FLUX when no node overrides it
FLUX_MU = 1.15

TOY_CONFIG = {
    "image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16,
    "vec_in_dim": 32, "context_in_dim": 64, "hidden_size": 128, "mlp_ratio": 4.0, "num_heads": 2,
    "depth": 2, "depth_single_blocks": 4, "axes_dim": [8, 28, 28], "theta": 10000,
    "patch_size": 2, "qkv_bias": True, "txt_ids_dims": [],
}
# Head dim 64 split (8, 28, 28) = FLUX's (16, 56, 56) halved: 14 RoPE frequencies per image axis.
# With 4 heads of 32 split (8, 12, 12) only ~2 of 6 frequencies vary over 16 tokens, attention
# could not single out neighbours, and two trainings produced one-token specks, never objects.
TEXT_TOKENS = 4
DEFAULT_GUIDANCE = 3.5


WEIGHT_DTYPES = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def build_flux_model(unet_config: dict, state_dict: dict | None = None, dtype=None,
                     device: str = "cpu"):
    """A FLUX-architecture MODEL (ModelPatcher) built with ``comfy.supported_models.Flux``.

    Runtime code: it imports the ``comfy`` package that is already importable (inside a running
    ComfyUI, the server's own) and never looks for ComfyUI on disk or changes its arguments.
    Scripts, benchmarks and tests make ComfyUI importable first (see ``tools/comfy_env``).
    With no ``state_dict`` the weights are ComfyUI's own initialisation.

    ``dtype`` float8 (``torch.float8_e4m3fn`` / ``float8_e5m2``) stores the weights in fp8 and
    computes in a manual-cast dtype, the way ComfyUI's UNETLoader ``weight_dtype`` does
    (``comfy.sd.load_diffusion_model_state_dict``: ``unet_manual_cast`` + ``set_inference_dtype`` +
    ``load_model_weights``). UNETLoader itself cannot load the toy model: its FLUX detection fixes
    24 heads and FLUX.1's RoPE axes.
    """
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    dev = torch.device(device)
    mc = comfy.supported_models.Flux(dict(unet_config))
    dtype = dtype or torch.float32
    manual_cast = None
    if dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        manual_cast = comfy.model_management.unet_manual_cast(dtype, dev, mc.supported_inference_dtypes)
    mc.set_inference_dtype(dtype, manual_cast)
    base = mc.get_model({}, device=device)
    if state_dict is not None:
        if manual_cast is None:
            base.diffusion_model.load_state_dict(state_dict)
        else:
            base.load_model_weights(dict(state_dict), "")
    return comfy.model_patcher.ModelPatcher(base, load_device=dev, offload_device=dev)


def make_conditioning_tensors(seed: int, config: dict | None = None, tokens: int = TEXT_TOKENS,
                              families: tuple[str, ...] = ("single", "multi", "textured_bg")) -> dict:
    """Fixed text tokens (1, T, C), pooled vector (1, V) and one pooled offset per family."""
    cfg = dict(TOY_CONFIG, **(config or {}))
    g = torch.Generator().manual_seed(int(seed))
    ctx = torch.randn(1, tokens, cfg["context_in_dim"], generator=g)
    pooled = torch.randn(1, cfg["vec_in_dim"], generator=g)
    fam = {f: torch.randn(1, cfg["vec_in_dim"], generator=g) for f in families}
    return {"context": ctx, "pooled": pooled, "family_offsets": fam}


def read_meta(path: Path = META) -> dict:
    return json.loads(Path(path).read_text())


def training_minutes(training: dict) -> float:
    """Wall-clock minutes of a training record including every run it resumed from."""
    prev = training.get("resumed_from")
    return float(training.get("wall_minutes", 0.0)) + (training_minutes(prev) if prev else 0.0)


def conditioning_from_meta(meta: dict, family: str | None = None,
                           guidance: float = DEFAULT_GUIDANCE) -> list:
    """ComfyUI CONDITIONING ``[[context, {"pooled_output", "guidance"}]]`` from toyflux.json.

    ``family`` None is the family-agnostic condition (trained with label dropout).
    """
    c = meta["conditioning"]
    ctx = torch.tensor(c["context"], dtype=torch.float32)
    pooled = torch.tensor(c["pooled"], dtype=torch.float32)
    if family is not None:
        if family not in c["family_offsets"]:
            raise ValueError(f"toy model: family {family!r} has no condition in these weights (trained "
                             f"with {', '.join(c['family_offsets'])}); use one of those or 'any'")
        pooled = pooled + torch.tensor(c["family_offsets"][family], dtype=torch.float32)
    return [[ctx, {"pooled_output": pooled, "guidance": float(guidance)}]]


def load_toy_model(path: Path | str = WEIGHTS, family: str | None = None,
                   guidance: float = DEFAULT_GUIDANCE, weight_dtype: str = "default"):
    """(ModelPatcher, CONDITIONING) for the shipped toy FLUX model (needs ComfyUI).

    ``weight_dtype``: one of ``WEIGHT_DTYPES`` (fp8 storage like UNETLoader's option)."""
    from safetensors.torch import load_file

    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype {weight_dtype!r}: use one of {', '.join(WEIGHT_DTYPES)}")
    path = Path(path)
    meta = read_meta(path.with_suffix(".json"))
    sd = {k: v.float() for k, v in load_file(str(path)).items()}
    model = build_flux_model(meta["unet_config"], state_dict=sd, dtype=WEIGHT_DTYPES[weight_dtype])
    return model, conditioning_from_meta(meta, family, guidance)


# ----------------------------------------------------------------------------- latent conventions

def scene_latent_to_comfy(latent: torch.Tensor) -> dict:
    """Model-space scene latent (16, H, W) or (B, 16, H, W) → ComfyUI LATENT dict (VAE space)."""
    x = latent[None] if latent.dim() == 3 else latent
    return {"samples": x / FLUX_SCALE + FLUX_SHIFT}


def comfy_to_scene_latent(latent: dict | torch.Tensor) -> torch.Tensor:
    """ComfyUI LATENT (dict or its samples, VAE space) → model-space (B, 16, H, W)."""
    x = latent["samples"] if isinstance(latent, dict) else latent
    return (x - FLUX_SHIFT) * FLUX_SCALE


# ----------------------------------------------------------------------------- raw-velocity solvers

def flux_sigmas(steps: int, mu: float = FLUX_MU) -> torch.Tensor:
    """σ from 1 to 0 in ``steps`` steps, shifted like ComfyUI's ModelSamplingFlux (mu = 1.15)."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    s = torch.zeros_like(t)
    inner = t > 0
    s[inner] = math.exp(mu) / (math.exp(mu) + (1.0 / t[inner] - 1.0))
    return s.float()


def cond_inputs(cond: list, batch: int) -> dict:
    """Diffusion-model keyword inputs from a CONDITIONING list (first entry)."""
    ctx, extra = cond[0][0], cond[0][1]
    return {
        "context": ctx.expand(batch, -1, -1),
        "y": extra["pooled_output"].expand(batch, -1),
        "guidance": torch.full((batch,), float(extra.get("guidance", DEFAULT_GUIDANCE))),
    }


def velocity(diffusion_model, x: torch.Tensor, sigma: float, cond: list) -> torch.Tensor:
    """Raw FLUX velocity v(x, σ), called as ComfyUI's model_base.Flux does."""
    kw = cond_inputs(cond, x.shape[0])
    t = torch.full((x.shape[0],), float(sigma))
    return diffusion_model(x, t, kw["context"], y=kw["y"], guidance=kw["guidance"])


@torch.no_grad()
def euler_sample(diffusion_model, noise: torch.Tensor, cond: list, steps: int = 20) -> torch.Tensor:
    """Euler ODE from σ=1 (noise) to σ=0: x ← x + (σ_{i+1} − σ_i)·v."""
    sig = flux_sigmas(steps)
    x = noise
    for i in range(steps):
        x = x + (sig[i + 1] - sig[i]) * velocity(diffusion_model, x, float(sig[i]), cond)
    return x


@torch.no_grad()
def euler_invert(diffusion_model, x0: torch.Tensor, cond: list, steps: int = 20) -> torch.Tensor:
    """Euler inversion σ=0 → 1 on the same grid (velocity taken at the current, lower σ)."""
    sig = flux_sigmas(steps).flip(0)
    x = x0
    for i in range(steps):
        x = x + (sig[i + 1] - sig[i]) * velocity(diffusion_model, x, float(sig[i]), cond)
    return x
