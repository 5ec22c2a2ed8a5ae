"""DragFlow (arXiv 2510.02253): region instructions → FireFlow inversion of the first
``steps − skip_steps`` steps with K/V capture (``attention_patches/kv_bank.py``) → latent
optimisation at σ₀ through differentiable FLUX blocks (``attention_patches/dragflow.py`` and
``autograd.py``) → the edit and the original branch sampled in lockstep, keeping the background.
The maths (affines, loss, background mask, optimisation loop, lockstep sampling) is in
``core/dragflow.py`` and ``core/affine.py``.

Wiring decision: the optimise node runs its own FireFlow inversion instead of consuming FluxDrag
Invert's record, so the schedule, the solver, the skipped steps and the K/V cache always belong
together and the cache is freed when the edit ends (also on error or interrupt).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..attention_patches.autograd import rope_autograd
from ..attention_patches.dragflow import DragFlowHooks, feature_maps
from ..attention_patches.kv_bank import DragFlowKVPlan, KVBank, KVCall, kv_call_options
from ..attention_patches.router import patch_model
from ..attention_patches.sampling import direct_sampler
from ..core.affine import Region, background_edit_mask, mask_centroid
from ..core.cache import TokenCache, format_bytes
from ..core.dragflow import (
    KV_PRESETS,
    feature_grid_hw,
    fill_from_surroundings,
    hole_start,
    kv_layers,
    mean_drag_distance,
    moved_start,
    optimise_latent,
    paired_fireflow,
    region_edit_mask,
    scale_level,
    vacated_mask,
)
from ..core.instructions import REGION_OPS, DragInstructions, RegionOp, parse_instructions, rescale
from .common import FluxDragInputError, check_latent, log, progress_text, require_flux, sampling_sigmas
from .inversion import run_inversion

NODE_REGION = "FluxDrag Region Instruction"
NODE_OPT = "FluxDrag Region Affine Optimise"
KV_CHOICES = [*KV_PRESETS, "custom"]
FEATURE_GRIDS = ["token", "image"]      # ours / the paper's
OPTIMIZERS = ["adam", "normalized", "sgd"]  # ours / ours / the paper's
KV_SCOPES = ["outside_edit", "all"]     # ours / the paper's
BACKGROUNDS = ["inversion", "resample"]  # ours / the paper's
HOLE_FILLS = ["surroundings", "none"]    # ours / the paper's
EDIT_REGIONS = ["regions", "rect"]       # ours / the paper's
INITS = ["moved", "source"]              # ours / the paper's
BEGIN_MARGIN_PX = 16  # [guess] how far outside its region a relocate/deform begin point may lie


# --------------------------------------------------------------------------------------------
# region instruction
# --------------------------------------------------------------------------------------------
def _single_mask(mask: torch.Tensor, node: str, name: str = "mask") -> torch.Tensor:
    m = mask
    if m.dim() == 3:
        if m.shape[0] != 1:
            raise FluxDragInputError(f"{node}: input '{name}' has a batch of {m.shape[0]} masks; "
                                     f"give one mask per region instruction.")
        m = m[0]
    if m.dim() != 2:
        raise FluxDragInputError(f"{node}: input '{name}' must be a MASK (H, W); got shape "
                                 f"{tuple(mask.shape)}.")
    return (m.detach().float().cpu() > 0.5)


def build_region(mask: torch.Tensor, op: str, begin: tuple, target: tuple,
                 anchor: tuple | None, node: str = NODE_REGION) -> RegionOp:
    """A validated RegionOp (pixel coordinates) from node inputs; errors name the input."""
    m = _single_mask(mask, node)
    H, W = m.shape
    if not bool(m.any()):
        raise FluxDragInputError(f"{node}: input 'mask' is empty (no pixel above 0.5); paint the "
                                 f"region to move in white.")
    if op not in REGION_OPS:
        raise FluxDragInputError(f"{node}: input 'op' {op!r} unknown; choose {', '.join(REGION_OPS)}.")
    for name, p in (("begin", begin), ("target", target)):
        if not all(math.isfinite(c) for c in p) or not (0 <= p[0] <= W and 0 <= p[1] <= H):
            raise FluxDragInputError(
                f"{node}: input '{name}_x/{name}_y' ({p[0]:g}, {p[1]:g}) lies outside the "
                f"{W}×{H} mask; use pixel coordinates of the image the mask belongs to.")
    if op == "rotate" and anchor is None:
        anchor = mask_centroid(m)
    if anchor is not None and not (0 <= anchor[0] <= W and 0 <= anchor[1] <= H):
        raise FluxDragInputError(
            f"{node}: input 'anchor_x/anchor_y' ({anchor[0]:g}, {anchor[1]:g}) lies outside the "
            f"{W}×{H} image; put the rotation pivot inside it (or -1, -1 for the region's centre).")
    if op in ("relocate", "deform"):
        if tuple(begin) == tuple(target):
            raise FluxDragInputError(f"{node}: inputs 'begin' and 'target' are the same point, so "
                                     f"the region would not move; move the target.")
        ys, xs = torch.nonzero(m, as_tuple=True)
        x0, x1 = float(xs.min()) - BEGIN_MARGIN_PX, float(xs.max()) + 1 + BEGIN_MARGIN_PX
        y0, y1 = float(ys.min()) - BEGIN_MARGIN_PX, float(ys.max()) + 1 + BEGIN_MARGIN_PX
        if not (x0 <= begin[0] <= x1 and y0 <= begin[1] <= y1):
            raise FluxDragInputError(
                f"{node}: input 'begin_x/begin_y' ({begin[0]:g}, {begin[1]:g}) does not touch the "
                f"region (its box is x {x0 + BEGIN_MARGIN_PX:g}–{x1 - BEGIN_MARGIN_PX:g}, y "
                f"{y0 + BEGIN_MARGIN_PX:g}–{y1 - BEGIN_MARGIN_PX:g}); put the begin point on the object.")
    try:
        Region(m, op, target=target, begin=begin, anchor=anchor)
    except ValueError as e:
        msg = str(e)
        if "rotation of 0" in msg or "coincides with the anchor" in msg:
            raise FluxDragInputError(f"{node}: inputs 'begin'/'target' give a rotation of 0 about the "
                                     f"anchor ({msg}); move the target around the anchor.") from None
        if "outside the image" in msg:
            raise FluxDragInputError(f"{node}: the region moved to 'target' would touch nothing of the "
                                     f"image ({msg}); pick a target inside the image.") from None
        raise FluxDragInputError(f"{node}: {msg}") from None
    return RegionOp(op, m, (float(begin[0]), float(begin[1])), (float(target[0]), float(target[1])),
                    None if anchor is None else (float(anchor[0]), float(anchor[1])))


def add_region(base: DragInstructions | None, region: RegionOp, node: str = NODE_REGION) -> DragInstructions:
    H, W = region.mask.shape
    if base is None:
        return DragInstructions((W, H), regions=[region])
    base = parse_instructions(base)
    if tuple(base.image_size) != (W, H):
        raise FluxDragInputError(
            f"{node}: input 'drag_instructions' was drawn on a {base.image_size[0]}×"
            f"{base.image_size[1]} image but 'mask' is {W}×{H}; use masks of the same image.")
    return DragInstructions(base.image_size, list(base.drags), base.mask,
                            list(base.regions) + [region], base.version)


# --------------------------------------------------------------------------------------------
# the edit
# --------------------------------------------------------------------------------------------
def regions_for_latent(drag_instructions, H: int, W: int, node: str = NODE_OPT) -> tuple:
    """(instructions at H×W, core Regions in pixels) or a clear error."""
    try:
        ins = parse_instructions(drag_instructions)
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input 'drag_instructions': {e}") from None
    if not ins.regions:
        raise FluxDragInputError(f"{node}: input 'drag_instructions' has no regions; build them "
                                 f"with {NODE_REGION}.")
    if tuple(ins.image_size) != (W, H):
        warnings.warn(f"input 'drag_instructions' was drawn on a {ins.image_size[0]}×{ins.image_size[1]} "
                      f"image but the latent is {W}×{H} px: regions rescaled proportionally; draw them "
                      f"on the image you edit to avoid this", stacklevel=2)
        ins = rescale(ins, (W, H))
    regions = []
    for k, r in enumerate(ins.regions):
        anchor = r.anchor if (r.anchor is not None or r.op != "rotate") else mask_centroid(r.mask)
        try:
            regions.append(Region(r.mask, r.op, target=r.target, begin=r.begin, anchor=anchor))
        except ValueError as e:
            raise FluxDragInputError(f"{node}: input 'drag_instructions' region {k}: {e}") from None
    return ins, regions


def with_adapter(source, target, adapter, node: str = NODE_OPT):
    """Source and target CONDITIONING with the adapter's tokens appended to each.

    If the adapter was made from the source or the target conditioning (e.g. ``StyleModelApply``
    on it: it appends image tokens after the text), only the tokens it added are appended;
    otherwise all its tokens are. Pooled outputs stay the prompts' own."""
    if adapter is None:
        return source, target
    if len(adapter) == 0:
        raise FluxDragInputError(f"{node}: input 'adapter' is an empty CONDITIONING.")
    a_ctx, a_opts = adapter[0][0], adapter[0][1]
    if a_opts.get("attention_mask") is not None:
        raise FluxDragInputError(f"{node}: input 'adapter' carries an attention mask (StyleModelApply "
                                 f"with strength_type attn_bias); use strength_type 'multiply'.")
    extra = a_ctx
    for base in (source, target):
        t = base[0][0]
        n = t.shape[1]
        if a_ctx.shape[1] > n and a_ctx.shape[-1] == t.shape[-1] and torch.equal(
                a_ctx[:, :n].to(t.device, t.dtype), t):
            extra = a_ctx[:, n:]
            break

    def add(cond):
        out = []
        for t, opts in cond:
            if extra.shape[-1] != t.shape[-1]:
                raise FluxDragInputError(f"{node}: input 'adapter' tokens are {extra.shape[-1]} wide "
                                         f"but the prompt's are {t.shape[-1]}; use a FLUX adapter.")
            e = extra.to(t.device, t.dtype)
            if e.shape[0] != t.shape[0]:
                e = e.expand(t.shape[0], -1, -1)
            out.append([torch.cat((t, e), dim=1), dict(opts)])
        return out

    return add(source), add(target)


