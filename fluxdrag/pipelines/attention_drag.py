"""AttentionDrag: one-step attention-guided drag on SD1.x (DDIM, as in the paper) and FLUX.

Pipeline (both families): invert the source latent to the level ``strength`` of a ``steps``
schedule, read one self-attention layer's attention to the handles on the inversion's call at that
level (one extra model call when the inversion made none there), move the latent once
(``core/attention_drag_move.py``), denoise back. SD1.x: our DDIM (``core/ddim.py``) through
ComfyUI's guider; FLUX: ``run_inversion`` / ``run_sampling``. Method and departures: docs/attentiondrag.md.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from typing import ClassVar, NamedTuple, Optional

import torch

from ..attention_patches.attention_drag import (
    AttentionCapture,
    BackgroundLock,
    Capture,
    LayerRef,
    ddim_eps_function,
    default_flux_layer,
    default_unet_layer,
    flux_trajectory,
    unet_attention_layers,
)
from ..attention_patches.router import patch_model
from ..attention_patches.sampling import direct_sampler
from ..core import solvers
from ..core.attention_drag_move import (
    LATENT_PX,
    MovePlan,
    MoveResult,
    apply_move,
    attention_preview,
    clamp_cells,
    pixels_to_cells,
    plan_move,
    upsample_maps,
)
from ..core.ddim import DDIMSchedule, alphas_from_sigmas, ddim_invert, ddim_sample, ddim_schedule, inversion_labels
from ..core.drag_sets import hold_anchors, split_drags
from ..core.instructions import Drag, DragInstructions, parse_instructions, rescale
from .common import (
    FluxDragInputError,
    check_batch,
    check_finite,
    check_latent,
    guider,
    image_at,
    sampling_sigmas,
)
from .inversion import SCHEDULERS, InversionSettings, run_inversion, run_sampling
from .settings import SILENT, check_choice, departures, setting, validate

NODE = "FluxDrag AttentionDrag"
ANCHOR_HOLD_PX = 8  # [guess] latent cells within this many pixels of an anchor keep their content
MASK_SOURCES = ("auto", "attention", "instructions", "both")
EPS_AT = ("next", "current")
NORMALISE = ("threshold", "max")
FUSE = ("mean", "sum")
TAU_RELATIVE_TO = ("mean", "zscore")
_LAYER_RE = re.compile(r"^\(?\s*['\"]?(input|middle|output|single|double)['\"]?\s*[.,_ ]\s*(\d+)"
                       r"(?:\s*[.,_ ]\s*(\d+))?\s*\)?$")


@dataclass
class AttentionDragSettings:
    """The AttentionDrag node's inputs, the only place their defaults live (the main node shows
    steps, strength, layer and tau; the rest is on FluxDrag AttentionDrag Options)."""

    METHOD: ClassVar[str] = "AttentionDrag"

    steps: int = setting(28, "Steps of the full schedule (SD1.5 drag papers: 50 DDIM steps; FLUX: 28).",
                         min=1, max=1000, main=True)
    # [guess] DragDiffusion/FastDrag invert 35 of 50 DDIM steps
    strength: float = setting(0.7, "How far to invert before the move: the edit runs the last "
                                   "round(strength·steps) steps (0.7 = 35 of 50, DragDiffusion/FastDrag).",
                              min=0.01, max=1.0, step=0.01, main=True, paper=SILENT)
    layer: str = setting("auto", "Self-attention layer whose map guides the move. FLUX: 'single.N' or "
                                 "'double.N' (auto: the middle single block). SD1.x: ComfyUI's UNet block "
                                 "'output.N', 'input.N', 'middle.0' (auto: first output block at half "
                                 "resolution, output.6 on SD1.5).", main=True, paper=SILENT)
    # paper's τ, relative to the mean attention [guess: "mean"]
    tau: float = setting(2.0, "Automatic mask: cells whose attention exceeds tau × the mean attention "
                              "(paper's τ = 2.0).", min=0.0, max=100.0, step=0.1, main=True)
    direction: str = setting("query", "query: where the handle looks, softmax_j(q_h·k_j) (the paper's "
                                      "A_t(h, j)); key: which cells look at the handle.",
                             options=("query", "key"))
    # the instructions' mask when there is one, else the automatic mask
    mask_source: str = setting("auto", "auto: the drag instructions' mask when it has one, else the "
                                       "automatic mask; attention: always the automatic mask (paper); "
                                       "instructions: the instructions' mask; both: automatic mask inside it.",
                               options=MASK_SOURCES, paper="attention")
    dilate: int = setting(0, "Grow the mask by this many latent cells (8 px each).", min=0, max=16)
    rigid: bool = setting(False, "Move every masked cell by the full drag instead of weighting the movement "
                                 "by attention.")
    fill_with_attention: bool = setting(True, "Fill the vacated area with attention-weighted content (paper); "
                                              "off: leave it as inverted.")
    cfg: float = setting(1.0, "Classifier-free guidance while denoising (needs 'negative' when not 1). FLUX "
                              "dev: 1; guidance comes from FluxGuidance.", min=0.0, max=30.0, step=0.1)
    solver: str = setting("uni_inv", "FLUX only: inversion solver (uni_inv reads the attention at no extra "
                                     "cost). SD1.x always uses DDIM.", options=solvers.SOLVERS, paper=SILENT)
    scheduler: str = setting("simple", "FLUX only: sigma schedule. SD1.x uses DDIM's uniform timesteps.",
                             options=SCHEDULERS)
    inversion_guidance: float = setting(1.0, "FLUX only: distilled guidance during inversion (papers use 1).",
                                        min=0.0, max=100.0, step=0.1)
    eps_at: str = setting("next", "SD1.x only: the timestep DDIM inversion evaluates the noise at (next: "
                                  "the usual DDIM inversion; current: the step's own).",
                          options=EPS_AT, paper=SILENT)
    # [ours] each a departure from the paper (docs/attentiondrag.md); PAPER collects the paper's reading
    normalise: str = setting("threshold", "Movement weights: threshold = min(1, A / (τ·mean A)), every "
                                          "automatically masked cell moves by the full drag (ours); max = "
                                          "A / max A (the paper's wording; tears objects apart).",
                             options=NORMALISE, paper="max")
    fuse: str = setting("mean", "Several drags on one cell: weighted mean (ours) or sum (the paper's wording).",
                        options=FUSE, paper="sum")
    background_lock: float = setting(1.0, "Fraction of steps keeping the cells the move did not touch on the "
                                          "inversion's path (ours; 0 = the paper).", min=0.0, max=1.0,
                                     step=0.05, paper=0.0)
    tau_relative_to: str = setting("mean", "Automatic mask threshold: τ·mean attention [guess], or zscore: "
                                           "mean + τ·std (ours).", options=TAU_RELATIVE_TO, paper=SILENT)
    content_lock: float = setting(0.75, "Fraction of steps the moved cells follow the same move applied to "
                                        "the inversion's latent (ours; 0 = the paper).", min=0.0, max=1.0,
                                  step=0.05, paper=0.0)
    split_mask: bool = setting(True, "A drawn mask's connected parts go to the drags whose handles lie in "
                                     "them (ours); off: one region for every drag.", paper=False)


#: the paper's reading of every setting where ours departs (docs/attentiondrag.md): the automatic
#: mask (so no drawn mask to split), weights A / max A, drags summed, no background or content lock
PAPER = departures(AttentionDragSettings)


@dataclass(kw_only=True)
class AttentionDragOutcome:
    """Everything an edit produced (model space unless noted)."""

    family: str                     # "flux" | "sd1"
    latent: torch.Tensor            # edited, model space (B, C, h, w)
    z_start: torch.Tensor           # inverted latent before the move (DDIM space for SD)
    z_moved: torch.Tensor           # after the move, before denoising
    plans: list                     # MovePlan per batch row
    moves: list                     # MoveResult per batch row
    capture: Capture
    layer: LayerRef
    model_calls: int               # denoiser evaluations (a cond+uncond batch counts once)
    extra_capture_call: bool
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def model_family(model, node: str = NODE) -> str:
    """"flux" or "sd1", else a clear error naming the input."""
    import comfy.ldm.flux.model
    import comfy.model_base
    import comfy.supported_models

    dm = model.get_model_object("diffusion_model")
    if isinstance(dm, comfy.ldm.flux.model.Flux):
        return "flux"
    cfg = getattr(model.model, "model_config", None)
    if isinstance(cfg, comfy.supported_models.SD15) and \
            getattr(model.model, "model_type", None) == comfy.model_base.ModelType.EPS:
        return "sd1"
    family = type(cfg).__name__ if cfg is not None else type(model.model).__name__
    raise FluxDragInputError(
        f"{node}: input 'model' is a {family} model ({type(dm).__name__}); AttentionDrag runs on "
        f"FLUX.1 models (UNETLoader: dev/schnell/Krea/Kontext) and SD1.x models "
        f"(CheckpointLoaderSimple, e.g. v1-5-pruned-emaonly). Connect one of those.")


def parse_layer(text: str, family: str, dm, node: str = NODE) -> LayerRef:
    """The layer named by the node's ``layer`` input ("auto", "output.6", "single.19", …)."""
    t = (text or "auto").strip().lower()
    if t in ("", "auto"):
        return default_flux_layer(dm) if family == "flux" else default_unet_layer(dm)
    m = _LAYER_RE.match(t)
    if family == "flux":
        n_single, n_double = len(dm.single_blocks), len(dm.double_blocks)
        hint = f"'single.N' (0…{n_single - 1}) or 'double.N' (0…{n_double - 1}), or 'auto'"
        if not m or m.group(1) not in ("single", "double") or m.group(3) is not None:
            raise FluxDragInputError(f"{node}: input 'layer' {text!r} is not a FLUX block; use {hint}.")
        i, n = int(m.group(2)), (n_single if m.group(1) == "single" else n_double)
        if i >= n:
            raise FluxDragInputError(f"{node}: input 'layer' {text!r} is out of range; use {hint}.")
        return LayerRef(m.group(1), i)
    layers = unet_attention_layers(dm)
    names = ", ".join(f"{k}.{i}" for k, i in layers)
    if not m or m.group(1) not in ("input", "middle", "output") or (m.group(1), int(m.group(2))) not in layers:
        raise FluxDragInputError(f"{node}: input 'layer' {text!r} is not an attention block of this "
                                 f"UNet; use 'auto' or one of: {names}.")
    return LayerRef(m.group(1), int(m.group(2)), int(m.group(3) or 0))


