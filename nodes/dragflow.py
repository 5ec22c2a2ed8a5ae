"""DragFlow nodes: Region Instruction (MASK + points → DRAG_INSTRUCTIONS regions) and Region
Affine Optimise; the pipeline is ``pipelines/dragflow.py``."""
from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..core.affine import Region, mask_centroid, warp_mask
from ..core.instructions import REGION_OPS, DragInstructions
from ..core.preview import draw_arrows
from ..pipelines.dragflow import (
    BACKGROUNDS,
    EDIT_REGIONS,
    FEATURE_GRIDS,
    HOLE_FILLS,
    INITS,
    KV_CHOICES,
    KV_SCOPES,
    NODE_OPT,
    NODE_REGION,
    OPTIMIZERS,
    DragFlowSettings,
    add_region,
    build_region,
    run_dragflow,
)
from ..pipelines.inversion import SCHEDULERS
from .common import CATEGORY, image_at, to_latent
from .common import DragInstructions as DragType

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
            hidden=[io.Hidden.unique_id],
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
                io.Int.Input("n_transport", default=0, min=0, max=1000,
                             tooltip="TRANSPORT iterations: the affine grows with progress "
                                     "p = (τ+1)/n_transport (paper: 50; 0 here because init "
                                     "'moved' already starts at the final pose)."),
                io.Int.Input("n_intensify", default=20, min=0, max=1000,
                             tooltip="INTENSIFY iterations at the final pose (paper: 20)."),
                io.Combo.Input("optimizer", options=OPTIMIZERS, default="adam",
                               tooltip="adam: Adam steps of about 'adam_lr' latent units, the same "
                                       "for any image size; normalized: gradient divided by its "
                                       "RMS; sgd: plain gradient descent with 'lr' (paper)."),
                io.Float.Input("adam_lr", default=0.005, min=0.0, max=10.0, step=0.001,
                               tooltip="Step of the adam / normalized optimizer, in latent units "
                                       "per iteration."),
                io.Float.Input("lr", default=1000.0, min=0.0, max=1e7, step=10.0,
                               tooltip="Gradient-descent step of optimizer 'sgd' (paper code: "
                                       "1000); its effect depends on the image size."),
                io.Boolean.Input("adaptive_weights", default=True,
                                 tooltip="Region weights ∝ clamp(1 + 0.5/(area + 0.1), 1, 5) "
                                         "(small regions count more); off = equal weights."),
                io.Combo.Input("scale_rule", options=["fixed", "adaptive"], default="fixed",
                               tooltip="Feature-grid rule: fixed = image side / 2, 3 or 4 by "
                                       "size; adaptive = make the mean drag 30 cells long."),
                io.Float.Input("feature_scale", default=0.0, min=0.0, max=64.0, step=0.5,
                               tooltip="Override: feature grid = image / this; 0 = use the rule."),
                io.Combo.Input("feature_grid", options=FEATURE_GRIDS, default="token",
                               tooltip="token: compare features on the model's own token grid; "
                                       "image: read each token as 2×2 sub-pixels resized to the "
                                       "image / level grid (paper; uses scale_rule/feature_scale)."),
                io.Combo.Input("kv_preset", options=KV_CHOICES, default="non-ridge",
                               tooltip="Blocks whose K/V come from the inversion (identity "
                                       "preservation): non-ridge (paper default), position, none "
                                       "or custom (kv_custom). Mapped proportionally on models "
                                       "with another block count."),
                io.String.Input("kv_custom", default="", multiline=False,
                                tooltip="Custom blocks: 'double: 0, 7; single: 6, 37' or global "
                                        "indices '0, 7, 25' (single = global − #double)."),
                io.Combo.Input("kv_scope", options=KV_SCOPES, default="outside_edit",
                               tooltip="Image tokens of the edited branch whose K/V come from the "
                                       "inversion: outside_edit = only the kept background, never "
                                       "the regions, their destinations or the hole; all = every "
                                       "token (paper; pulls the layout back to the source)."),
                io.Combo.Input("background", options=BACKGROUNDS, default="inversion",
                               tooltip="What the hard constraint keeps outside the editable area: "
                                       "inversion = the inversion's own latents (the source, "
                                       "exactly; no extra forwards); resample = the original "
                                       "branch re-sampled at guidance 1 (paper)."),
                io.Combo.Input("hole_fill", options=HOLE_FILLS, default="surroundings",
                               tooltip="The area a region leaves: surroundings = re-drawn from "
                                       "the background around it with fresh noise and held "
                                       "there while optimising, so the sampler regenerates it; "
                                       "none = left as inverted (paper; the object stays)."),
                io.Float.Input("hole_release", default=0.3, min=0.0, max=1.0, step=0.05,
                               tooltip="hole_fill surroundings: while sampling, the vacated area "
                                       "stays on the noisy path of its re-drawn background down "
                                       "to this σ, then the sampler blends it in; 1 = never held "
                                       "while sampling, 0 = held to the end."),
                io.Combo.Input("init", options=INITS, default="moved",
                               tooltip="Where the optimisation starts: moved = each region's own "
                                       "inverted latent copied to its final pose (colour and "
                                       "texture travel with it); source = the inverted latent as "
                                       "is (paper; TRANSPORT then moves the region)."),
                io.Combo.Input("edit_region", options=EDIT_REGIONS, default="regions",
                               tooltip="Editable area: regions = the cells of the regions and "
                                       "their moved copies (+ edit_dilate); rect = the minimum-"
                                       "area rectangle around each region and its copy (paper)."),
                io.Int.Input("edit_dilate", default=0, min=0, max=64,
                             tooltip="Latent cells added around the regions (edit_region "
                                     "'regions'), to let the edit blend into its surroundings."),
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
                scheduler="simple", guidance=3.5, n_transport=0, n_intensify=20,
                optimizer="adam", adam_lr=0.005, lr=1000.0,
                adaptive_weights=True, scale_rule="fixed", feature_scale=0.0, feature_grid="token",
                kv_preset="non-ridge", kv_custom="", kv_scope="outside_edit",
                background="inversion", hole_fill="surroundings", hole_release=0.3, init="moved",
                edit_region="regions",
                edit_dilate=0, eta=0.0, inject_text=True, early_exit=True,
                gradient_checkpointing=True, activations="model", cache_policy="cpu",
                cache_budget_gb=0.0, adapter=None, image=None) -> io.NodeOutput:
        uid = getattr(getattr(cls, "hidden", None), "unique_id", None)
        s = DragFlowSettings(
            steps=steps, skip_steps=skip_steps, scheduler=scheduler, guidance=guidance,
            n_transport=n_transport, n_intensify=n_intensify, lr=lr, adaptive_weights=adaptive_weights,
            scale_rule=scale_rule, feature_scale=feature_scale, kv_preset=kv_preset, kv_custom=kv_custom,
            eta=eta, inject_text=inject_text, early_exit=early_exit,
            gradient_checkpointing=gradient_checkpointing, activations=activations,
            cache_policy=cache_policy, cache_budget_gb=cache_budget_gb, feature_grid=feature_grid,
            optimizer=optimizer, adam_lr=adam_lr, kv_scope=kv_scope, background=background,
            hole_fill=hole_fill, hole_release=hole_release, init=init, edit_region=edit_region,
            edit_dilate=edit_dilate)
        z, ins, edit_mask, _ = run_dragflow(model, latent, source, target, drag_instructions, s,
                                            adapter, uid)
        prev = regions_preview(ins, image, edit_mask)
        return io.NodeOutput(to_latent(model, z, exact=False), prev, ui=ui.PreviewImage(prev, cls=cls))


NODES = [RegionInstruction, RegionAffineOptimise]