def _guided(cond, guidance: float):
    import node_helpers

    return node_helpers.conditioning_set_values(cond, {"guidance": float(guidance)})


@dataclass
class EditSettings:
    """Optimisation settings (notes §2.2 defaults)."""

    n_transport: int = 50
    n_intensify: int = 20
    lr: float = 1000.0
    early_exit: bool = True
    use_grad_mask: bool = True
    mask_rule: str = "majority"
    weights: Optional[Sequence[float]] = None
    early_stop_tol: Optional[float] = None
    optimizer: str = "sgd"
    token_grid: bool = False
    hole: Optional[torch.Tensor] = None


@dataclass
class EditResult:
    z: torch.Tensor                  # edited latent at sigma 0 (model space)
    z_orig: torch.Tensor             # the original branch at sigma 0
    z_opt: torch.Tensor              # latent after the optimisation (at sigma_0)
    z_bg: torch.Tensor               # the original branch's half step: background while optimising
    losses: list
    seconds: dict
    peak_bytes: Optional[int]
    calls: dict


BRANCH_KEY = "fluxdrag_branch"


def branch_guider(model, conds: dict):
    """A ``CFGGuider`` that evaluates one of several conditionings at cfg 1: the one each call's
    ``model_options[BRANCH_KEY]`` names (default "drag"; see :func:`branch_velocity`)."""
    import comfy.samplers

    class BranchGuider(comfy.samplers.CFGGuider):
        def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006
            branch = model_options.get(BRANCH_KEY, "drag")
            return comfy.samplers.sampling_function(self.inner_model, x, timestep, None,
                                                    self.conds[branch], 1.0,
                                                    model_options=model_options, seed=seed)

    g = BranchGuider(model)
    g.inner_set_conds(conds)
    g.set_cfg(1.0)
    return g


