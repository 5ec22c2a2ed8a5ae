"""The pack's drag methods as toy-world benchmark entries, run through their real nodes/patches.

Each takes a ``Scene`` (its ``latent`` and ``drags`` only), the toy MODEL and CONDITIONING, and
returns the edited model-space latent (16, H, W). ContextDrag runs on the toy Kontext
(``fluxdrag/toyworld/toykontext.safetensors``, loaded here once) instead of the passed toy FLUX: it needs a
model trained with a reference image.
"""
from __future__ import annotations

import torch

from fluxdrag.toyworld.model import comfy_to_scene_latent, scene_latent_to_comfy

from .methods import register

STEPS = 20


def _guidance(cond) -> float:
    return float(cond[0][1].get("guidance", 3.5))


def stated_drags(scene) -> dict:
    """The scene's JSON with the depth the toy user states: in an ``occlusion`` scene of kind
    "hide" (the dragged object goes behind another, ``scene.extra["kind"]`` — from the ground
    truth, as a user knows what they mean) the dragged object's drag says ``"depth": "behind"``;
    every other scene is its JSON as is. Which object goes in front cannot be read from the image
    (the ``overlap`` family puts the moved object on top), so it is the instruction's to say."""
    if scene.family != "occlusion" or scene.extra.get("kind") != "hide":
        return scene.drags
    return dict(scene.drags, drags=[dict(d, depth="behind") for d in scene.drags["drags"]])


def lazydrag(scene, model, cond, steps: int = STEPS, background_query: str = "live",
             background_lock: float = 1.0, **opts) -> torch.Tensor:
    """Correspondence Map → Invert (Uni-Inv, caching for the map) → LazyDrag Patch → Sample.

    ``opts``: further :class:`LazyDragSettings` fields by name (the nodes' defaults otherwise).
    """
    from fluxdrag.pipelines.common import to_latent
    from fluxdrag.pipelines.lazydrag import LazyDragSettings, run_lazydrag

    s = LazyDragSettings(steps=steps, inversion_guidance=_guidance(cond), seed=scene.seed,
                         background_query=background_query, background_lock=background_lock, **opts)
    z = run_lazydrag(model, scene_latent_to_comfy(scene.latent), stated_drags(scene), cond, s)
    return comfy_to_scene_latent(to_latent(model, z, exact=False))[0]


def lazydrag_paper(scene, model, cond) -> torch.Tensor:
    """LazyDrag as in the paper: token map pushed forward, elastic drags never fused, the gate in
    token units, attention control only (no latent locks), background queries cached too — what
    our departures (docs/lazydrag.md) add."""
    from fluxdrag.pipelines.lazydrag import LazyDragSettings
    from fluxdrag.pipelines.settings import departures

    return lazydrag(scene, model, cond, **departures(LazyDragSettings))


def attentiondrag(scene, model, cond, steps: int = STEPS, **opts) -> torch.Tensor:
    """FluxDrag AttentionDrag, FLUX path (Uni-Inv to strength 0.7, one-step move, sample back);
    ``opts``: further :class:`AttentionDragSettings` fields by name."""
    from fluxdrag.pipelines.attention_drag import AttentionDragSettings, run_attention_drag

    s = AttentionDragSettings(steps=steps, inversion_guidance=_guidance(cond), **opts)
    out = run_attention_drag(model, scene_latent_to_comfy(scene.latent), scene.drags, cond, settings=s)
    return out.latent[0]


def attentiondrag_paper(scene, model, cond) -> torch.Tensor:
    """AttentionDrag with the paper's reading of every departure (``pipelines.attention_drag.PAPER``)."""
    from fluxdrag.pipelines.attention_drag import PAPER

    return attentiondrag(scene, model, cond, **PAPER)


