"""Tier 2: LazyDrag and DragFlow on the toy model with fp8 weights (ComfyUI's manual-cast fp8 path,
as UNETLoader's ``weight_dtype`` builds it): the edited object lands where the float32 edit puts it
(within one token), and the weights are bit-identical before and after (the pack never touches
weights)."""
from __future__ import annotations

import hashlib

import pytest
import torch
from comfy_fixtures import comfy  # noqa: F401

pytestmark = pytest.mark.tier2

SEED = 5
STEPS = 8


def _node(node_id: str):
    from fluxdrag.nodes import NODE_MODULES

    for mod in NODE_MODULES:
        for cls in mod.NODES:
            if cls.define_schema().node_id == node_id:
                return cls
    raise KeyError(node_id)


def _run(node_id: str, **inputs):
    return _node(node_id).execute(**inputs).args


def _weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.model.diffusion_model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _scene():
    from fluxdrag.toyworld.scenes import make_scene

    return make_scene(SEED, "single", "move")


def _lazydrag(model, cond, scene):
    from fluxdrag.toyworld.model import comfy_to_scene_latent, scene_latent_to_comfy

    lat = scene_latent_to_comfy(scene.latent)
    plan = _run("FluxDragCorrespondenceMap", drag_instructions=scene.drags, latent=lat, seed=0)[0]
    _, rec = _run("FluxDragInvert", model=model, latent=lat, positive=cond, steps=STEPS, solver="uni_inv",
                  guidance=3.5, edit_map=plan)
    patched, z0 = _run("FluxDragLazyDragPatch", model=model, inversion=rec, map=plan)
    out = _run("FluxDragSampleFromInversion", model=patched, inversion=rec, positive=cond, latent=z0)[0]
    return comfy_to_scene_latent(out)[0]


def _dragflow(model, cond, scene):
    from fluxdrag.core.instructions import parse_instructions
    from fluxdrag.toyworld.model import comfy_to_scene_latent, scene_latent_to_comfy
    from tools.toy_graphs import region_doc

    doc = region_doc(scene.seed, scene.family, scene.case)
    out = _run("FluxDragRegionAffineOptimise", model=model, latent=scene_latent_to_comfy(scene.latent),
               source=cond, target=cond, drag_instructions=parse_instructions(doc), steps=STEPS, skip_steps=2,
               n_transport=4, n_intensify=2)[0]
    return comfy_to_scene_latent(out)[0]


@pytest.mark.parametrize("method", ["lazydrag", "dragflow"])
def test_fp8_edit_matches_fp32_and_weights_untouched(comfy, method):
    from fluxdrag.toyworld.model import load_toy_model

    run = {"lazydrag": _lazydrag, "dragflow": _dragflow}[method]
    scene = _scene()
    with torch.inference_mode():   # as ComfyUI's executor runs nodes
        ref_model, cond = load_toy_model()
        ref = run(ref_model, cond, scene)
        model, cond = load_toy_model(weight_dtype="fp8_e4m3fn")
        assert {p.dtype for p in model.model.diffusion_model.parameters()} == {torch.float8_e4m3fn}
        before = _weights_digest(model)
        out = run(model, cond, scene)
    assert _weights_digest(model) == before, "the edit changed the fp8 weights"
    assert {p.dtype for p in model.model.diffusion_model.parameters()} == {torch.float8_e4m3fn}
    assert torch.isfinite(out).all()
    from fluxdrag.toyworld.scenes import detect_objects

    sig = scene.objects[scene.moved[0]].palette
    c_ref, c8 = detect_objects(ref, sig).centre, detect_objects(out, sig).centre
    assert c_ref is not None and c8 is not None, "object lost"
    dist = ((c8[0] - c_ref[0]) ** 2 + (c8[1] - c_ref[1]) ** 2) ** 0.5
    assert dist <= 16.0, f"fp8 {method} puts the object {dist:.1f} px from the float32 edit's {c_ref}"