class DragsRead(NamedTuple):
    """Moving drags (pixels, the latent's frame), the editable mask, and the anchors (points)."""

    handles: list
    targets: list
    mask: Optional[torch.Tensor]
    anchors: list


def read_drags(drag_instructions, image_hw_px: tuple, node: str = NODE) -> DragsRead:
    """Moving handles/targets, mask (or None) and anchors in the latent's pixel frame (rescaled
    with a warning when drawn on an image of another size). Anchors (handle = target) and drags
    shorter than half a latent cell (kept as anchors, with a warning) hold their content."""
    try:
        ins = parse_instructions(drag_instructions)
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input 'drag_instructions': {e}") from None
    H, W = int(image_hw_px[0]), int(image_hw_px[1])
    if not ins.drags:
        raise FluxDragInputError(f"{node}: input 'drag_instructions' has no drags (only regions); "
                                 f"AttentionDrag needs handle→target drags.")
    if tuple(ins.image_size) != (W, H):
        warnings.warn(f"{node}: drags drawn on a {ins.image_size[0]}x{ins.image_size[1]} image, the "
                      f"latent is {W}x{H}; rescaling them proportionally", stacklevel=2)
        ins = rescale(ins, (W, H))
    rigid = [i for i, d in enumerate(ins.drags) if d.angle % 360 != 0 or tuple(d.scale) != (1.0, 1.0)]
    for i, d in enumerate(ins.drags):
        if d.handle == d.target and d.mode == "move":
            raise FluxDragInputError(
                f"{node}: input 'drag_instructions' drag {i} has zero length (handle and target both at "
                f"({d.handle[0]:g}, {d.handle[1]:g})); AttentionDrag moves content, so move the target "
                f"away from the handle (scaling in place is not supported).")
    if rigid:
        warnings.warn(f"{node}: drag(s) {', '.join(map(str, rigid))} carry a rotation or scale "
                      f"('angle'/'scale' of a move); AttentionDrag only translates content, so they are "
                      f"ignored. Use LazyDrag for rotations and scaling.", stacklevel=2)
        ins = DragInstructions(ins.image_size, [Drag(d.handle, d.target, "drag") for d in ins.drags],
                               ins.mask, [], ins.version)
    try:
        split = split_drags(ins, LATENT_PX / 2, node, f"half a latent cell of {LATENT_PX} px",
                            stacklevel=3)
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input 'drag_instructions': {e}") from None
    moving = split.moving_drags
    return DragsRead([tuple(d.handle) for d in moving], [tuple(d.target) for d in moving], ins.mask,
                     [tuple(p) for p in split.anchor_points])


