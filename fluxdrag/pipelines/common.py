"""What every pipeline needs from ComfyUI: input checks with clear messages, LATENT conversions,
the sigma schedule, a guider, progress (bar and text) and the pack's logger."""
from __future__ import annotations

import contextlib
import logging
import warnings

import torch

from ..core.errors import public_name

log = logging.getLogger("FluxDrag")

WARNING_PREFIX = "warning: "  # starts each warning's progress text (API clients tell them apart)
START_KEY = "fluxdrag_start"  # LATENT key holding an exact model-space start latent


@public_name
class FluxDragInputError(ValueError):
    """Bad node input; the message names the input and the fix."""


def require_flux(model, node: str, input_name: str = "model"):
    """The FLUX diffusion module of ``model``, or a clear error for other families."""
    import comfy.ldm.flux.model

    dm = model.get_model_object("diffusion_model")
    if not isinstance(dm, comfy.ldm.flux.model.Flux):
        family = type(model.model).__name__
        raise FluxDragInputError(
            f"{node}: input '{input_name}' is a {family} model ({type(dm).__name__}), but this node "
            f"needs a FLUX model (FLUX.1 dev/schnell/Krea/Kontext loaded with UNETLoader, fp8/GGUF "
            f"fine). Connect a FLUX model.")
    return dm


def check_latent(samples: torch.Tensor, node: str, input_name: str = "latent") -> None:
    if samples.ndim != 4:
        raise FluxDragInputError(f"{node}: input '{input_name}' must be an image latent (B,C,H,W); "
                                 f"got shape {tuple(samples.shape)}.")
    h, w = samples.shape[-2:]
    if h % 2 or w % 2:
        raise FluxDragInputError(
            f"{node}: input '{input_name}' is {w * 8}×{h * 8} px; FLUX tokens are 16 px, so the image "
            f"must be a multiple of 16 on both sides. Resize or crop it first (e.g. ImageScale to "
            f"{(w * 8) // 16 * 16}×{(h * 8) // 16 * 16}).")


def check_batch(samples: torch.Tensor, conditioning, node: str, input_name: str = "positive") -> None:
    b = samples.shape[0]
    for c in conditioning or []:
        cb = c[0].shape[0]
        if cb not in (1, b):
            raise FluxDragInputError(
                f"{node}: input '{input_name}' has batch {cb} but the latent has batch {b}; use one "
                f"conditioning (batch 1) or the same batch size as the latent.")


def to_model_space(model, latent: dict) -> torch.Tensor:
    """A LATENT's samples as the model sees them (exact start latent when one is attached)."""
    if START_KEY in latent:
        return latent[START_KEY]
    return model.model.process_latent_in(latent["samples"].float())


def to_latent(model, z: torch.Tensor, exact: bool = True) -> dict:
    """A ComfyUI LATENT for a model-space latent (keeping the exact tensor alongside)."""
    out = {"samples": model.model.process_latent_out(z.float()).cpu()}
    if exact:
        out[START_KEY] = z
    return out


def sampling_sigmas(model, scheduler: str, steps: int) -> torch.Tensor:
    import comfy.samplers

    ms = model.get_model_object("model_sampling")
    return comfy.samplers.calculate_sigmas(ms, scheduler, steps).cpu().float()


class StepProgress:
    """ComfyUI progress bar over solver steps (the bar also lets the UI interrupt)."""

    def __init__(self, total: int):
        import comfy.utils

        self.total = total
        self.bar = comfy.utils.ProgressBar(total)

    def __call__(self, i: int, total: int, x=None) -> None:
        self.bar.update_absolute(i + 1, total)


def image_at(image: torch.Tensor | None, H: int, W: int, grey: float | None = 0.5) -> torch.Tensor | None:
    """One (H, W, 3) float CPU image for previews: ``image`` (an (H', W', 3) picture or the first of
    an IMAGE batch) resized bilinearly when its size differs; a grey canvas (or None when ``grey``
    is None) without an image."""
    if image is None:
        return None if grey is None else torch.full((H, W, 3), float(grey))
    img = (image[0] if image.ndim == 4 else image).detach().float().cpu()
    if tuple(img.shape[:2]) != (H, W):
        img = torch.nn.functional.interpolate(img.permute(2, 0, 1)[None], size=(H, W), mode="bilinear",
                                              align_corners=False)[0].permute(1, 2, 0)
    return img.clone()


def mask_at(mask: torch.Tensor, H: int, W: int, name: str = "mask") -> torch.Tensor:
    """A ComfyUI MASK ((1, H', W') or (H', W')) as a bool (H, W) mask (nearest resize, > 0.5);
    a resize is reported (``warnings.warn``, shown to the user by ``user_warnings``)."""
    m = (mask[0] if mask.ndim == 3 else mask).float()
    if tuple(m.shape) != (H, W):
        warnings.warn(f"input '{name}' is {m.shape[1]}×{m.shape[0]} but the image is {W}×{H}: "
                      f"resized to the image (nearest); draw the mask on the image itself to "
                      f"avoid this", stacklevel=2)
        m = torch.nn.functional.interpolate(m[None, None], size=(H, W), mode="nearest")[0, 0]
    return m > 0.5


def guider(model, positive, negative=None, cfg: float = 1.0):
    """ComfyUI's ``CFGGuider`` over ``model`` with the given conditioning and cfg."""
    import comfy.samplers

    g = comfy.samplers.CFGGuider(model)
    conds = {"positive": positive}
    if negative is not None:
        conds["negative"] = negative
    g.inner_set_conds(conds)
    g.set_cfg(cfg)
    return g


def progress_text(unique_id, text: str, method: str = "", level: int = logging.INFO) -> None:
    """Log ``text`` (as ``[FluxDrag] method: text``) and, inside a ComfyUI server, show it under
    the node ``unique_id`` (API clients get it as the websocket's progress-text event)."""
    log.log(level, "[FluxDrag] %s%s", f"{method}: " if method else "", text)
    if not unique_id:
        return
    try:
        from server import PromptServer

        PromptServer.instance.send_progress_text(text, unique_id)
    except Exception:  # noqa: BLE001 (no server in-process)
        pass


@contextlib.contextmanager
def user_warnings(unique_id, node: str):
    """Show what the code inside rescales, resizes, drops or mixes (``warnings.warn``) to the
    user: as the node's text in the UI, as a progress-text event to API clients, and in the log
    at WARNING — not only on the server's stderr. Also when the code inside fails."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    text = text if text.startswith(node) else f"{node}: {text}"
                    progress_text(unique_id, WARNING_PREFIX + text, level=logging.WARNING)


@public_name
class FluxDragNumericError(RuntimeError):
    """A latent or image turned NaN/Inf inside a method; the message names the step."""


def check_finite(x: torch.Tensor, node: str, step: str) -> torch.Tensor:
    """``x`` unchanged, or FluxDragNumericError naming ``step`` when it holds NaN or infinity (the
    one check every pipeline calls after each stage, so a broken step is reported there and never
    passed on as a black image)."""
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise FluxDragNumericError(
            f"{node}: the {step} produced {bad} NaN/Inf value(s) of {x.numel()} (shape "
            f"{tuple(x.shape)}); the model or its settings overflowed here. Try fp16→bf16/fp32 "
            f"weights or activations, fewer steps of this stage, or a smaller learning rate.")
    return x
