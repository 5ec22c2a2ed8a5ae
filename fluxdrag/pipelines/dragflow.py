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

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..attention_patches.autograd import rope_autograd
from ..attention_patches.dragflow import DragFlowHooks, feature_maps
from ..attention_patches.kv_bank import DragFlowKVPlan, KVBank, KVCall, kv_call_options
from ..attention_patches.router import patch_model
from ..attention_patches.sampling import direct_sampler
from ..core.cache import TokenCache, format_bytes
from ..core.dragflow import (
    destination_mask,
    fill_from_surroundings,
    hole_start,
    moved_start,
    optimise_latent,
    paired_fireflow,
    vacated_mask,
)
from ..core.dragflow_layers import kv_layers
from ..core.dragflow_plan import DragFlowPlan
from ..core.dragflow_proposal import carried_proposal, hole_filled, revealed_cells
from .common import FluxDragInputError, check_finite, log, progress_text, require_flux, sampling_sigmas
from .dragflow_inputs import (  # noqa: F401  (build_region, add_region, PAPER: re-exported)
    NODE_OPT,
    NODE_REGION,
    PAPER,
    DragFlowSettings,
    add_region,
    build_region,
    plan_edit,
    with_adapter,
)
from .inversion import InversionSettings, run_inversion


def _guided(cond, guidance: float):
    import node_helpers

    return node_helpers.conditioning_set_values(cond, {"guidance": float(guidance)})