def latent_mask(mask_px: torch.Tensor, latent_hw: tuple) -> torch.Tensor:
    """A pixel mask (H, W) reduced to latent cells: a cell is in when any of its pixels is [guess]."""
    h, w = latent_hw
    m = mask_px.float()[None, None]
    m = torch.nn.functional.interpolate(m, size=(h * LATENT_PX, w * LATENT_PX), mode="nearest")
    return torch.nn.functional.max_pool2d(m, LATENT_PX)[0, 0] > 0


# --------------------------------------------------------------------------------------------
# the move (shared)
# --------------------------------------------------------------------------------------------
def _move(z: torch.Tensor, cap: Capture, handles_px, targets_px, *, mask: Optional[torch.Tensor],
          s: AttentionDragSettings) -> tuple:
    h, w = z.shape[-2:]
    hc = clamp_cells(pixels_to_cells(handles_px), (h, w))
    tc = pixels_to_cells(targets_px)
    mask_mode = "replace" if s.mask_source == "instructions" else "intersect"
    plans, moves, rows = [], [], []
    for r in range(z.shape[0]):
        maps = cap.maps[min(r, cap.maps.shape[0] - 1)]
        attn = upsample_maps(maps, (h, w)).to(z.device)
        plan: MovePlan = plan_move(attn, hc, tc, tau=s.tau, dilate=s.dilate, rigid=s.rigid,
                                   mask=mask if s.mask_source != "attention" else None, mask_mode=mask_mode,
                                   normalise=s.normalise, fuse=s.fuse, relative_to=s.tau_relative_to,
                                   split=s.split_mask)
        res: MoveResult = apply_move(z[r:r + 1], plan, fill_with_attention=s.fill_with_attention)
        plans.append(plan)
        moves.append(res)
        rows.append(res.latent)
    return torch.cat(rows, dim=0), plans, moves