def branch_velocity(guider, model_k, extra_args: dict) -> Callable:
    """v(branch, z, σ, kv=None) = (z − D_branch(z, σ))/σ over ComfyUI's denoiser (interruptible).
    The branch, and the K/V bank's mode and scope (``kv``), travel with the call in its own
    shallow copy of ``model_options``: nothing shared is switched between calls."""
    import comfy.model_management as mm

    def v(branch: str, z: torch.Tensor, sigma: float, kv: Optional[KVCall] = None) -> torch.Tensor:
        mm.throw_exception_if_processing_interrupted()
        mo = dict(extra_args.get("model_options") or {})
        mo[BRANCH_KEY] = branch
        if kv is not None:
            mo = kv_call_options(mo, kv.mode, kv.scope)
        den = model_k(z, z.new_ones([z.shape[0]]) * sigma, **{**extra_args, "model_options": mo})
        return (z - den) / sigma

    return v


def capture_source_kv(v: Callable, bank: Optional[KVBank], z_T: torch.Tensor, sigma0: float) -> None:
    """Step 1: K/V of the source prompt at the inversion's end point (z_T, σ₀), which FireFlow's
    inversion never evaluated; every later call of the edit injects."""
    if bank is not None and bank.block_types:
        v("source", z_T, sigma0, KVCall("capture"))


