"""DragFlow's inputs: region instructions (FluxDrag Region Instruction), the adapter
conditioning, the settings dataclass and the validated edit plan — everything checked before
the pipeline (``pipelines/dragflow.py``) touches the model."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..core.affine import Region, mask_centroid
from ..core.correspondence_content import CONTENT_GROWTHS, CONTENT_PIECES, CONTENT_REFERENCES
from ..core.drag_sets import regions_from_drags, split_drags
from ..core.dragflow_layers import KV_PRESETS
from ..core.dragflow_plan import plan_dragflow
from ..core.dragflow_proposal import SHADOW_CARRIES, hinge_kept
from ..core.instruction_values import DRAG_DEPTHS
from ..core.instructions import LATENT_PX, REGION_OPS, DragInstructions, RegionOp, parse_instructions, rescale
from .common import FluxDragInputError, check_latent
from .inversion import SCHEDULERS
from .settings import SILENT, check_choice, paper_settings, pick, setting, validate

NODE_REGION = "FluxDrag Region Instruction"
NODE_OPT = "FluxDrag Region Affine Optimise"
KV_CHOICES = [*KV_PRESETS, "custom"]
FEATURE_GRIDS = ["token", "image"]      # ours / the paper's
OPTIMIZERS = ["adam", "normalized", "sgd"]  # ours / ours / the paper's
KV_SCOPES = ["outside_edit", "all"]     # ours / the paper's
BACKGROUNDS = ["proposal", "inversion", "resample"]  # ours / ours / the paper's
HOLE_FILLS = ["surroundings", "none"]    # ours / the paper's
#: ours (LazyDrag's fill) / before / issue 27 before its second pass; the paper: no proposal
HOLE_TEXTURES = ["continued", "shifted", "smooth"]
EDIT_REGIONS = ["regions", "rect"]       # ours / the paper's
TARGET_WARPS = ["nearest", "bilinear"]       # ours / the paper's
INITS = ["reinverted", "moved", "source"]             # ours / the paper's
DEPTHS = ["auto", "under", "over"]       # ours / ours / the paper's (the region is pasted)
SCALE_RULES = ["fixed", "adaptive"]
ACTIVATIONS = ["model", "fp32"]
KV_CACHE_POLICIES = ["cpu", "fp8", "device"]
BEGIN_MARGIN_PX = 16  # [guess] how far outside its region a relocate/deform begin point may lie


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
                 anchor: tuple | None, node: str = NODE_REGION, depth: str = "auto") -> RegionOp:
    """A validated RegionOp (pixel coordinates) from node inputs; errors name the input."""
    m = _single_mask(mask, node)
    H, W = m.shape
    check_choice(node, "depth", depth, DRAG_DEPTHS)
    if not bool(m.any()):
        raise FluxDragInputError(f"{node}: input 'mask' is empty (no pixel above 0.5); paint the "
                                 f"region to move in white.")
    check_choice(node, "op", op, REGION_OPS)
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
                    None if anchor is None else (float(anchor[0]), float(anchor[1])), depth=depth)


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


def regions_for_latent(drag_instructions, H: int, W: int, node: str = NODE_OPT, scale: bool = True) -> tuple:
    """(instructions at H×W, core Regions in pixels) or a clear error; ``scale`` False: the regions'
    scales are dropped (``region_scale``)."""
    try:
        ins = parse_instructions(drag_instructions)
    except ValueError as e:
        raise FluxDragInputError(f"{node}: input 'drag_instructions': {e}") from None
    if not ins.regions and not ins.drags:
        raise FluxDragInputError(f"{node}: input 'drag_instructions' has no regions; build them "
                                 f"with {NODE_REGION}.")
    if tuple(ins.image_size) != (W, H):
        warnings.warn(f"input 'drag_instructions' was drawn on a {ins.image_size[0]}×{ins.image_size[1]} "
                      f"image but the latent is {W}×{H} px: regions rescaled proportionally; draw them "
                      f"on the image you edit to avoid this", stacklevel=2)
        ins = rescale(ins, (W, H))
    if not ins.regions:  # point drags (DragBench): regions from the mask and points, anchors held
        try:
            split = split_drags(ins, LATENT_PX / 2, "DragFlow", "half a latent cell", stacklevel=3)
        except ValueError as e:
            raise FluxDragInputError(f"{node}: input 'drag_instructions': {e}") from None
        ins = DragInstructions(ins.image_size, list(split.instructions.drags), ins.mask,
                               regions_from_drags(split), ins.version)
    regions = []
    for k, r in enumerate(ins.regions):
        anchor = r.anchor if (r.anchor is not None or r.op != "rotate") else mask_centroid(r.mask)
        try:
            regions.append(Region(r.mask, r.op, target=r.target, begin=r.begin, anchor=anchor, depth=r.depth,
                                  scale=r.scale if scale else (1.0, 1.0)))
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


@dataclass
class DragFlowSettings:
    """The Region Affine Optimise node's inputs, the only place their defaults live: the main node
    shows steps, skip_steps, scheduler and guidance; the rest is on FluxDrag DragFlow Options.
    Departures from the paper carry its value (docs/dragflow.md)."""

    METHOD: ClassVar[str] = "DragFlow"

    steps: int = setting(25, "Steps of the full schedule (paper: 25).", min=2, max=200, main=True)
    skip_steps: int = setting(6, "Steps skipped at the noisy end (paper's skip_step_num 6): inversion runs "
                                 "steps − skip_steps steps; the optimisation happens at the first remaining "
                                 "step.", min=0, max=199, main=True)
    scheduler: str = setting("simple", "Sigma schedule (the model's own shift).", options=SCHEDULERS,
                             main=True)
    guidance: float = setting(3.5, "FLUX distilled guidance of the edited branch (paper 3.5); the inversions "
                                   "use 'inversion_guidance' (0 = this value; the paper: 1), the original branch 1.",
                              min=0.0, max=100.0, step=0.1, main=True)
    inversion_guidance: float = setting(0.0, "FLUX guidance of the inversions (source and proposal) and the K/V "
                                             "capture; 0 = the edited branch's 'guidance', so the background "
                                             "held on the inversion's path and the edited region follow one ODE "
                                             "(paper: 1).", min=0.0, max=100.0, step=0.1, paper=1.0)
    n_transport: int = setting(0, "TRANSPORT iterations: the affine grows with progress p = (τ+1)/n_transport "
                                  "(0 here because init 'moved' already starts at the final pose).",
                               min=0, max=1000, paper=50)
    n_intensify: int = setting(0, "INTENSIFY iterations at the final pose (paper: 20). 0 here: with init "
                                  "'reinverted' the start already holds each region at its pose, and the "
                                  "token-grid feature target of a rotation disagrees with that start (20 "
                                  "iterations turned two-part objects by 140–180°; docs/dragflow.md).",
                               min=0, max=1000, paper=20)
    optimizer: str = setting("adam", "adam: Adam steps of about 'adam_lr' latent units, the same for any image "
                                     "size; normalized: gradient divided by its RMS; sgd: plain gradient "
                                     "descent with 'lr' (paper).", options=OPTIMIZERS, paper="sgd")
    adam_lr: float = setting(0.001, "Step of the adam / normalized optimizer, in latent units per iteration. "
                                    "Keep n_intensify × adam_lr well under the object's share (1 − σ₀)·amplitude "
                                    "of the latent at σ₀, or thin parts dissolve.",
                             min=0.0, max=10.0, step=0.001, paper=SILENT)
    lr: float = setting(1000.0, "Gradient-descent step of optimizer 'sgd' (paper code: 1000); its effect "
                                "depends on the image size.", min=0.0, max=1e7, step=10.0)
    target_warp: str = setting("nearest", "How the original features are resampled at a region's pose: nearest "
                                          "= each cell a real feature vector (a bilinear target of a rotation on "
                                          "the coarse token grid is a blurred object, which the optimisation "
                                          "paints); bilinear = the paper's warp.", options=TARGET_WARPS,
                               paper="bilinear")
    adaptive_weights: bool = setting(True, "Region weights ∝ clamp(1 + 0.5/(area + 0.1), 1, 5) (small regions "
                                           "count more); off = equal weights.")
    scale_rule: str = setting("fixed", "Feature-grid rule: fixed = image side / 2, 3 or 4 by size; adaptive = "
                                       "make the mean drag 30 cells long.", options=SCALE_RULES)
    feature_scale: float = setting(0.0, "Override: feature grid = image / this; 0 = use the rule.", min=0.0,
                                   max=64.0, step=0.5)
    feature_grid: str = setting("token", "token: compare features on the model's own token grid; image: read "
                                         "each token as 2×2 sub-pixels resized to the image / level grid "
                                         "(paper; uses scale_rule/feature_scale).", options=FEATURE_GRIDS,
                                paper="image")
    kv_preset: str = setting("none", "Blocks whose K/V come from the inversion (identity preservation): "
                                     "non-ridge (paper default), position, none or custom (kv_custom). Off by "
                                     "default: no measured gain on the toy world (docs/dragflow.md). Mapped "
                                     "proportionally on models with another block count.",
                             options=KV_CHOICES, paper="non-ridge")
    kv_custom: str = setting("", "Custom blocks: 'double: 0, 7; single: 6, 37' or global indices '0, 7, 25' "
                                 "(single = global − #double).")
    kv_scope: str = setting("outside_edit", "Image tokens of the edited branch whose K/V come from the "
                                            "inversion: outside_edit = only the kept background, never the "
                                            "regions, their destinations or the hole; all = every token (pulls "
                                            "the layout back to the source).", options=KV_SCOPES, paper="all")
    background: str = setting("proposal", "What the hard constraint keeps outside the editable area: "
                                          "proposal (init reinverted) = the latents of the proposal's own "
                                          "inversion, which equal the source outside the editable area at "
                                          "σ = 0 (the start and the background are one inversion, no seam "
                                          "between two); inversion = the source inversion's own latents (the "
                                          "source, exactly; no extra forwards); resample = the original "
                                          "branch re-sampled at guidance 1.", options=BACKGROUNDS,
                               paper="resample")
    hole_fill: str = setting("surroundings", "The area a region leaves: surroundings = re-drawn from the "
                                             "background around it with fresh noise and held there while "
                                             "optimising, so the sampler regenerates it; none = left as "
                                             "inverted (the object stays).", options=HOLE_FILLS, paper="none")
    hole_texture: str = setting("continued", "How the geometric proposal (init reinverted) fills the vacated area: "
                                             "continued (ours, LazyDrag's hole fill) = the mean of the 8 best-matching "
                                             "offset copies of the image when they predict a held-out ring around "
                                             "the hole better than the membrane does (a texture continues, a smooth "
                                             "ground is not patched with other places' light), the membrane "
                                             "otherwise; shifted = the one offset copy (≤ 16 latent cells) whose "
                                             "copy best matches the hole's rim, or the smooth fill where that "
                                             "predicts the rim better (before); smooth = averaged in from the "
                                             "surroundings (a blur).", options=HOLE_TEXTURES, paper=SILENT)
    content_contrast: float = setting(0.5, "init reinverted: which painted cells are copied to the target as they "
                                           "are — those that stand out from the background the surroundings "
                                           "continue into the region by at least this share of the region's "
                                           "strongest contrast (the object); the rest (a cast shadow, a penumbra) "
                                           "moves as its deviation from that background, added to the target's "
                                           "own ground, and the whole painted area is filled as background. 0 = "
                                           "every painted cell copied as is, only the vacated cells filled (the "
                                           "paper's region moves as a whole; before issue 27's third pass).",
                                      min=0.0, max=1.0, step=0.05, paper=0.0)
    occluder_contrast: float = setting(0.5, "content_contrast > 0: unpainted objects in front (unpainted areas "
                                            "enclosed by edges of at least this share of the painted content's "
                                            "contrast, off the image border; LazyDrag's rule) that touch the region "
                                            "or its destination stay as they are, and the fill and a moved shadow's "
                                            "background continue behind them, not from their colour. 0 = none.",
                                       min=0.0, max=1.0, step=0.05, paper=0.0)
    depth: str = setting("auto", "With occluder_contrast: where moved content lands on an unpainted object in "
                                 "front: auto = behind the objects that covered the region at its source, over "
                                 "the others; under = behind every one (an object dragged behind another); over "
                                 "= over every one (the paper pastes the region). A region's or drag's own \"depth\" in "
                                 "the instructions (behind = under, front = over) overrides this for it.",
                         options=DEPTHS, paper="over")
    hole_release: float = setting(0.3, "hole_fill surroundings: while sampling, the vacated area stays on the "
                                       "noisy path of its re-drawn background down to this σ, then the sampler "
                                       "blends it in; 1 = never held while sampling, 0 = held to the end.",
                                  min=0.0, max=1.0, step=0.05, paper=SILENT)
    init: str = setting("reinverted", "Where the optimisation starts: reinverted = inside the editable area, "
                                      "the inversion of the source with each region moved to its final pose "
                                      "and its hole filled (one more inversion; the object's latent fits its "
                                      "new place); moved = each region's own inverted latent copied to its "
                                      "final pose; source = the inverted latent as is (TRANSPORT then moves "
                                      "the region).", options=INITS, paper="source")
    hole_margin: int = setting(64, "init reinverted, hole_fill surroundings: the vacated cells within this many "
                                   "tokens of a moved region keep the inversion of the filled hole; only the "
                                   "rest is re-drawn with fresh noise. 64 (default) = none: the proposal's "
                                   "inversion already encodes the filled background, and one fresh cell could "
                                   "seed a new object or dissolve a faint part. -1 = the whole hole fresh.",
                                min=-1, max=64, paper=SILENT)
    edit_region: str = setting("regions", "Editable area: regions = the cells of the regions and their moved "
                                          "copies (+ edit_dilate); rect = the minimum-area rectangle around "
                                          "each region and its copy.", options=EDIT_REGIONS, paper="rect")
    edit_dilate: int = setting(0, "Latent cells added around the regions (edit_region 'regions'), to let the "
                                  "edit blend into its surroundings.", min=0, max=64, paper=SILENT)
    eta: float = setting(0.0, "K ← η·K + (1−η)·K̄ (same for V): 0 = full replacement (paper), 1 = no "
                              "injection.", min=0.0, max=1.0, step=0.05)
    inject_text: bool = setting(True, "Single blocks: replace text tokens' K/V too (paper); off = image tokens "
                                      "only.")
    early_exit: bool = setting(True, "Stop optimisation forwards after the last feature block (same gradient, "
                                     "single blocks skipped).")
    gradient_checkpointing: bool = setting(True, "Recompute blocks in backward: much less memory, about a "
                                                 "third more time per iteration.")
    activations: str = setting("model", "Activation dtype: the model's (fast) or fp32 (more memory). Weights "
                                        "are never changed.", options=ACTIVATIONS, paper="fp32")
    cache_policy: str = setting("cpu", "Where the inversion's K/V live: cpu (pinned on CUDA), fp8 on cpu (half "
                                       "of bf16), device (fastest, costs VRAM).", options=KV_CACHE_POLICIES)
    cache_budget_gb: float = setting(0.0, "Refuse when the K/V cache would exceed this many GiB. 0 = "
                                          "automatic: a cpu/fp8 cache may use 80% of the RAM available when "
                                          "the inversion starts; device: no limit.", min=0.0, max=4096.0,
                                     step=0.5)
    reveal_release: int = setting(1, "An object dragged out from behind another (init reinverted, content_contrast "
                                     "and occluder_contrast > 0, which find the objects in front): the cells of the "
                                     "objects in front within this many latent cells of the moved content at its "
                                     "source, moved with the region, are freed for the sampling (not the "
                                     "optimisation) and start from the source's own inversion, so the model draws "
                                     "the hidden part there. 0 = none (paper: the region moves as painted).",
                                  min=0, max=64, paper=0)
    reveal_hold: float = setting(0.2, "reveal_release: while the freed cells are drawn, the editable area stays on "
                                      "the proposal's inversion path down to this σ (left free, the model erased the "
                                      "whole moved object on some scenes); 1 = not held.",
                                 min=0.0, max=1.0, step=0.05, paper=SILENT)
    region_scale: bool = setting(True, "A region's scale (a relocate or deform with \"scale\": [rx, ry], or a move "
                                       "drag's scale) scales it about its begin point as it moves (ours). Off: "
                                       "the paper's three ops, which do not scale: the region only moves.",
                                 paper=False)
    hinge_keep: bool = setting(True, "occluder_contrast > 0: a rotate region with an anchor leaves where they are "
                                     "its painted cells beyond the anchor that continue an unpainted object (the "
                                     "paint over a limb's base at its joint: turned away, they split the limb; "
                                     "ours). Off: the region turns as painted (paper).",
                               paper=False)
    content_reference: str = setting("texture", "content_contrast > 0: what a painted cell must stand out from to be "
                                                "copied as content: texture (ours) = both the membrane of its "
                                                "surroundings and the image's own continuation into the paint (the "
                                                "best-matching offset copy), so a texture's cells under a painted "
                                                "shadow stay (LazyDrag's rule); membrane = the membrane only.",
                                     options=CONTENT_REFERENCES, paper="membrane")
    content_piece: str = setting("largest", "content_contrast > 0: of the painted cells that stand out, which are "
                                            "copied: largest (ours) = the largest connected piece of each painted "
                                            "part (the dragged object is one piece; a texture's cell or a shadow's "
                                            "edge elsewhere in the paint is filled; LazyDrag's rule); all = every "
                                            "one.", options=CONTENT_PIECES, paper="all")
    shadow_carry: str = setting("none", "content_contrast > 0: how the painted rest (a cast shadow) travels: none "
                                        "(ours) = it is filled as ground with the rest of the paint and the sampler "
                                        "draws the shadow (carried by a move it lands beside the new one); in_place "
                                        "(ours, LazyDrag's cast_shadow rule) = only when the region keeps its content "
                                        "where it stands (a rotation), turned about the shadow's own pivot, and only "
                                        "on a smooth ground; rigid = with the region's own motion.",
                                options=SHADOW_CARRIES, paper="rigid")
    content_growth: str = setting("split", "content_contrast > 0: how far the copied content reaches: split (ours, "
                                           "LazyDrag's rule) = grown, through side-by-side painted cells only, into "
                                           "those that score with the object rather than the ground (the two-group "
                                           "split of the part's contrasts, at least 0.2 and at most 0.9 × "
                                           "content_contrast of its strongest), so a lit object's shaded side is "
                                           "copied with it while a cast shadow stays (paint some ground around it); "
                                           "none = content_contrast alone.",
                                  options=CONTENT_GROWTHS, paper="none")
    destination_hold: float = setting(0.6, "init reinverted: while sampling, the moved regions' cells stay on the noisy "
                                           "path of the proposal's inversion (each region at its final pose) down to "
                                           "this σ, then the model blends them in (ours). Left free from the start, the "
                                           "model erased a thin bent limb at its new pose on some scenes (toy bends: "
                                           "joint error 6.1° → 1.5°, MD 0.28 → 0.14). The hold overrides the latent "
                                           "optimisation there (n_transport / n_intensify). 1 (or any σ at or above "
                                           "the first sampling σ) = never held (the paper has no proposal).",
                                  min=0.0, max=1.0, step=0.05, paper=1.0)


#: DragFlow as in the paper: every departure above at the paper's value (docs/dragflow.md)
PAPER = paper_settings(DragFlowSettings)


def plan_edit(drag_instructions, latent_samples: torch.Tensor, settings: DragFlowSettings,
              node: str = NODE_OPT) -> tuple:
    """Every check of a DragFlow edit, before any model call: (instructions at the latent's size,
    :class:`~..core.dragflow_plan.DragFlowPlan`)."""
    st = settings
    validate(st, node)
    check_latent(latent_samples, node)
    if latent_samples.shape[0] != 1:
        raise FluxDragInputError(f"{node}: input 'latent' has a batch of {latent_samples.shape[0]}; "
                                 f"DragFlow edits one image at a time.")
    if not st.skip_steps < st.steps:
        raise FluxDragInputError(f"{node}: input 'skip_steps' ({st.skip_steps}) must be smaller than "
                                 f"'steps' ({st.steps}).")
    if st.background == "proposal" and st.init != "reinverted":
        raise FluxDragInputError(f"{node}: input 'background' proposal keeps the inversion of the proposal, "
                                 f"which only init 'reinverted' makes; set init 'reinverted' or background "
                                 f"'inversion'.")
    h, w = latent_samples.shape[-2:]
    ins, regions = regions_for_latent(drag_instructions, h * 8, w * 8, node, scale=st.region_scale)
    if st.hinge_keep:
        regions = hinge_kept(latent_samples, regions, st.occluder_contrast)
    stated = [k for k, r in enumerate(regions) if r.depth != "auto"]
    if stated and not (st.init == "reinverted" and st.content_contrast > 0 and st.occluder_contrast > 0):
        warnings.warn(f"{node}: region(s) {', '.join(map(str, stated))} state a depth, which only init "
                      f"'reinverted' with content_contrast > 0 and occluder_contrast > 0 can honour (they find "
                      f"the objects in front); it is ignored. Set them, or leave depth out", stacklevel=2)
    margin = st.hole_margin if st.init == "reinverted" else -1
    plan = plan_dragflow(regions, (h, w), hole_margin=margin, **pick(st, PLAN_FIELDS))
    return ins, plan


PLAN_FIELDS = ("edit_region", "edit_dilate", "feature_scale", "scale_rule", "feature_grid", "kv_scope",
               "adaptive_weights", "hole_fill", "n_transport", "n_intensify")