def _lock(plans: list, moves: list, trajectory: dict, n_steps: int,
          s: AttentionDragSettings) -> Optional[BackgroundLock]:
    """The background / content lock for ``s.background_lock`` / ``s.content_lock`` of ``n_steps``
    (None when both are off)."""
    steps = int(round(s.background_lock * n_steps))
    content = int(round(s.content_lock * n_steps))
    if steps <= 0 and content <= 0:
        return None
    keep = torch.stack([~m.changed_region for m in moves])[:, None]
    written = torch.stack([m.written for m in moves])[:, None]

    def move(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([apply_move(z[r:r + 1], plans[r], fill_with_attention=s.fill_with_attention).latent
                          for r in range(z.shape[0])])

    return BackgroundLock(keep, trajectory, steps, written=written, move=move, content_steps=content)


def resolve_mask_source(s: AttentionDragSettings, mask_px, node: str = NODE) -> AttentionDragSettings:
    """``auto`` → ``instructions`` when the drag instructions carry an editable mask (a region the
    user drew is respected), else ``attention`` (the paper's automatic mask); measurements:
    ``docs/attentiondrag.md``."""
    check_choice(node, "mask_source", s.mask_source, MASK_SOURCES)
    if s.mask_source != "auto":
        return s
    return replace(s, mask_source="instructions" if mask_px is not None else "attention")


def _mask_for(mask_px, latent_hw, s: AttentionDragSettings, node: str) -> tuple:
    """(settings with ``mask_source`` resolved, latent-grid mask or None for the automatic one)."""
    s = resolve_mask_source(s, mask_px, node)
    if s.mask_source == "attention":
        return s, None
    if mask_px is None:
        raise FluxDragInputError(
            f"{node}: input 'mask_source' is {s.mask_source!r} but input 'drag_instructions' has no "
            f"mask; draw an editable region or set mask_source to 'attention'.")
    return s, latent_mask(mask_px, latent_hw)


# --------------------------------------------------------------------------------------------
# SD1.x: DDIM inversion → capture → move → DDIM sampling
# --------------------------------------------------------------------------------------------
def sd_schedule(model, s: AttentionDragSettings) -> DDIMSchedule:
    ms = model.get_model_object("model_sampling")
    return ddim_schedule(alphas_from_sigmas(ms.sigmas.detach().cpu()), s.steps).tail(s.strength)


def sd_invert(model, samples: torch.Tensor, positive, sched: DDIMSchedule, ctrl: AttentionCapture, *,
              eps_at: str = "next", tick=None, trajectory: Optional[dict] = None) -> tuple:
    """DDIM-invert ``samples`` (a LATENT's samples) to ``sched.timesteps[0]`` on a clone of ``model``
    carrying ``ctrl``; ``ctrl`` reads the attention on the call labelled with that timestep (the
    last inversion call for eps_at "next", else one extra call on the inverted latent).
    Returns (DDIM-space latent, model-space source latent, whether the extra call was made);
    ``trajectory`` (a dict) receives ᾱ → DDIM-space latent of every level reached (ᾱ = 1: the source)."""
    ms = model.get_model_object("model_sampling")
    table = ms.sigmas.detach().cpu()
    labels = inversion_labels(sched, eps_at)
    t_top = sched.timesteps[0]
    patched = patch_model(model, ctrl)
    extra = {"used": False}

    def after(_t):
        ctrl.armed = False
        if tick is not None:
            tick()

    def inv_fn(model_k, x, _sigmas, extra_args):
        count = {"i": 0}

        def arm(t):  # the last inversion call, if it is labelled with the top timestep
            count["i"] += 1
            ctrl.armed = count["i"] == len(labels) and t == t_top

        eps = ddim_eps_function(model_k, extra_args, table, before_call=arm, after_call=after)
        if trajectory is not None:
            trajectory[sched.alphas[-1]] = x.detach()
        record = None if trajectory is None else (lambda d: trajectory.__setitem__(d["alpha"], d["x"].detach()))
        x_top = ddim_invert(eps, x, sched, eps_at=eps_at, callback=record)
        if ctrl.capture is None:  # no inversion call at the top level: read it there once
            extra["used"] = True
            probe = ddim_eps_function(model_k, extra_args, table,
                                      before_call=lambda t: setattr(ctrl, "armed", True), after_call=after)
            probe(x_top, t_top)
        return x_top

    z0 = model.model.process_latent_in(samples.float())
    inv, inv_run = direct_sampler(inv_fn)
    sigmas = torch.tensor([0.0] + [float(table[t]) for t in labels])
    guider(patched, positive).sample(z0, torch.zeros_like(samples), inv, sigmas, disable_pbar=True, seed=0)
    return inv_run.latent.detach(), z0, extra["used"]


def sd_denoise(model, z: torch.Tensor, positive, sched: DDIMSchedule, *, negative=None, cfg: float = 1.0,
               tick=None, lock: Optional[BackgroundLock] = None) -> torch.Tensor:
    """DDIM-denoise the DDIM-space latent ``z`` (at ``sched.timesteps[0]``) to a model-space latent
    (``lock``: keyed by ᾱ, see :func:`sd_invert`)."""
    table = model.get_model_object("model_sampling").sigmas.detach().cpu()

    def samp_fn(model_k, x, _sigmas, extra_args):
        eps = ddim_eps_function(model_k, extra_args, table, after_call=(lambda t: tick()) if tick else None)
        cb = None if lock is None else (lambda d: lock.lock(d["i"], d["alpha"], d["x"]))
        return ddim_sample(eps, x, sched, callback=cb)

    samp, samp_run = direct_sampler(samp_fn)
    sigmas = torch.tensor([float(table[t]) for t in sched.timesteps] + [0.0])
    guider(model, positive, negative, cfg).sample(z, torch.zeros_like(z), samp, sigmas, disable_pbar=True, seed=0)
    return samp_run.latent.detach()


def run_sd(model, latent: dict, drags, positive, negative=None, s: AttentionDragSettings | None = None,
           keep_qk: bool = False, node: str = NODE) -> AttentionDragOutcome:
    import comfy.utils

    s = s or AttentionDragSettings()
    handles, targets, mask_px, anchors = drags
    samples = latent["samples"]
    b, _, h, w = samples.shape
    layer = parse_layer(s.layer, "sd1", model.get_model_object("diffusion_model"), node)
    s, mask = _mask_for(mask_px, (h, w), s, node)
    check_choice(node, "eps_at", s.eps_at, EPS_AT)
    sched = sd_schedule(model, s)
    labels = inversion_labels(sched, s.eps_at)
    bar = comfy.utils.ProgressBar(len(labels) + sched.steps + (0 if labels[-1] == sched.timesteps[0] else 1))
    calls = {"n": 0}

    def tick():
        calls["n"] += 1
        bar.update(1)

    ctrl = AttentionCapture(layer, handles, (h, w), batch=b, direction=s.direction, keep_qk=keep_qk)
    traj: dict = {}
    z_top, z0, used_extra = sd_invert(model, samples, positive, sched, ctrl, eps_at=s.eps_at, tick=tick,
                                      trajectory=traj)
    check_finite(z_top, node, "DDIM inversion")
    if ctrl.capture is None:
        raise RuntimeError(f"{node}: the attention of layer {layer} was never read; is it a self-attention "
                           f"block of this UNet?")
    z_moved, plans, moves = _move(z_top, ctrl.capture, handles, targets, mask=mask, s=s)
    z_moved = check_finite(hold_anchors(z_moved, z_top, anchors, ANCHOR_HOLD_PX), node, "attention move")
    out = check_finite(sd_denoise(model, z_moved, positive, sched, negative=negative, cfg=s.cfg, tick=tick,
                                  lock=_lock(plans, moves, traj, sched.steps, s)), node, "DDIM sampling")
    return AttentionDragOutcome(
        family="sd1", latent=out, z_start=z_top, z_moved=z_moved, plans=plans, moves=moves,
        capture=ctrl.capture, layer=layer, model_calls=calls["n"], extra_capture_call=used_extra,
        info={"schedule": sched, "inversion_labels": labels, "z_0": z0})


# --------------------------------------------------------------------------------------------
# FLUX: run_inversion → capture → move → run_sampling
# --------------------------------------------------------------------------------------------
def run_flux(model, latent: dict, drags, positive, negative=None, s: AttentionDragSettings | None = None,
             keep_qk: bool = False, node: str = NODE) -> AttentionDragOutcome:
    import node_helpers

    s = s or AttentionDragSettings()
    handles, targets, mask_px, anchors = drags
    samples = latent["samples"]
    check_latent(samples, node)
    b, _, h, w = samples.shape
    dm = model.get_model_object("diffusion_model")
    layer = parse_layer(s.layer, "flux", dm, node)
    s, mask = _mask_for(mask_px, (h, w), s, node)
    check_choice(node, "solver", s.solver, solvers.SOLVERS)
    sig = solvers.strength_slice(sampling_sigmas(model, s.scheduler, s.steps), s.strength)
    sigma_top = float(sig[0])
    ctrl = AttentionCapture(layer, handles, (h, w), batch=b, direction=s.direction, sigma=sigma_top,
                            keep_qk=keep_qk)
    patched = patch_model(model, ctrl)
    inv = InversionSettings(steps=s.steps, solver=s.solver, strength=s.strength, scheduler=s.scheduler,
                            guidance=s.inversion_guidance)
    rec = run_inversion(patched, latent, positive, inv, node=node)
    calls = solvers.model_calls(s.solver, len(rec.sigmas) - 1)
    used_extra = ctrl.capture is None
    if used_extra:  # the solver never evaluated at the top sigma: one call there, on z_T
        cond = node_helpers.conditioning_set_values(positive, {"guidance": s.inversion_guidance})

        def probe(model_k, x, _sigmas, extra_args):
            import comfy.model_management

            comfy.model_management.throw_exception_if_processing_interrupted()
            model_k(x, x.new_ones([x.shape[0]]) * sigma_top, **extra_args)
            return x

        k, _ = direct_sampler(probe)
        guider(patched, cond).sample(rec.z_T, torch.zeros_like(samples), k, sig.flip(0)[-2:],
                                      disable_pbar=True, seed=0)
        calls += 1
    if ctrl.capture is None:
        raise RuntimeError(f"{node}: the attention of layer {layer} was never read.")
    z_moved, plans, moves = _move(rec.z_T.detach(), ctrl.capture, handles, targets, mask=mask, s=s)
    z_moved = check_finite(hold_anchors(z_moved, rec.z_T.detach(), anchors, ANCHOR_HOLD_PX), node,
                           "attention move")
    lock = _lock(plans, moves, flux_trajectory(rec.sigmas, rec.trajectory, rec.z_0), len(rec.sigmas) - 1, s)
    out = run_sampling(model if lock is None else patch_model(model, lock), rec, positive, start=z_moved,
                       solver="auto", cfg=s.cfg, negative=negative, node=node)
    calls += solvers.model_calls(rec.sample_solver, len(rec.sigmas) - 1)
    return AttentionDragOutcome(
        family="flux", latent=out.detach(), z_start=rec.z_T.detach(), z_moved=z_moved, plans=plans, moves=moves,
        capture=ctrl.capture, layer=layer, model_calls=calls, extra_capture_call=used_extra,
        info={"record": rec, "sigmas": rec.sigmas, "z_0": rec.z_0})


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------
def run_attention_drag(model, latent: dict, drag_instructions, positive,
                       settings: AttentionDragSettings | None = None, *, negative=None,
                       keep_qk: bool = False, node: str = NODE) -> AttentionDragOutcome:
    """One AttentionDrag edit on a FLUX or SD1.x MODEL (the MODEL itself is never modified)."""
    s = settings or AttentionDragSettings()
    family = model_family(model, node)
    samples = latent["samples"]
    if samples.ndim != 4:
        raise FluxDragInputError(f"{node}: input 'latent' must be an image latent (B,C,H,W); got shape "
                                 f"{tuple(samples.shape)}.")
    want = int(model.model.latent_format.latent_channels)
    if samples.shape[1] != want:
        raise FluxDragInputError(
            f"{node}: input 'latent' has {samples.shape[1]} channels but this {family} model expects {want}; "
            f"encode the image with this model's VAE.")
    check_batch(samples, positive, node)
    if negative is not None:
        check_batch(samples, negative, node, "negative")
    if abs(s.cfg - 1.0) > 1e-9 and negative is None:
        raise FluxDragInputError(f"{node}: cfg {s.cfg} needs input 'negative'; connect one or set cfg 1.")
    validate(s, node)
    drags = read_drags(drag_instructions, (samples.shape[-2] * LATENT_PX, samples.shape[-1] * LATENT_PX), node)
    run = run_flux if family == "flux" else run_sd
    with torch.no_grad():
        return run(model, latent, drags, positive, negative=negative, s=s, keep_qk=keep_qk, node=node)


def outcome_preview(outcome: AttentionDragOutcome, image: Optional[torch.Tensor] = None) -> torch.Tensor:
    """IMAGE (B, H, W, 3): attention map, mask outline and drags per batch row."""
    h, w = outcome.z_moved.shape[-2:]
    H, W = h * LATENT_PX, w * LATENT_PX
    out = []
    for r, plan in enumerate(outcome.plans):
        img = None if image is None else image_at(image[min(r, image.shape[0] - 1)], H, W)
        out.append(attention_preview(plan, (H, W), img))
    return torch.stack(out)
