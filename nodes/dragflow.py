"""DragFlow nodes: Region Instruction (MASK + points → DRAG_INSTRUCTIONS regions) and Region
Affine Optimise (FireFlow inversion, latent optimisation with early exit, K/V injection,
lockstep sampling with the hard background constraint).

Wiring decision: the optimise node runs its own FireFlow inversion (the first ``steps −
skip_steps`` steps of the schedule, guidance 1, K/V capture on) instead of consuming FluxDrag
Invert's record, so the schedule, the solver, the skipped steps and the K/V cache always belong
together and the cache is freed when the node ends (also on error or interrupt).
"""
from __future__ import annotations

import logging
import math

import torch
from comfy_api.latest import io, ui

from ..attention_patches.dragflow import (
    DragFlowHooks,
    DragFlowKVPlan,
    EditResult,
    EditSettings,
    KVBank,
    describe_peak,
    run_edit,
)
from ..attention_patches.router import patch_model
from ..core.affine import Region, background_edit_mask, mask_centroid, warp_mask
from ..core.cache import TokenCache
from ..core.dragflow import (
    KV_PRESETS,
    feature_grid_hw,
    kv_layers,
    mean_drag_distance,
    scale_level,
)
from ..core.instructions import REGION_OPS, DragInstructions, RegionOp, parse_instructions, rescale
from ..core.preview import draw_arrows
from .common import (
    CATEGORY,
    FluxDragInputError,
    check_latent,
    image_at,
    require_flux,
    sampling_sigmas,
    to_latent,
)
from .common import DragInstructions as DragType
from .inversion import SCHEDULERS, run_inversion

NODE_REGION = "FluxDrag Region Instruction"
NODE_OPT = "FluxDrag Region Affine Optimise"
KV_CHOICES = [*KV_PRESETS, "custom"]
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


REGION_TINTS = [(1.0, 0.55, 0.0), (0.9, 0.0, 0.9), (0.0, 0.8, 0.8), (0.6, 0.9, 0.0)]


def regions_preview(ins: DragInstructions, image: torch.Tensor | None,
                    edit_mask: torch.Tensor | None = None) -> torch.Tensor:
    """IMAGE (1, H, W, 3): editable mask (blue), each region (tint) and its moved copy (green),
    begin → target arrows, rotation anchors."""
    W, H = ins.image_size
    img = image_at(image, H, W)

    def tint(m, col, a):
        c = torch.tensor(col, dtype=img.dtype)
        img[m] = (1 - a) * img[m] + a * c

    if edit_mask is not None:
        em = edit_mask.float()[None, None]
        em = torch.nn.functional.interpolate(em, size=(H, W), mode="nearest")[0, 0] > 0.5
        tint(em, (0.2, 0.45, 1.0), 0.25)
    heads, tails, anchors = [], [], []
    for k, r in enumerate(ins.regions):
        reg = Region(r.mask, r.op, target=r.target, begin=r.begin,
                     anchor=r.anchor if r.anchor is not None or r.op != "rotate" else mask_centroid(r.mask))
        tint(r.mask, REGION_TINTS[k % len(REGION_TINTS)], 0.4)
        tint(warp_mask(r.mask, reg.affine(1.0)), (0.0, 1.0, 0.2), 0.35)
        heads.append(r.begin)
        tails.append(r.target)
        if reg.anchor is not None and r.op == "rotate":
            anchors.append(reg.anchor)
    if heads:
        img = draw_arrows(img, heads, tails)
    if anchors:
        img = draw_arrows(img, anchors, anchors, handle_color=(1.0, 1.0, 1.0), target_color=None,
                          numbers=False)
    return img[None].clamp(0, 1)