@dataclass
class EditSettings:
    """What the optimisation needs: fields of :class:`DragFlowSettings` (n_transport, n_intensify,
    the optimizer and its step, early_exit, target_warp) and of the plan (token_grid, weights, hole), no
    defaults of their own; the rest are ``core.dragflow.optimise_latent``'s [guess] choices."""

    n_transport: int
    n_intensify: int
    lr: float
    optimizer: str
    early_exit: bool
    token_grid: bool
    weights: Optional[Sequence[float]] = None
    hole: Optional[torch.Tensor] = None
    use_grad_mask: bool = True
    mask_rule: str = "majority"
    early_stop_tol: Optional[float] = None
    target_warp: str = "bilinear"


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
            return comfy.samplers.sampling_function(self.inner_model, x, timestep, uncond=None,
                                                    cond=self.conds[branch], cond_scale=1.0,
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


def optimise(v: Callable, hooks: DragFlowHooks, z_T: torch.Tensor, sigmas: list, *, regions: Sequence,
             M: torch.Tensor, feature_hw: tuple[int, int], settings: EditSettings,
             on_iteration: Optional[Callable[[dict], None]], seconds: dict,
             exact_background: bool = False, z_start: Optional[torch.Tensor] = None,
             z_bg_exact: Optional[torch.Tensor] = None) -> tuple:
    """Step 2: F_orig = F(z_T); the original branch's half step z_bg; TRANSPORT + INTENSIFY by
    gradient descent on the latent with the hard background constraint (``core.dragflow``).
    Returns (core.dragflow.LatentOptimisation, v_orig(z_T, σ₀), z_bg). ``exact_background`` [ours]: z_bg = z_T
    itself (the inversion's latent at σ₀) and no original-branch forward (v_orig is None);
    ``z_bg_exact``: that latent when it is not z_T (``background`` proposal: the proposal's inversion).
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
        if exact_background:
            z_bg = z_T_n if z_bg_exact is None else z_bg_exact.to(z_T_n)
        else:
            z_bg = z_T_n + ((sigmas[1] - s0) / 2.0) * v_orig0
        z_0 = z_T_n if z_start is None else z_start.to(z_T_n)
        seconds["prepare"] = seconds.pop("capture", 0.0) + time.perf_counter() - t0
        t1 = time.perf_counter()
        with torch.enable_grad():
            opt = optimise_latent(
                z_0, lambda z: F(z, settings.early_exit), F_orig, regions, z_bg=z_bg, edit_mask=M,
                n_transport=settings.n_transport, n_intensify=settings.n_intensify,
                lr=settings.lr, callback=on_iteration, weights=settings.weights,
                use_grad_mask=settings.use_grad_mask, early_stop_tol=settings.early_stop_tol,
                mask_rule=settings.mask_rule, optimizer=settings.optimizer, hole=settings.hole,
                target_warp=settings.target_warp)
        seconds["optimise"] = time.perf_counter() - t1
    return opt, v_orig0, z_bg


def sample_lockstep(v: Callable, z_opt: torch.Tensor, z_T: torch.Tensor, sigmas: list, *, M: torch.Tensor,
                    v_orig0: Optional[torch.Tensor], on_step: Optional[Callable[[dict], None]],
                    orig_path: Optional[Sequence[torch.Tensor]] = None, hold=None) -> tuple:
    """Step 3: the edit and the original branch sampled with FireFlow in lockstep, the background
    constraint after every step (``core.dragflow.paired_fireflow``); with ``orig_path`` the
    original branch is those latents (no forwards). Returns (z, z_orig)."""
    return paired_fireflow(lambda z, sg: v("drag", z, sg), lambda z, sg: v("original", z, sg),
                           z_opt.clone(), z_T, sigmas=sigmas, edit_mask=M,
                           v_orig_init=None if v_orig0 is None else v_orig0.detach(),
                           callback=on_step, orig_path=orig_path, hold=hold)


def run_edit(model, hooks: DragFlowHooks, bank: Optional[KVBank], z_T: torch.Tensor,
             sigmas: torch.Tensor, *, conds: dict, regions: Sequence, edit_mask: torch.Tensor,
             feature_hw: tuple[int, int], settings: EditSettings,
             on_iteration: Optional[Callable[[dict], None]] = None,
             on_step: Optional[Callable[[dict], None]] = None,
             kv_scope: Optional[torch.Tensor] = None,
             orig_path: Optional[Sequence[torch.Tensor]] = None,
             z_start: Optional[torch.Tensor] = None, hold=None,
             release: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> EditResult:
    """DragFlow's edit after inversion, on ``model`` (a clone with ``hooks`` installed and,
    when K/V injection is on, ``bank`` in its router), from the inverted latent ``z_T`` at
    ``sigmas[0]`` down ``sigmas`` (decreasing, ending at 0).

    ``conds``: {"drag": target prompt at the drag guidance, "original": target prompt at
    guidance 1 (the original branch), "source": source prompt at ``inversion_guidance`` (0 = the
    drag guidance; the paper: 1; K/V capture at the inversion's end point)} as ComfyUI
    CONDITIONING. ``regions``: ``core.affine.Region`` in
    image pixels; ``edit_mask``: M_bg on the latent grid (bool (h, w)); ``feature_hw``: the
    feature ("cut") grid. The three steps (:func:`capture_source_kv`, :func:`optimise`,
    :func:`sample_lockstep`) run on the denoiser of one ComfyUI guider run (a plain ``KSAMPLER``
    running this function: the model is loaded and the conditioning prepared once), inside a
    :func:`rope_autograd` block. ``kv_scope``: bool over the image tokens, the only ones whose
    K/V the bank replaces in the edited ("drag") branch [ours]; None = all (the paper). The
    original branch and the capture always use every token. ``orig_path`` [ours]: the original
    branch as given latents at every sigma (the inversion's trajectory): the background is held at
    them exactly and the original branch costs no forwards. ``z_start``: the optimisation's start
    (default z_T). ``release`` [ours, ``reveal_release``] = (cells, latent at σ₀): after the
    optimisation those cells are set to that latent and added to the editable area for the
    sampling only. ``hold``: ``core.dragflow.paired_fireflow``'s (one or a list). Returns model-space
    latents and diagnostics."""
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
        with torch.no_grad():   # only the optimisation needs gradients (it enables them itself)
            capture_source_kv(v, bank, x, s[0])
        seconds["capture"] = time.perf_counter() - t0
        device = x.device
        M = edit_mask.to(device)
        peak = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        opt, v_orig0, z_bg = optimise(v, hooks, x, s, regions=regions, M=M, feature_hw=feature_hw,
                                      settings=settings, on_iteration=on_iteration, seconds=seconds,
                                      exact_background=orig_path is not None, z_start=z_start,
                                      z_bg_exact=None if orig_path is None else orig_path[0])
        if device.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(device))
        t2 = time.perf_counter()
        z_opt = check_finite(opt.z.detach(), NODE_OPT, "latent optimisation")
        M_s = M
        if release is not None:   # the optimisation never sees these cells; the sampler draws them
            R = release[0].to(device)
            z_opt = torch.where(R, release[1].to(z_opt), z_opt)
            M_s = M | R
        with torch.no_grad():
            z, z_o = sample_lockstep(v, z_opt, x, s, M=M_s, v_orig0=v_orig0, on_step=on_step, orig_path=orig_path,
                                     hold=hold)
        check_finite(z, NODE_OPT, "lockstep sampling")
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


def describe_peak(peak: Optional[int]) -> str:
    return "peak GPU memory n/a (CPU)" if peak is None else f"peak GPU memory {format_bytes(peak)}"


def run_dragflow(model, latent: dict, source, target, drag_instructions, *,
                 settings: DragFlowSettings | None = None, adapter=None, unique_id=None,
                 node: str = NODE_OPT) -> tuple:
    """The whole edit: plan (every check) → FireFlow inversion with K/V capture → optimise and
    sample. Returns (model-space edited latent, instructions at the latent's size, latent-grid
    editable mask, :class:`EditResult`)."""
    st = settings or DragFlowSettings()
    dm = require_flux(model, node)
    ins, plan = plan_edit(drag_instructions, latent["samples"], st, node)
    try:
        layers = kv_layers(st.kv_preset, len(dm.double_blocks), len(dm.single_blocks), st.kv_custom)
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input 'kv_custom': {e}") from None
    for note in layers.notes:
        log.info("[FluxDrag] DragFlow K/V layers: %s", note)
    src, tgt = with_adapter(source, target, adapter, node)

    rec, bank = invert(model, latent, src, settings=st, layers=layers, node=node)
    try:
        res = edit(model, dm, rec, bank=bank, src=src, tgt=tgt, plan=plan, settings=st)
    finally:
        rec.free_caches()
    loss_txt = f"loss {res.losses[0]:.4g} → {res.losses[-1]:.4g}" if res.losses else "no iterations"
    fhw = plan.feature_hw
    progress_text(unique_id, f"{plan.n_iter} iterations, {loss_txt}, {describe_peak(res.peak_bytes)}, "
                             f"optimise {res.seconds.get('optimise', 0):.1f}s, feature grid {fhw[1]}×{fhw[0]}",
                  "DragFlow")
    return res.z, ins, plan.edit_mask, res


def inversion_guidance(st: DragFlowSettings) -> float:
    """The guidance of the inversions (and of the K/V capture): ``inversion_guidance``, 0 = the
    edited branch's ``guidance`` (ours: the background held along the inversion's path and the
    edited region then follow one ODE); the paper inverts at 1."""
    return float(st.guidance if st.inversion_guidance <= 0 else st.inversion_guidance)


def _own_clone(model, st: DragFlowSettings):
    """A clone of the input MODEL for this run (fp32 activations when asked). Every clone here is
    a direct child of ``model``: a chain of transient clones leaves ComfyUI a dead model entry
    (see ``router.patch_model``)."""
    c = model.clone()
    if st.activations == "fp32":
        c.set_model_compute_dtype(torch.float32)
    return c


def invert(model, latent: dict, src, *, settings: DragFlowSettings, layers, node: str = NODE_OPT) -> tuple:
    """FireFlow inversion of the first steps − skip_steps steps, capturing the K/V of ``layers``
    (none: no bank). Returns (InversionRecord, KVBank or None)."""
    st = settings
    base = _own_clone(model, st) if st.activations == "fp32" else model
    bank = kv_plan = None
    if layers.count:
        bank = KVBank(layers, TokenCache(st.cache_policy), eta=st.eta, inject_text=st.inject_text)
        kv_plan = DragFlowKVPlan(bank, n_txt=int(src[0][0].shape[1]))
    inv = InversionSettings(steps=st.steps, solver="fireflow", strength=(st.steps - st.skip_steps) / st.steps,
                            scheduler=st.scheduler, guidance=inversion_guidance(st), cache_policy=st.cache_policy,
                            cache_budget_gb=st.cache_budget_gb)
    rec = run_inversion(base, latent, src, inv, edit_map=kv_plan, node=node)
    full = sampling_sigmas(model, st.scheduler, st.steps)
    if not torch.allclose(rec.sigmas, full[st.skip_steps:]):
        rec.free_caches()
        raise RuntimeError("FluxDrag DragFlow: inversion schedule does not match the skip")
    return rec, bank


def proposal(z_0: torch.Tensor, regions: Sequence, *, hole_texture: str, content_contrast: float,
             occluder_contrast: float, depth: str, content_reference: str, content_piece: str,
             shadow_carry: str, content_growth: str) -> torch.Tensor:
    """(Values from the DragFlow settings, where their defaults live.)
    The edit done by geometry alone, in model space: the vacated area filled (``hole_texture``:
    ``core.dragflow_proposal.hole_filled``, never from a region's destination), each region's
    source latent copied to its final pose (``moved_start`` at
    σ = 0). ``content_contrast`` > 0: only the regions' content is copied (``content_reference``,
    ``content_piece``, ``content_growth``), the whole painted area is filled, and the rest (a cast shadow) stays filled
    as ground or travels as its deviation from the background (``shadow_carry``)
    (``core.dragflow_proposal.carried_proposal``, with ``occluder_contrast`` and ``depth`` for
    unpainted objects in front)."""
    if content_contrast > 0:
        return carried_proposal(z_0, regions, content_contrast, hole_texture,
                                occluder_contrast=occluder_contrast, depth=depth,
                                texture=content_reference == "texture", one_piece=content_piece == "largest",
                                shadow=shadow_carry, grow=content_growth == "split")
    hw = tuple(z_0.shape[-2:])
    filled = hole_filled(z_0, vacated_mask(regions, hw), destination_mask(regions, hw), hole_texture)
    return moved_start(filled, z_0, regions)


def start_latent(model, rec, src, plan: DragFlowPlan, st: DragFlowSettings) -> tuple:
    """The optimisation's start at σ₀ (``init``; None = the inverted latent z_T itself), and the
    inversion record of the proposal (None unless ``init`` reinverted).

    reinverted [ours]: inside M_bg, the FireFlow inversion (same schedule, source prompt, no K/V
    capture) of :func:`proposal` — each region at its final pose and the vacated area filled — so
    the moved object's latent is an inversion of the object *where it now is*, among the
    neighbours it now has; with ``background`` proposal that inversion everywhere (one latent, no
    seam between two inversions). moved [ours]: each region's own inverted latent copied to its
    final pose. source (paper): z_T. With ``hole_fill`` surroundings the vacated cells
    ``plan.fresh`` (beyond ``hole_margin`` tokens of a moved copy) are then re-drawn with fresh
    noise (``hole_start``)."""
    z_T = rec.z_T
    z_0 = rec.z_0.to(z_T)
    z = rec2 = None
    if st.init == "reinverted":
        base = _own_clone(model, st) if st.activations == "fp32" else model
        inv = InversionSettings(steps=st.steps, solver="fireflow", strength=(st.steps - st.skip_steps) / st.steps,
                                scheduler=st.scheduler, guidance=inversion_guidance(st), cache_policy=st.cache_policy,
                                cache_budget_gb=st.cache_budget_gb)
        x_hat = proposal(z_0, plan.regions, hole_texture=st.hole_texture, content_contrast=st.content_contrast,
                         occluder_contrast=st.occluder_contrast, depth=st.depth,
                         content_reference=st.content_reference, content_piece=st.content_piece,
                         shadow_carry=st.shadow_carry, content_growth=st.content_growth)
        rec2 = run_inversion(base, {"samples": model.model.process_latent_out(x_hat)}, src, inv)
        z2 = rec2.z_T.to(z_T)
        z = z2 if st.background == "proposal" else torch.where(plan.edit_mask.to(z_T.device), z2, z_T)
    if plan.fresh is not None:
        z = hole_start(z_T if z is None else z, z_0, plan.fresh, float(rec.sigmas[0]), fill_mask=plan.hole)
    if st.init == "moved":
        z = moved_start(z_T if z is None else z, z_T, plan.regions)
    return z, rec2


def reveal_cells(rec, plan: DragFlowPlan, st: DragFlowSettings) -> Optional[torch.Tensor]:
    """[ours] ``reveal_release``: the cells outside the editable area where a region dragged out
    from behind another object may have its hidden part (``core.dragflow_proposal.revealed_cells``
    on the source latent), or None (none, or the setting off; it needs init reinverted with
    content_contrast and occluder_contrast above 0, which find the content and the objects in front)."""
    if st.reveal_release <= 0 or st.init != "reinverted" or st.content_contrast <= 0 or st.occluder_contrast <= 0:
        return None
    cells = revealed_cells(rec.z_0.to(rec.z_T), plan.regions, st.content_contrast, st.occluder_contrast,
                           st.reveal_release, texture=st.content_reference == "texture",
                           one_piece=st.content_piece == "largest",
                           grow=st.content_growth == "split") & ~plan.edit_mask.cpu()
    return cells if bool(cells.any()) else None


def path_at(sigmas: Sequence[float], path: Sequence[torch.Tensor]) -> Callable[[float], torch.Tensor]:
    """σ → the latent of ``path`` (one per sigma of ``sigmas``) at the nearest sigma."""
    sig = [float(c) for c in sigmas]
    return lambda sg: path[min(range(len(sig)), key=lambda k: abs(sig[k] - float(sg)))]


def edit(model, dm, rec, *, bank: Optional[KVBank], src, tgt, plan: DragFlowPlan,
         settings: DragFlowSettings) -> EditResult:
    """Optimise at σ₀ and sample back on a hooked clone of ``model``, from the inversion ``rec``."""
    st = settings
    import comfy.utils

    hooks = DragFlowHooks(dm, checkpointing=st.gradient_checkpointing)
    m = hooks.install(_own_clone(model, st), clone=False)
    if bank is not None:
        patch_model(m, bank, clone=False)
    conds = {"drag": _guided(tgt, st.guidance), "original": _guided(tgt, 1.0),
             "source": _guided(src, inversion_guidance(st))}
    n_iter, n_steps = plan.n_iter, len(rec.sigmas) - 1
    bar = comfy.utils.ProgressBar(n_iter + n_steps)
    adam = st.optimizer != "sgd"
    opt = EditSettings(n_transport=st.n_transport, n_intensify=st.n_intensify, lr=st.adam_lr if adam else st.lr,
                       early_exit=st.early_exit, weights=plan.weights, optimizer=st.optimizer,
                       token_grid=plan.token_grid, hole=plan.hole, target_warp=st.target_warp)
    z_start, rec2 = start_latent(model, rec, src, plan, st)
    orig_path = {"inversion": lambda: inversion_path(rec), "proposal": lambda: inversion_path(rec2),
                 "resample": lambda: None}[st.background]()
    holds = []
    if rec2 is not None and st.destination_hold < 1.0:
        # [ours] destination_hold: the moved regions' cells stay on the proposal's inversion path down to
        # σ destination_hold; left free from σ₀, the model erased a thin bent limb it found at its new pose
        dest = destination_mask(plan.regions, plan.latent_hw).to(plan.edit_mask.device) & plan.edit_mask
        if bool(dest.any()):
            holds.append((dest, path_at(rec.sigmas.tolist(), inversion_path(rec2)), float(st.destination_hold)))
    release = None
    released = reveal_cells(rec, plan, st)
    if released is not None:
        # [ours] reveal_release: the hidden part's cells start from the source's own inversion (the
        # proposal's encodes the background next to the moved object there, and the sampler keeps it);
        # while the model draws them, the editable area stays on the proposal's inversion path down to
        # σ reveal_hold (left free, the model erased the whole moved object on some scenes)
        release = (released, rec.z_T)
        holds.append((plan.edit_mask, path_at(rec.sigmas.tolist(), inversion_path(rec2)), float(st.reveal_hold)))
    # the hole's hold goes last: it wins where the holds meet
    if plan.fresh is not None and st.hole_release < 1.0 and bool(plan.fresh.any()):
        s0 = float(rec.sigmas[0])
        z_0 = rec.z_0.to(rec.z_T)
        x0f = fill_from_surroundings(z_0, plan.hole)
        eps = (z_start - (1 - s0) * x0f) / s0  # on the fresh hole: z_start = (1 − σ₀)·fill + σ₀·ε
        holds.append((plan.fresh, lambda sg: (1 - sg) * x0f + sg * eps, float(st.hole_release)))
    return run_edit(m, hooks, bank, rec.z_T, rec.sigmas, conds=conds, regions=plan.regions,
                    edit_mask=plan.edit_mask, feature_hw=plan.feature_hw, settings=opt, kv_scope=plan.kv_scope,
                    orig_path=orig_path, z_start=z_start, hold=holds or None, release=release,
                    on_iteration=lambda d: bar.update_absolute(d["i"] + 1, n_iter + n_steps),
                    on_step=lambda d: bar.update_absolute(n_iter + d["i"] + 1, n_iter + n_steps))
