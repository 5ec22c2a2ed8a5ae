"""Tier 2: DragFlow moves an object on the toy model with the node's defaults (issue 17).

The optimiser test in ``test_tier2_dragflow.py`` (a loss drop) is no evidence of moving; this one
runs the whole edit — Region Affine Optimise's defaults, a ``relocate`` of one object drawn from a
toy scene's own mask and drag — and finds the object in the result by its palette signature.
"""
from __future__ import annotations

import math

import pytest
import torch
from comfy_fixtures import comfy, toy  # noqa: F401

pytestmark = pytest.mark.tier2


@pytest.mark.parametrize("seed", [77, 78])
def test_relocate_with_node_defaults_moves_the_object(toy, seed):
    from fluxdrag.core.instructions import rle_encode
    from fluxdrag.pipelines.dragflow import DragFlowSettings, run_dragflow
    from fluxdrag.toyworld.model import comfy_to_scene_latent, scene_latent_to_comfy
    from fluxdrag.toyworld.scenes import detect_objects, latent_mask_to_pixels, make_scene

    model, cond = toy
    sc = make_scene(seed, "single", "move")
    i = sc.moved[0]
    (d,) = sc.drags["drags"]
    region = {"op": "relocate", "mask": {"rle": rle_encode(latent_mask_to_pixels(sc.masks[i]))},
              "begin": d["handle"], "target": d["target"], "anchor": None}
    doc = dict(sc.drags, regions=[region])
    with torch.inference_mode():
        z, *_ = run_dragflow(model, scene_latent_to_comfy(sc.latent), cond, cond, doc,
                             settings=DragFlowSettings())
    from fluxdrag.pipelines.common import to_latent

    edited = comfy_to_scene_latent(to_latent(model, z, exact=False))[0]
    k = sc.objects[i].palette
    before = detect_objects(sc.latent, k).centre
    after = detect_objects(edited, k).centre
    assert after is not None, "the object vanished"
    dx, dy = d["target"][0] - d["handle"][0], d["target"][1] - d["handle"][1]
    mx, my = after[0] - before[0], after[1] - before[1]
    along = (mx * dx + my * dy) / (dx * dx + dy * dy)
    assert along >= 0.7, (seed, before, after, (dx, dy))
    assert math.hypot(mx - dx, my - dy) <= 0.3 * math.hypot(dx, dy), (before, after, (dx, dy))
