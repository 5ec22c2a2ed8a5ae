"""LazyDrag nodes: Correspondence Map and LazyDrag Patch."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..attention_patches.lazydrag import BACKGROUND_QUERY
from ..core.preview import draw_map_preview
from ..pipelines.lazydrag import (
    MAP_DEFAULTS,
    MAPPINGS,
    NODE_MAP,
    NODE_PATCH,
    PATCH_DEFAULTS,
    RESOLUTIONS,
    apply_lazydrag,
    build_plan,
)
from .common import CATEGORY, DragInstructions, EditMap, Inversion, image_at, to_latent


class CorrespondenceMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragCorrespondenceMap",
            display_name=NODE_MAP,
            category=f"{CATEGORY}/LazyDrag",
            description="LazyDrag's explicit correspondence map from the drags: winner-takes-all "
                        "displacement, matching map M, weights A and the destination / inpaint / "
                        "transition / background regions. Connect 'map' to FluxDrag Invert's "
                        "edit_map (so the inversion caches what the edit needs) and to the patch.",
            inputs=[
                DragInstructions.Input("drag_instructions", tooltip="Handle→target drags (and "
                                       "optional editable mask) in image pixels."),
                io.Latent.Input("latent", tooltip="The source latent (fixes the token grid)."),
                io.Mask.Input("mask", optional=True, tooltip="Editable region; overrides the "
                              "instructions' mask. Default: discs around the handles."),
                io.Int.Input("transition_width", default=1, min=0, max=8,
                             tooltip="Width in tokens of the transition band around the moved "
                                     "area (the paper leaves it open; 1–2 is our choice)."),
                io.Float.Input("activation", default=0.8, min=0.0, max=1.0, step=0.02,
                               tooltip="Fraction of sampling steps with identity preservation and "
                                       "output merging (paper: 40 of 50 = 0.8). Lower: more natural, "
                                       "may miss targets; higher: accurate, may warp."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the noise that fills the vacated (inpaint) area."),
                io.Image.Input("image", optional=True, tooltip="Source image for the preview."),
                io.Combo.Input("background_query", options=list(BACKGROUND_QUERY), default="live",
                               optional=True,
                               tooltip="live: only background keys and values are cached, the queries "
                                       "stay the edit's own — a third less cache memory, and the same "
                                       "result when the LazyDrag Patch's background_lock is 1 (its "
                                       "default). cached: queries cached too (the paper) — better "
                                       "background with background_lock < 1 or ComfyUI's KSampler."),
                io.Combo.Input("resolution", options=list(RESOLUTIONS), default=MAP_DEFAULTS["resolution"],
                               optional=True,
                               tooltip="pixel (ours): the initial latent and the Patch's latent locks "
                                       "follow the editable mask per latent pixel (8 px) — only the "
                                       "masked content moves, no box of source background travels "
                                       "with it. token (paper): whole 16 px tokens."),
                io.Combo.Input("mapping", options=list(MAPPINGS), default=MAP_DEFAULTS["mapping"],
                               optional=True,
                               tooltip="backward (ours): each destination of a move/rotate/scale "
                                       "looks up its source, so enlarged or rotated content has no "
                                       "holes. forward (paper): sources are pushed and rounded."),
                io.Float.Input("rigid_tolerance", default=MAP_DEFAULTS["rigid_tolerance"], min=0.0,
                               max=1.0, step=0.05, optional=True,
                               tooltip="Several drags on one part of the mask that fit a rigid motion "
                                       "(residual ≤ this × drag length) become one rotation + move "
                                       "(ours). 0: never (paper: each drag bends its own cell)."),
                io.Int.Input("gate_reference", default=MAP_DEFAULTS["gate_reference"], min=0, max=8192,
                             optional=True,
                             tooltip="The gate A = min(1, |p−s|⁻²) measures distance in units of "
                                     "min(H, W)/gate_reference tokens: one token at this image size, "
                                     "the same image fraction at any size (ours). 0: one token at any "
                                     "size (the paper read literally)."),
            ],
            outputs=[EditMap.Output(display_name="map"), io.Image.Output(display_name="preview")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, drag_instructions, latent, mask=None, transition_width=1, activation=0.8,
                seed=0, image=None, background_query="live", resolution=MAP_DEFAULTS["resolution"],
                mapping=MAP_DEFAULTS["mapping"], rigid_tolerance=MAP_DEFAULTS["rigid_tolerance"],
                gate_reference=MAP_DEFAULTS["gate_reference"]) -> io.NodeOutput:
        samples = latent["samples"]
        plan = build_plan(drag_instructions, samples, mask, transition_width, activation, seed,
                          background_query, resolution, mapping, rigid_tolerance, gate_reference)
        H, W = samples.shape[-2] * 8, samples.shape[-1] * 8
        prev = draw_map_preview(image_at(image, H, W, grey=None), plan.cmap, image_hw=(H, W))[None].clamp(0, 1)
        return io.NodeOutput(plan, prev, ui=ui.PreviewImage(prev, cls=cls))




class LazyDragPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FluxDragLazyDragPatch",
            display_name=NODE_PATCH,
            category=f"{CATEGORY}/LazyDrag",
            description="LazyDrag attention control in FLUX's single-stream blocks: background "
                        "tokens from the inversion cache, cached source K/V re-encoded at their "
                        "destination, gated output merging. Outputs the patched model and the "
                        "edited initial latent for FluxDrag Sample From Inversion.",
            inputs=[
                io.Model.Input("model", tooltip="FLUX.1 dev/Krea (the model used for the inversion)."),
                Inversion.Input("inversion", tooltip="From FluxDrag Invert, run with this map as "
                                                     "edit_map."),
                EditMap.Input("map", tooltip="From FluxDrag Correspondence Map."),
                io.Boolean.Input("background", default=True,
                                 tooltip="Background preservation: replace background q,k,v with "
                                         "the inversion's at every step."),
                io.Boolean.Input("identity", default=True,
                                 tooltip="Identity preservation: append cached source K/V "
                                         "re-encoded at the destination (until the activation step)."),
                io.Boolean.Input("refine", default=True,
                                 tooltip="Gated output merging y ← (1−γ)y + γȳ_M(x), γ = h_t·A(x)."),
                io.Boolean.Input("mask_text", default=True,
                                 tooltip="Hide the appended identity tokens from text queries "
                                         "(our reading; the paper is silent)."),
                io.Float.Input("h_max", default=0.8, min=0.0, max=1.0, step=0.05,
                               tooltip="Peak output-merge strength h_t (CharaConsist's 0.8)."),
                io.Float.Input("hold", default=0.2, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of steps at h_max before the cosine decay."),
                io.Float.Input("end", default=0.6, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of steps where h_t reaches 0."),
                io.Float.Input("background_lock", default=1.0, min=0.0, max=1.0, step=0.05,
                               optional=True,
                               tooltip="Fraction of sampling steps after which the background tokens' "
                                       "latent is reset to the inversion's at the same sigma (ours, not "
                                       "in the paper; needs FluxDrag Sample From Inversion). 1: the "
                                       "background ends exactly as the source; 0: attention control "
                                       "only, as in the paper."),
                io.Float.Input("content_lock", default=PATCH_DEFAULTS["content_lock"], min=0.0, max=1.0,
                               step=0.05, optional=True,
                               tooltip="Fraction of steps during which the moved pixels follow their "
                                       "sources' inversion path (ours; needs the map's resolution "
                                       "'pixel'). 1: the object arrives exactly as it was, like the "
                                       "locked background; below 1 the model re-generates it in the "
                                       "last steps (blending, at the cost of identity drift). 0: as "
                                       "in the paper."),
                io.Float.Input("hole_lock", default=PATCH_DEFAULTS["hole_lock"], min=0.0, max=1.0,
                               step=0.05, optional=True,
                               tooltip="Fraction of steps during which the vacated pixels follow the "
                                       "smooth fill of their surroundings, noised to the step's sigma "
                                       "(ours; 'pixel' maps): no fragments of the object stay behind. "
                                       "0: the paper's free inpainting from noise."),
                io.Int.Input("lock_margin", default=PATCH_DEFAULTS["lock_margin"], min=0, max=16,
                             optional=True,
                             tooltip="Latent pixels (8 px) around the moved content and its hole "
                                     "left free of the background lock, for blending ('pixel' maps)."),
            ],
            outputs=[io.Model.Output(), io.Latent.Output(display_name="initial_latent")],
        )

    @classmethod
    def execute(cls, model, inversion, map, background=True, identity=True, refine=True,
                mask_text=True, h_max=0.8, hold=0.2, end=0.6, background_lock=1.0,
                content_lock=PATCH_DEFAULTS["content_lock"], hole_lock=PATCH_DEFAULTS["hole_lock"],
                lock_margin=PATCH_DEFAULTS["lock_margin"]) -> io.NodeOutput:
        m, z0, _ = apply_lazydrag(model, inversion, map, background, identity, refine, mask_text,
                                  h_max, hold, end, background_lock, content_lock, hole_lock,
                                  lock_margin)
        return io.NodeOutput(m, to_latent(model, z0))


NODES = [CorrespondenceMap, LazyDragPatch]