def dragflow_regions(scene) -> list[dict]:
    """DragFlow region instructions from a scene's JSON (its editable-region mask and drags only):
    one region per connected part of the mask, driven by the drags nearest to it (a part with no
    drag joins a dragged part of the same object). Drags of mode
    "drag" around a part (the toy world's rotations: handles on a circle about the object) make a
    ``rotate`` about their handles' mean by their mean signed angle; "move" drags make a ``relocate``
    by the mean handle→target displacement; a lone move drag's ``scale`` (a scale / stretch) is the
    region's (a scaled relocate about its handle, ours). Exact for every toy-world case.

    A ``bend`` (toy world v3, articulated objects: one "drag" drag on the free end) becomes a
    ``rotate`` of the masked free segment about the joint, which the adapter takes from the
    scene's ground truth (``scene.extra["joint"]``), as a user would place the anchor. Each region
    carries the depth its drags state (:func:`stated_drags`; ``group_depth`` of the group)."""
    import math

    from fluxdrag.core.affine import rotation_angle
    from fluxdrag.core.correspondence_fields import group_depth
    from fluxdrag.core.instructions import rle_encode
    from fluxdrag.toyworld.scenes import PIXELS_PER_LATENT, _components, latent_mask_to_pixels

    from .methods import _region_latent

    h, w = scene.latent.shape[-2:]
    region = _region_latent(scene.drags, h, w)
    comps = _components(region)
    cents = [torch.tensor(c, dtype=torch.float32).mean(0) for c in comps]      # (row, col)
    groups: dict[int, list[dict]] = {i: [] for i in range(len(comps))}
    for d in stated_drags(scene)["drags"]:
        hr = d["handle"][1] / PIXELS_PER_LATENT - 0.5
        hc = d["handle"][0] / PIXELS_PER_LATENT - 0.5
        k = min(range(len(comps)), key=lambda i: float((cents[i] - torch.tensor([hr, hc])).norm()))
        groups[k].append(d)
    # a piece of the mask with no drag that shows the same dragged object as a dragged piece (an
    # object split in two by one in front of it) belongs to that piece's region: the toy user, who
    # knows the object (``scene.masks``), paints one region per object. Other drag-less pieces (a
    # shadow apart from its object) stay where they are
    pieces: dict[int, list] = {k: list(comps[k]) for k in groups if groups[k]}
    owner = {}
    for k, comp in enumerate(comps):
        rows, cols = torch.tensor(comp).T
        owner[k] = {j for j in scene.moved if bool(scene.masks[j][rows, cols].any())}
    for k, comp in enumerate(comps):
        if not groups[k]:
            same = [j for j in pieces if owner[k] & owner[j]]
            if same:
                pieces[same[0]] += comp
    out = []
    for k in pieces:
        ds = groups[k]
        m = torch.zeros(h, w, dtype=torch.bool)
        for r, c in pieces[k]:
            m[r, c] = True
        rle = {"rle": rle_encode(latent_mask_to_pixels(m))}
        hx = sum(d["handle"][0] for d in ds) / len(ds)
        hy = sum(d["handle"][1] for d in ds) / len(ds)
        joint = scene.extra.get("joint") if scene.case == "bend" else None
        depth = group_depth([d.get("depth", "auto") for d in ds])
        depth = {} if depth == "auto" else {"depth": depth}
        if joint is not None:
            bx, by = ds[0]["handle"]
            tx, ty = ds[0]["target"]
            out.append({"op": "rotate", "mask": rle, "begin": [float(bx), float(by)],
                        "target": [float(tx), float(ty)], "anchor": [float(joint[0]), float(joint[1])],
                        **depth})
        elif len(ds) >= 2 and all(d.get("mode") == "drag" for d in ds):
            theta = sum(rotation_angle(d["handle"], d["target"], (hx, hy)) for d in ds) / len(ds)
            bx, by = ds[0]["handle"]
            c, s = math.cos(theta), math.sin(theta)
            tx, ty = hx + c * (bx - hx) - s * (by - hy), hy + s * (bx - hx) + c * (by - hy)
            out.append({"op": "rotate", "mask": rle, "begin": [float(bx), float(by)],
                        "target": [tx, ty], "anchor": [hx, hy], **depth})
        else:
            tx = sum(d["target"][0] for d in ds) / len(ds)
            ty = sum(d["target"][1] for d in ds) / len(ds)
            scale = [float(v) for v in ds[0].get("scale") or (1.0, 1.0)] if len(ds) == 1 else [1.0, 1.0]
            out.append({"op": "relocate", "mask": rle, "begin": [hx, hy], "target": [tx, ty],
                        "anchor": None, **({"scale": scale} if scale != [1.0, 1.0] else {}), **depth})
    return out


def dragflow(scene, model, cond, steps: int = 25, **opts) -> torch.Tensor:
    """FluxDrag Region Affine Optimise with the scene's regions (:func:`dragflow_regions`: one per
    dragged object — relocations, rotations, several regions for multi-object moves) and the
    node's defaults; ``opts``: further :class:`DragFlowSettings` fields by name."""
    from fluxdrag.pipelines.dragflow import DragFlowSettings, run_dragflow

    doc = dict(stated_drags(scene), regions=dragflow_regions(scene))
    opts.setdefault("skip_steps", max(1, round(steps * 6 / 25)))
    opts.setdefault("guidance", _guidance(cond))
    s = DragFlowSettings(steps=steps, **opts)
    z, *_ = run_dragflow(model, scene_latent_to_comfy(scene.latent), cond, cond, doc, settings=s)
    return z[0]