class RegionInstruction(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragRegionInstruction",
            display_name=NODE_REGION,
            category=f"{CATEGORY}/DragFlow",
            description="Adds one DragFlow region operation (a MASK and begin→target points, plus "
                        "an anchor for rotations) to DRAG_INSTRUCTIONS. Chain several to move "
                        "several regions.",
            inputs=[
                io.Mask.Input("mask", tooltip="The region to move (white), at the image's size."),
                io.Combo.Input("op", options=list(REGION_OPS), default="relocate",
                               tooltip="relocate: move the object by target − begin; deform: the "
                                       "same translation as a deformation of a part; rotate: turn "
                                       "by the angle begin→target about the anchor."),
                io.Float.Input("begin_x", default=128.0, min=0.0, max=16384.0, step=1.0,
                               tooltip="Begin point x in image pixels (on the object)."),
                io.Float.Input("begin_y", default=128.0, min=0.0, max=16384.0, step=1.0,
                               tooltip="Begin point y in image pixels (on the object)."),
                io.Float.Input("target_x", default=160.0, min=0.0, max=16384.0, step=1.0,
                               tooltip="Where the begin point should end up, x in pixels."),
                io.Float.Input("target_y", default=128.0, min=0.0, max=16384.0, step=1.0,
                               tooltip="Where the begin point should end up, y in pixels."),
                io.Float.Input("anchor_x", default=-1.0, min=-1.0, max=16384.0, step=1.0,
                               tooltip="Rotation pivot x in pixels; -1 (with anchor_y -1) = the "
                                       "region's centroid. Ignored by relocate/deform."),
                io.Float.Input("anchor_y", default=-1.0, min=-1.0, max=16384.0, step=1.0,
                               tooltip="Rotation pivot y in pixels; -1 = the region's centroid."),
                DragType.Input("drag_instructions", optional=True,
                               tooltip="Instructions to extend (e.g. another Region Instruction)."),
                io.Image.Input("image", optional=True, tooltip="Source image, only for the preview."),
            ],
            outputs=[DragType.Output(display_name="drag_instructions"),
                     io.Image.Output(display_name="preview")],
        )

    @classmethod
    def execute(cls, mask, op="relocate", begin_x=128.0, begin_y=128.0, target_x=160.0,
                target_y=128.0, anchor_x=-1.0, anchor_y=-1.0, drag_instructions=None,
                image=None) -> io.NodeOutput:
        anchor = None
        if op == "rotate" and (anchor_x >= 0 or anchor_y >= 0):
            anchor = (float(anchor_x), float(anchor_y))
        region = build_region(mask, op, (begin_x, begin_y), (target_x, target_y), anchor)
        ins = add_region(drag_instructions, region)
        prev = regions_preview(ins, image)
        return io.NodeOutput(ins, prev, ui=ui.PreviewImage(prev, cls=cls))


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


def _send_text(unique_id, text: str) -> None:
    logging.info("[FluxDrag] DragFlow: %s", text)
    if not unique_id:
        return
    try:
        from server import PromptServer

        PromptServer.instance.send_progress_text(text, unique_id)
    except Exception:  # noqa: BLE001 (no server in-process)
        pass


