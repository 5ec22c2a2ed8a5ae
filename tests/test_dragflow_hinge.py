"""DragFlow's ``hinge_keep`` (``core.dragflow_proposal.hinge_kept``): a rotate region about a limb's joint whose
paint covers the start of the limb's base turned those base cells away with the free segment, and the limb came
apart at the joint (toy scene 155019: MD 1.41 tokens, IoU 0.42). The painted cells beyond the anchor that continue
an unpainted object now stay; a spun object, painted whole, keeps its region."""
import math

import torch

from bench.toybench.pack_methods import dragflow_regions, stated_drags
from fluxdrag.core.dragflow_proposal import hinge_kept
from fluxdrag.pipelines.dragflow import DragFlowSettings
from fluxdrag.pipelines.dragflow_inputs import PAPER, regions_for_latent
from fluxdrag.toyworld.model import scene_latent_to_comfy
from fluxdrag.toyworld.scenes import make_scene, pixel_grid


def _regions(seed: int, family: str, case: str):
    sc = make_scene(seed, family, case)
    doc = dict(stated_drags(sc), regions=dragflow_regions(sc))
    h, w = sc.latent.shape[-2:]
    _, regions = regions_for_latent(doc, h * 8, w * 8)
    return sc, scene_latent_to_comfy(sc.latent)["samples"], regions


def test_a_hinged_region_leaves_the_base_under_its_paint():
    sc, x, regions = _regions(155019, "articulated", "bend")
    (r,) = regions
    assert r.op == "rotate" and r.anchor is not None
    (kept,) = hinge_kept(x, regions, DragFlowSettings().occluder_contrast)
    lost = r.mask & ~kept.mask
    assert int(lost.sum()) > 0
    limb = sc.objects[sc.moved[0]]
    ys, xs = torch.nonzero(lost, as_tuple=True)
    # every pixel taken off lies beyond the joint, away from the free end, on the base's side
    (ax, ay), (bx, by) = r.anchor, r.begin
    assert bool((((xs + 0.5) - ax) * (bx - ax) + ((ys + 0.5) - ay) * (by - ay) < 8 * math.hypot(bx - ax, by - ay)).all())
    x_px, y_px = pixel_grid(*sc.masks.shape[-2:])
    base_dir = (limb.x0 - limb.joint[0], limb.y0 - limb.joint[1])
    cells = lost.reshape(32, 8, 32, 8).any(3).any(1)
    along = (x_px - limb.joint[0]) * base_dir[0] + (y_px - limb.joint[1]) * base_dir[1]
    assert bool((along[cells] > -1e-6).all())                      # on the base's half-plane
    assert bool(sc.masks[sc.moved[0]][cells].float().mean() > 0.5)  # mostly the limb itself


def test_a_spun_object_keeps_its_region_and_the_paper_turns_as_painted():
    _, x, regions = _regions(153009, "textured_bg", "rotate")
    assert any(r.op == "rotate" for r in regions)
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(regions, hinge_kept(x, regions, 0.5)))
    _, x, regions = _regions(155019, "articulated", "bend")
    assert hinge_kept(x, regions, 0.0) == list(regions)            # no objects found: as painted
    assert DragFlowSettings().hinge_keep and not PAPER.hinge_keep