def optimise(v: Callable, hooks: DragFlowHooks, z_T: torch.Tensor, sigmas: list, regions: Sequence,
             M: torch.Tensor, feature_hw: tuple[int, int], settings: EditSettings,
             on_iteration: Optional[Callable[[dict], None]], seconds: dict,
             exact_background: bool = False, z_start: Optional[torch.Tensor] = None) -> tuple:
    """Step 2: F_orig = F(z_T); the original branch's half step z_bg; TRANSPORT + INTENSIFY by
    gradient descent on the latent with the hard background constraint (``core.dragflow``).
    Returns (OptimiseResult, v_orig(z_T, σ₀), z_bg). ``exact_background`` [ours]: z_bg = z_T
    itself (the inversion's latent at σ₀) and no original-branch forward (v_orig is None).
    ``z_start``: where the optimisation starts (default z_T)."""
    h, w = z_T.shape[-2] // 2, z_T.shape[-1] // 2
    order = tuple(hooks.feature_blocks)
    s0 = sigmas[0]

    def F(z: torch.Tensor, early_exit: bool) -> torch.Tensor:
        feats = hooks.features(lambda: v("drag", z, s0), h * w, early_exit)
        return feature_maps(feats, order, (h, w), None if settings.token_grid else feature_hw)

    t0 = time.perf_counter()
    with torch.inference_mode(False):
        z_T_n = z_T.clone()
        with torch.no_grad():
            F_orig = F(z_T_n, settings.early_exit)
            v_orig0 = None if exact_background else v("original", z_T_n, s0)
        z_bg = z_T_n if exact_background else z_T_n + ((sigmas[1] - s0) / 2.0) * v_orig0
        z_0 = z_T_n if z_start is None else z_start.to(z_T_n)
        seconds["prepare"] = seconds.pop("capture", 0.0) + time.perf_counter() - t0
        t1 = time.perf_counter()
        with torch.enable_grad():
            opt = optimise_latent(
                z_0, lambda z: F(z, settings.early_exit), F_orig, regions, z_bg, M,
                n_transport=settings.n_transport, n_intensify=settings.n_intensify,
                lr=settings.lr, callback=on_iteration, weights=settings.weights,
                use_grad_mask=settings.use_grad_mask, early_stop_tol=settings.early_stop_tol,
                mask_rule=settings.mask_rule, optimizer=settings.optimizer, hole=settings.hole)
        seconds["optimise"] = time.perf_counter() - t1
    return opt, v_orig0, z_bg