def run_dragflow(model, latent: dict, source, target, drag_instructions, steps: int = 25,
                 skip_steps: int = 6, scheduler: str = "simple", guidance: float = 3.5,
                 n_transport: int = 50, n_intensify: int = 20, lr: float = 1000.0,
                 adaptive_weights: bool = True, scale_rule: str = "fixed", feature_scale: float = 0.0,
                 kv_preset: str = "non-ridge", kv_custom: str = "", eta: float = 0.0,
                 inject_text: bool = True, early_exit: bool = True, gradient_checkpointing: bool = True,
                 activations: str = "model", cache_policy: str = "cpu", cache_budget_gb: float = 0.0,
                 adapter=None, unique_id=None, node: str = NODE_OPT) -> tuple:
    """The whole edit; returns (model-space edited latent, instructions at the latent's size,
    latent-grid editable mask, EditResult)."""
    import comfy.utils

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
    edit_mask = background_edit_mask([r.mask for r in regions], affines, H, W, out_hw=(h, w))
    if feature_scale > 0:
        level = float(feature_scale)
    else:
        level = scale_level((H, W), mean_drag_distance(regions, (H, W)),
                            use_adaptive=(scale_rule == "adaptive"))
    fhw = feature_grid_hw((H, W), level)
    # None: optimise_latent's adaptive weights w_k ∝ clamp(1 + 0.5/(s_k + 0.1), 1, 5)
    weights = None if adaptive_weights else [1.0 / len(regions)] * len(regions)
    try:
        layers = kv_layers(kv_preset, len(dm.double_blocks), len(dm.single_blocks), kv_custom)
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input 'kv_custom': {e}") from None
    for note in layers.notes:
        logging.info("[FluxDrag] DragFlow K/V layers: %s", note)

    src, tgt = with_adapter(source, target, adapter, node)
    base = model
    if activations == "fp32":
        base = model.clone()
        base.set_model_compute_dtype(torch.float32)
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
        hooks = DragFlowHooks(dm, checkpointing=gradient_checkpointing)
        m = hooks.install(base)
        if bank is not None:
            m = patch_model(m, bank)
        conds = {"drag": _guided(tgt, guidance), "original": _guided(tgt, 1.0),
                 "source": _guided(src, 1.0)}
        n_iter = n_transport + n_intensify
        n_steps = len(rec.sigmas) - 1
        bar = comfy.utils.ProgressBar(n_iter + n_steps)

        def on_iteration(d):
            bar.update_absolute(d["i"] + 1, n_iter + n_steps)

        def on_step(d):
            bar.update_absolute(n_iter + d["i"] + 1, n_iter + n_steps)

        settings = EditSettings(n_transport=n_transport, n_intensify=n_intensify, lr=lr,
                                early_exit=early_exit, weights=weights)
        res: EditResult = run_edit(m, hooks, bank, rec.z_T, rec.sigmas, conds, regions, edit_mask,
                                   fhw, settings, on_iteration, on_step)
    finally:
        rec.free_caches()
    loss_txt = (f"loss {res.losses[0]:.4g} → {res.losses[-1]:.4g}" if res.losses else "no iterations")
    _send_text(unique_id, f"{n_iter} iterations, {loss_txt}, {describe_peak(res.peak_bytes)}, "
                          f"optimise {res.seconds.get('optimise', 0):.1f}s, feature grid {fhw[1]}×{fhw[0]}")
    if bank is not None and bank.notes:
        logging.info("[FluxDrag] DragFlow K/V: %s", "; ".join(bank.notes))
    return res.z, ins, edit_mask, res