def dragflow_no_kv(scene, model, cond) -> torch.Tensor:
    """DragFlow without K/V injection (``kv_preset`` none): on a model this small, injecting the
    source's K/V pins the layout as well as the appearance, so this row shows what the latent
    optimisation alone moves."""
    return dragflow(scene, model, cond, kv_preset="none")


def dragflow_kv(scene, model, cond) -> torch.Tensor:
    """DragFlow with the paper's K/V injection (``kv_preset`` non-ridge; off by default since
    issue 27: no measured gain on the toy world): the row that measures what it adds."""
    return dragflow(scene, model, cond, kv_preset="non-ridge")


def dragflow_paper(scene, model, cond) -> torch.Tensor:
    """DragFlow with the paper's value of every departure (``pipelines.dragflow.PAPER``)."""
    from fluxdrag.pipelines.dragflow import DragFlowSettings
    from fluxdrag.pipelines.settings import departures

    return dragflow(scene, model, cond, **departures(DragFlowSettings))


#: toy Kontext weights the ContextDrag rows load (None: the shipped ``KONTEXT_WEIGHTS``; run.py --kontext)
KONTEXT_PATH = None
_KONTEXT: dict = {}


def contextdrag(scene, model, cond, steps: int = STEPS, cti: bool = True, pca: bool = True,
                **opts) -> torch.Tensor:
    """Reverse Mapping → Context Token Injection → Position-Consistent Attention (the nodes'
    defaults) on the toy Kontext, sampled as the Kontext graph does: the source as the
    ReferenceLatent of the positive, an empty latent of its size, KSampler euler/simple, cfg 1,
    ``steps`` steps, noise seed = the scene's seed. ``cti`` / ``pca`` False drop that patch (both
    False = plain Kontext "keep"); ``opts``: further :class:`ContextDragSettings` fields by name."""
    import comfy.sample
    from comfy_extras.nodes_edit_model import ReferenceLatent

    from fluxdrag.pipelines.contextdrag import ContextDragSettings, apply_cti, apply_pca, build_map
    from fluxdrag.toyworld.model import KONTEXT_WEIGHTS, load_toy_model

    if "model" not in _KONTEXT:
        _KONTEXT["model"], _KONTEXT["cond"] = load_toy_model(KONTEXT_PATH or KONTEXT_WEIGHTS)
    kmodel, kcond = _KONTEXT["model"], _KONTEXT["cond"]
    ref = scene_latent_to_comfy(scene.latent)
    positive = ReferenceLatent.execute(kcond, ref).args[0]
    st = ContextDragSettings(**opts)
    rmap = build_map(stated_drags(scene), ref["samples"], settings=st)
    if cti:
        kmodel, _ = apply_cti(kmodel, rmap, st)
    if pca:
        kmodel, _ = apply_pca(kmodel, rmap, st)
    noise = torch.randn(ref["samples"].shape, generator=torch.Generator().manual_seed(scene.seed))
    out = comfy.sample.sample(kmodel, noise, steps, 1.0, "euler", "simple", positive, positive,
                              torch.zeros_like(ref["samples"]), seed=scene.seed, disable_pbar=True)
    return comfy_to_scene_latent(out)[0]


def contextdrag_cti_only(scene, model, cond) -> torch.Tensor:
    """ContextDrag ablation: Context Token Injection alone (no PCA)."""
    return contextdrag(scene, model, cond, pca=False)


def contextdrag_pca_only(scene, model, cond) -> torch.Tensor:
    """ContextDrag ablation: Position-Consistent Attention alone (no CTI)."""
    return contextdrag(scene, model, cond, cti=False)


def contextdrag_paper(scene, model, cond) -> torch.Tensor:
    """ContextDrag with the paper's value of every departure (whole tokens, no composite, no hole
    fill, no background lock, one hull over everything; ``departures(ContextDragSettings)``)."""
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.pipelines.settings import departures

    return contextdrag(scene, model, cond, **departures(ContextDragSettings))


def contextdrag_keep(scene, model, cond) -> torch.Tensor:
    """ContextDrag ablation: neither patch — the toy Kontext given the source as its reference."""
    return contextdrag(scene, model, cond, cti=False, pca=False)


register("lazydrag", lazydrag)
register("lazydrag_paper", lazydrag_paper)
register("attentiondrag", attentiondrag)
register("attentiondrag_paper", attentiondrag_paper)
register("dragflow", dragflow)
register("dragflow_no_kv", dragflow_no_kv)
register("dragflow_kv", dragflow_kv)
register("dragflow_paper", dragflow_paper)
register("contextdrag", contextdrag)
register("contextdrag_cti_only", contextdrag_cti_only)
register("contextdrag_pca_only", contextdrag_pca_only)
register("contextdrag_keep", contextdrag_keep)
register("contextdrag_paper", contextdrag_paper)