def sample_lockstep(v: Callable, z_opt: torch.Tensor, z_T: torch.Tensor, sigmas: list, M: torch.Tensor,
                    v_orig0: Optional[torch.Tensor], on_step: Optional[Callable[[dict], None]],
                    orig_path: Optional[Sequence[torch.Tensor]] = None, hold=None) -> tuple:
    """Step 3: the edit and the original branch sampled with FireFlow in lockstep, the background
    constraint after every step (``core.dragflow.paired_fireflow``); with ``orig_path`` the
    original branch is those latents (no forwards). Returns (z, z_orig)."""
    return paired_fireflow(lambda z, sg: v("drag", z, sg), lambda z, sg: v("original", z, sg),
                           z_opt.clone(), z_T, sigmas, M,
                           v_orig_init=None if v_orig0 is None else v_orig0.detach(),
                           callback=on_step, orig_path=orig_path, hold=hold)


def run_edit(model, hooks: DragFlowHooks, bank: Optional[KVBank], z_T: torch.Tensor,
             sigmas: torch.Tensor, conds: dict, regions: Sequence, edit_mask: torch.Tensor,
             feature_hw: tuple[int, int], settings: Optional[EditSettings] = None,
             on_iteration: Optional[Callable[[dict], None]] = None,
             on_step: Optional[Callable[[dict], None]] = None,
             kv_scope: Optional[torch.Tensor] = None,
             orig_path: Optional[Sequence[torch.Tensor]] = None,
             z_start: Optional[torch.Tensor] = None, hold=None) -> EditResult:
    """DragFlow's edit after inversion, on ``model`` (a clone with ``hooks`` installed and,
    when K/V injection is on, ``bank`` in its router), from the inverted latent ``z_T`` at
    ``sigmas[0]`` down ``sigmas`` (decreasing, ending at 0).

    ``conds``: {"drag": target prompt at the drag guidance, "original": target prompt at
    guidance 1 (the original branch), "source": source prompt at guidance 1 (K/V capture at the
    inversion's end point)} as ComfyUI CONDITIONING. ``regions``: ``core.affine.Region`` in
    image pixels; ``edit_mask``: M_bg on the latent grid (bool (h, w)); ``feature_hw``: the
    feature ("cut") grid. The three steps (:func:`capture_source_kv`, :func:`optimise`,
    :func:`sample_lockstep`) run on the denoiser of one ComfyUI guider run (a plain ``KSAMPLER``
    running this function: the model is loaded and the conditioning prepared once), inside a
    :func:`rope_autograd` block. ``kv_scope``: bool over the image tokens, the only ones whose
    K/V the bank replaces in the edited ("drag") branch [ours]; None = all (the paper). The
    original branch and the capture always use every token. ``orig_path`` [ours]: the original
    branch as given latents at every sigma (the inversion's trajectory): the background is held at
    them exactly and the original branch costs no forwards. ``z_start``: the optimisation's start
    (default z_T). Returns model-space latents and diagnostics."""
    settings = settings or EditSettings()
    guider = branch_guider(model, conds)
    seconds: dict = {}
    out: list = []

    def edit(model_k, x, sigmas_dev, extra_args):
        s = [float(c) for c in sigmas_dev.tolist()]
        v_all = branch_velocity(guider, model_k, extra_args)

        def v(branch: str, z: torch.Tensor, sigma: float, kv: Optional[KVCall] = None) -> torch.Tensor:
            if kv is None and bank is not None:
                kv = KVCall("inject", kv_scope if branch == "drag" else None)
            return v_all(branch, z, sigma, kv)

        t0 = time.perf_counter()
        capture_source_kv(v, bank, x, s[0])
        seconds["capture"] = time.perf_counter() - t0
        device = x.device
        M = edit_mask.to(device)
        peak = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        opt, v_orig0, z_bg = optimise(v, hooks, x, s, regions, M, feature_hw, settings, on_iteration,
                                      seconds, exact_background=orig_path is not None, z_start=z_start)
        if device.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(device))
        t2 = time.perf_counter()
        z_opt = opt.z.detach()
        z, z_o = sample_lockstep(v, z_opt, x, s, M, v_orig0, on_step, orig_path, hold)
        seconds["sample"] = time.perf_counter() - t2
        out.append(EditResult(z=z, z_orig=z_o, z_opt=z_opt, z_bg=z_bg.detach(), losses=opt.losses,
                              seconds=seconds, peak_bytes=peak, calls=dict(hooks.calls)))
        return z

    sampler, _ = direct_sampler(edit)
    with rope_autograd():
        guider.sample(z_T, torch.zeros_like(z_T), sampler, sigmas, disable_pbar=True, seed=0)
    return out[0]