class RegionAffineOptimise(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragRegionAffineOptimise",
            display_name=NODE_OPT,
            category=f"{CATEGORY}/DragFlow",
            description="DragFlow (region-level affine supervision): FireFlow-inverts the image "
                        "to the (steps − skip_steps)-th step, optimises the latent there so the "
                        "regions' FLUX features follow their affines (TRANSPORT then INTENSIFY, "
                        "hard background constraint), then samples the edit and the original "
                        "branch in lockstep, keeping the background. Outputs the edited latent.",
            inputs=[
                io.Model.Input("model", tooltip="A FLUX model (dev/Krea; fp8/GGUF fine)."),
                io.Latent.Input("latent", tooltip="The source image latent (VAEEncode), batch 1."),
                io.Conditioning.Input("source", tooltip="Source prompt: describes the image "
                                                        "(DragFlow: the background prompt)."),
                io.Conditioning.Input("target", tooltip="Target prompt (DragFlow: background + "
                                                        "editing prompt); may equal the source."),
                DragType.Input("drag_instructions", tooltip="Regions from FluxDrag Region "
                                                            "Instruction (image pixels)."),
                io.Int.Input("steps", default=25, min=2, max=200,
                             tooltip="Steps of the full schedule (paper: 25)."),
                io.Int.Input("skip_steps", default=6, min=0, max=199,
                             tooltip="Steps skipped at the noisy end (paper's skip_step_num 6): "
                                     "inversion runs steps − skip_steps steps; the optimisation "
                                     "happens at the first remaining step."),
                io.Combo.Input("scheduler", options=SCHEDULERS, default="simple",
                               tooltip="Sigma schedule (the model's own shift)."),
                io.Float.Input("guidance", default=3.5, min=0.0, max=100.0, step=0.1,
                               tooltip="FLUX distilled guidance of the edited branch (paper 3.5); "
                                       "inversion and the original branch use 1."),
                io.Int.Input("n_transport", default=50, min=0, max=1000,
                             tooltip="TRANSPORT iterations: the affine grows with progress "
                                     "p = (τ+1)/n_transport."),
                io.Int.Input("n_intensify", default=20, min=0, max=1000,
                             tooltip="INTENSIFY iterations at the final pose."),
                io.Float.Input("lr", default=1000.0, min=0.0, max=1e7, step=10.0,
                               tooltip="Gradient-descent step on the latent (paper code: 1000)."),
                io.Boolean.Input("adaptive_weights", default=True,
                                 tooltip="Region weights ∝ clamp(1 + 0.5/(area + 0.1), 1, 5) "
                                         "(small regions count more); off = equal weights."),
                io.Combo.Input("scale_rule", options=["fixed", "adaptive"], default="fixed",
                               tooltip="Feature-grid rule: fixed = image side / 2, 3 or 4 by "
                                       "size; adaptive = make the mean drag 30 cells long."),
                io.Float.Input("feature_scale", default=0.0, min=0.0, max=64.0, step=0.5,
                               tooltip="Override: feature grid = image / this; 0 = use the rule."),
                io.Combo.Input("kv_preset", options=KV_CHOICES, default="non-ridge",
                               tooltip="Blocks whose K/V come from the inversion (identity "
                                       "preservation): non-ridge (paper default), position, none "
                                       "or custom (kv_custom). Mapped proportionally on models "
                                       "with another block count."),
                io.String.Input("kv_custom", default="", multiline=False,
                                tooltip="Custom blocks: 'double: 0, 7; single: 6, 37' or global "
                                        "indices '0, 7, 25' (single = global − #double)."),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.05,
                               tooltip="K ← η·K + (1−η)·K̄ (same for V): 0 = full replacement "
                                       "(paper), 1 = no injection."),
                io.Boolean.Input("inject_text", default=True,
                                 tooltip="Single blocks: replace text tokens' K/V too (paper); "
                                         "off = image tokens only."),
                io.Boolean.Input("early_exit", default=True,
                                 tooltip="Stop optimisation forwards after the last feature block "
                                         "(same gradient, single blocks skipped)."),
                io.Boolean.Input("gradient_checkpointing", default=True,
                                 tooltip="Recompute blocks in backward: much less memory, about "
                                         "a third more time per iteration."),
                io.Combo.Input("activations", options=["model", "fp32"], default="model",
                               tooltip="Activation dtype: the model's (fast) or fp32 (paper; "
                                       "more memory). Weights are never changed."),
                io.Combo.Input("cache_policy", options=["cpu", "fp8", "device"], default="cpu",
                               tooltip="Where the inversion's K/V live: cpu (pinned on CUDA), "
                                       "fp8 on cpu (half of bf16), device (fastest, costs VRAM)."),
                io.Float.Input("cache_budget_gb", default=0.0, min=0.0, max=4096.0, step=0.5,
                               tooltip="Refuse when the K/V cache would exceed this many GiB. "
                                       "0 = automatic: a cpu/fp8 cache may use 80% of the RAM "
                                       "available when the inversion starts; device: no limit."),
                io.Conditioning.Input("adapter", optional=True,
                                      tooltip="Optional adapter conditioning (e.g. FLUX Redux "
                                              "StyleModelApply on the source prompt): its extra "
                                              "tokens join both prompts in inversion, optimisation "
                                              "and sampling."),
                io.Image.Input("image", optional=True, tooltip="Source image, only for the preview."),
            ],
            outputs=[io.Latent.Output(display_name="latent"), io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, latent, source, target, drag_instructions, steps=25, skip_steps=6,
                scheduler="simple", guidance=3.5, n_transport=50, n_intensify=20, lr=1000.0,
                adaptive_weights=True, scale_rule="fixed", feature_scale=0.0, kv_preset="non-ridge",
                kv_custom="", eta=0.0, inject_text=True, early_exit=True,
                gradient_checkpointing=True, activations="model", cache_policy="cpu",
                cache_budget_gb=0.0, adapter=None, image=None) -> io.NodeOutput:
        uid = getattr(getattr(cls, "hidden", None), "unique_id", None)
        z, ins, edit_mask, _ = run_dragflow(
            model, latent, source, target, drag_instructions, steps, skip_steps, scheduler,
            guidance, n_transport, n_intensify, lr, adaptive_weights, scale_rule, feature_scale,
            kv_preset, kv_custom, eta, inject_text, early_exit, gradient_checkpointing,
            activations, cache_policy, cache_budget_gb, adapter, uid)
        prev = regions_preview(ins, image, edit_mask)
        return io.NodeOutput(to_latent(model, z, exact=False), prev, ui=ui.PreviewImage(prev, cls=cls))


NODES = [RegionInstruction, RegionAffineOptimise]
