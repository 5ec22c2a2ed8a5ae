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


def _content(seed: int):
    from fluxdrag.core.correspondence import FrontObjects
    from fluxdrag.core.dragflow_proposal import _painted, region_content

    sc, x, regions = _regions(seed, "articulated", "bend")
    st = DragFlowSettings()
    kept = hinge_kept(x, regions, st.occluder_contrast)
    P = _painted(kept, tuple(x.shape[-2:]))
    objects = FrontObjects(x, P, st.occluder_contrast)
    C = region_content(x, kept, P, st.content_contrast, behind=objects.touching(P), texture=True, one_piece=True,
                       grow=True, objects=objects)
    obj = sc.masks[sc.moved].any(0)
    return regions, kept, C, obj


def test_the_content_is_read_against_the_paint_as_painted():
    """The base cells ``hinge_keep`` takes off the region stay painted for the content's contrast: as unpainted
    ground they put the limb's own colour into the fill the content is read against. Toy bend 247023 (a bright
    limb on a green ground) then carried 6 of its free segment's 20 cells (the tip; MD 1.10, joint 81°), and
    224003 carried 10 ground cells with 21 of the limb's (its base's colour lifted the ground's contrast)."""
    regions, kept, C, obj = _content(247023)
    (r,), (k,) = regions, kept
    assert k.hinge is not None and torch.equal(k.hinge, r.mask & ~k.mask) and int(k.hinge.sum()) > 0
    assert int((C & obj).sum()) >= 18 and not bool((C & ~obj).any())
    _, _, C, obj = _content(224003)
    assert int((C & obj).sum()) >= 21 and not bool((C & ~obj).any())