def inversion_path(rec) -> list:
    """The inversion's own latents at each sampling sigma of ``rec`` (σ₀ … 0): z_T, the recorded
    trajectory in reverse, and the source latent at σ = 0 (model space)."""
    n = len(rec.sigmas) - 1
    traj = list(rec.trajectory)
    if len(traj) != n or rec.z_0 is None:
        raise RuntimeError(f"FluxDrag DragFlow: the inversion recorded {len(traj)} latents for {n} "
                           f"steps; use background 'resample'")
    path = [rec.z_T] + [traj[n - i - 1] for i in range(1, n)] + [rec.z_0]
    return [p.to(rec.z_T) for p in path]


def kv_scope_tokens(edit_mask: torch.Tensor, scope: str) -> Optional[torch.Tensor]:
    """Image tokens whose K/V the edited branch takes from the inversion (bool (h/2 · w/2,), FLUX's
    token order) for ``kv_scope``: "all" → None (every token, the paper); "outside_edit" [ours] →
    the tokens with no latent pixel in M_bg, the background the hard constraint keeps anyway.
    Inside M_bg — the regions, their destinations, the path between and the vacated area — the
    edited branch keeps its own K/V, so the source layout is never written over the destination."""
    if scope == "all":
        return None
    m = edit_mask.bool()
    h, w = m.shape[-2:]
    touched = m.reshape(h // 2, 2, w // 2, 2).any(3).any(1)
    return (~touched).reshape(-1)


def describe_peak(peak: Optional[int]) -> str:
    return "peak GPU memory n/a (CPU)" if peak is None else f"peak GPU memory {format_bytes(peak)}"


@dataclass
class DragFlowSettings:
    """The Region Affine Optimise node's settings, with its defaults (paper values noted there)."""

    steps: int = 25
    skip_steps: int = 6
    scheduler: str = "simple"
    guidance: float = 3.5
    n_transport: int = 0               # paper: 50 (init "moved" starts at the final pose)
    n_intensify: int = 20              # paper: 20
    lr: float = 1000.0
    adaptive_weights: bool = True
    scale_rule: str = "fixed"
    feature_scale: float = 0.0
    kv_preset: str = "non-ridge"
    kv_custom: str = ""
    eta: float = 0.0
    inject_text: bool = True
    early_exit: bool = True
    gradient_checkpointing: bool = True
    activations: str = "model"
    cache_policy: str = "cpu"
    cache_budget_gb: float = 0.0
    # departures from the paper (docs/dragflow.md), each with the paper's value one setting away
    feature_grid: str = "token"        # paper: "image" (2×2 token reading, image / level grid)
    optimizer: str = "adam"            # paper: "sgd" with lr
    adam_lr: float = 0.005             # Adam step, latent units per iteration
    kv_scope: str = "outside_edit"     # paper: "all" image tokens of the edited branch
    background: str = "inversion"      # paper: "resample" (the original branch at guidance 1)
    hole_fill: str = "surroundings"    # paper: "none"
    hole_release: float = 0.3          # σ below which the re-drawn hole is left to the sampler
    edit_region: str = "regions"       # paper: "rect" (min-area rectangle around each move)
    edit_dilate: int = 0               # latent cells around the regions ("regions" only)
    init: str = "moved"                # paper: "source" (the optimisation starts at z_T)


#: The paper's values of every departure above (docs/dragflow.md, "Departures from the paper").
PAPER = dict(n_transport=50, n_intensify=20, optimizer="sgd", lr=1000.0, feature_grid="image",
             kv_scope="all", background="resample", hole_fill="none", init="source",
             edit_region="rect")


def run_dragflow(model, latent: dict, source, target, drag_instructions,
                 settings: DragFlowSettings | None = None, adapter=None, unique_id=None,
                 node: str = NODE_OPT) -> tuple:
    """The whole edit; returns (model-space edited latent, instructions at the latent's size,
    latent-grid editable mask, EditResult)."""
    import comfy.utils

    st = settings or DragFlowSettings()
    steps, skip_steps, scheduler, guidance = st.steps, st.skip_steps, st.scheduler, st.guidance
    n_transport, n_intensify, lr = st.n_transport, st.n_intensify, st.lr
    kv_preset, kv_custom, eta, inject_text = st.kv_preset, st.kv_custom, st.eta, st.inject_text
    cache_policy, cache_budget_gb = st.cache_policy, st.cache_budget_gb
    dm = require_flux(model, node)
    samples = latent["samples"]
    check_latent(samples, node)
    if samples.shape[0] != 1:
        raise FluxDragInputError(f"{node}: input 'latent' has a batch of {samples.shape[0]}; "
                                 f"DragFlow edits one image at a time.")
    if not 0 <= skip_steps < steps:
        raise FluxDragInputError(f"{node}: input 'skip_steps' ({skip_steps}) must be smaller than "
                                 f"'steps' ({steps}).")
    if kv_preset not in KV_CHOICES:
        raise FluxDragInputError(f"{node}: input 'kv_preset' {kv_preset!r} unknown; choose "
                                 f"{', '.join(KV_CHOICES)}.")
    h, w = samples.shape[-2:]
    H, W = h * 8, w * 8
    ins, regions = regions_for_latent(drag_instructions, H, W, node)
    affines = [r.affine(1.0) for r in regions]
    if st.edit_region not in EDIT_REGIONS:
        raise FluxDragInputError(f"{node}: input 'edit_region' {st.edit_region!r} unknown; choose "
                                 f"{', '.join(EDIT_REGIONS)}.")
    if st.edit_region == "rect":
        edit_mask = background_edit_mask([r.mask for r in regions], affines, H, W, out_hw=(h, w))
    else:
        edit_mask = region_edit_mask([r.mask for r in regions], affines, (h, w), st.edit_dilate)
    if st.feature_scale > 0:
        level = float(st.feature_scale)
    else:
        level = scale_level((H, W), mean_drag_distance(regions, (H, W)),
                            use_adaptive=(st.scale_rule == "adaptive"))
    fhw = feature_grid_hw((H, W), level)
    if st.feature_grid not in FEATURE_GRIDS:
        raise FluxDragInputError(f"{node}: input 'feature_grid' {st.feature_grid!r} unknown; choose "
                                 f"{', '.join(FEATURE_GRIDS)}.")
    if st.optimizer not in OPTIMIZERS:
        raise FluxDragInputError(f"{node}: input 'optimizer' {st.optimizer!r} unknown; choose "
                                 f"{', '.join(OPTIMIZERS)}.")
    if st.kv_scope not in KV_SCOPES:
        raise FluxDragInputError(f"{node}: input 'kv_scope' {st.kv_scope!r} unknown; choose "
                                 f"{', '.join(KV_SCOPES)}.")
    for name, val, choices in (("background", st.background, BACKGROUNDS),
                               ("hole_fill", st.hole_fill, HOLE_FILLS), ("init", st.init, INITS)):
        if val not in choices:
            raise FluxDragInputError(f"{node}: input '{name}' {val!r} unknown; choose "
                                     f"{', '.join(choices)}.")
    token_grid = st.feature_grid == "token"
    if token_grid:
        fhw = (h // 2, w // 2)
    kv_scope = kv_scope_tokens(edit_mask, st.kv_scope)
    # None: optimise_latent's adaptive weights w_k ∝ clamp(1 + 0.5/(s_k + 0.1), 1, 5)
    weights = None if st.adaptive_weights else [1.0 / len(regions)] * len(regions)
    try:
        layers = kv_layers(kv_preset, len(dm.double_blocks), len(dm.single_blocks), kv_custom)
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input 'kv_custom': {e}") from None
    for note in layers.notes:
        log.info("[FluxDrag] DragFlow K/V layers: %s", note)

    src, tgt = with_adapter(source, target, adapter, node)

    def own_clone():
        """A clone of the input MODEL for this run (fp32 activations when asked). Every clone
        here is a direct child of ``model``: a chain of transient clones leaves ComfyUI a dead
        model entry (see ``router.patch_model``)."""
        c = model.clone()
        if st.activations == "fp32":
            c.set_model_compute_dtype(torch.float32)
        return c

    base = own_clone() if st.activations == "fp32" else model
    bank = plan = None
    if layers.count:
        bank = KVBank(layers, TokenCache(cache_policy), eta=eta, inject_text=inject_text)
        plan = DragFlowKVPlan(bank, n_txt=int(src[0][0].shape[1]))
    full = sampling_sigmas(model, scheduler, steps)
    rec = run_inversion(base, latent, src, steps=steps, solver="fireflow",
                        strength=(steps - skip_steps) / steps, scheduler=scheduler, guidance=1.0,
                        edit_map=plan, cache_policy=cache_policy, cache_budget_gb=cache_budget_gb,
                        node=node)
    try:
        if not torch.allclose(rec.sigmas, full[skip_steps:]):
            raise RuntimeError("FluxDrag DragFlow: inversion schedule does not match the skip")
        hooks = DragFlowHooks(dm, checkpointing=st.gradient_checkpointing)
        m = hooks.install(own_clone(), clone=False)
        if bank is not None:
            patch_model(m, bank, clone=False)
        conds = {"drag": _guided(tgt, guidance), "original": _guided(tgt, 1.0),
                 "source": _guided(src, 1.0)}
        n_iter = n_transport + n_intensify
        n_steps = len(rec.sigmas) - 1
        bar = comfy.utils.ProgressBar(n_iter + n_steps)

        def on_iteration(d):
            bar.update_absolute(d["i"] + 1, n_iter + n_steps)

        def on_step(d):
            bar.update_absolute(n_iter + d["i"] + 1, n_iter + n_steps)

        adam = st.optimizer != "sgd"
        settings = EditSettings(n_transport=n_transport, n_intensify=n_intensify,
                                lr=st.adam_lr if adam else lr, early_exit=st.early_exit,
                                weights=weights, optimizer=st.optimizer, token_grid=token_grid)
        orig_path = inversion_path(rec) if st.background == "inversion" else None
        z_start = hold = None
        if st.hole_fill == "surroundings":
            hole = vacated_mask(regions, (h, w))
            z_start = hole_start(rec.z_T, rec.z_0.to(rec.z_T), hole, float(rec.sigmas[0]))
            settings.hole = hole
            if not 0.0 <= st.hole_release <= 1.0:
                raise FluxDragInputError(f"{node}: input 'hole_release' ({st.hole_release}) must lie "
                                         f"in [0, 1]; 1 = never hold the hole while sampling.")
            if st.hole_release < 1.0 and bool(hole.any()):
                s0 = float(rec.sigmas[0])
                fill = z_start  # on the hole: (1 − σ₀)·fill + σ₀·ε
                x0f = fill_from_surroundings(rec.z_0.to(rec.z_T), hole)
                eps = (fill - (1 - s0) * x0f) / s0
                hold = (hole, lambda sg: (1 - sg) * x0f + sg * eps, float(st.hole_release))
        if st.init == "moved":
            z_start = moved_start(rec.z_T if z_start is None else z_start, rec.z_T, regions)
        res: EditResult = run_edit(m, hooks, bank, rec.z_T, rec.sigmas, conds, regions, edit_mask,
                                   fhw, settings, on_iteration, on_step, kv_scope=kv_scope,
                                   orig_path=orig_path, z_start=z_start, hold=hold)
    finally:
        rec.free_caches()
    loss_txt = (f"loss {res.losses[0]:.4g} → {res.losses[-1]:.4g}" if res.losses else "no iterations")
    progress_text(unique_id, f"{n_iter} iterations, {loss_txt}, {describe_peak(res.peak_bytes)}, "
                          f"optimise {res.seconds.get('optimise', 0):.1f}s, feature grid {fhw[1]}×{fhw[0]}", "DragFlow")
    return res.z, ins, edit_mask, res
