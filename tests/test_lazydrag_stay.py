"""LazyDrag's ``stay_continued``: the painted pixels that nothing moves and that continue an
unpainted object across no edge stay where they are (a bent limb's base under the paint at its
joint); the hole fill no longer draws ground there and splits the limb."""
import warnings

import torch

from fluxdrag.core.correspondence import FrontObjects
from fluxdrag.pipelines.lazydrag import LazyDragSettings, build_plan
from fluxdrag.toyworld.model import scene_latent_to_comfy
from fluxdrag.toyworld.scenes import make_scene


def _fine(sc, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_plan(sc.drags, scene_latent_to_comfy(sc.latent)["samples"],
                          settings=LazyDragSettings(**kw)).cmap.fine


def test_a_bent_limbs_base_under_the_paint_stays():
    """Toy world bends whose limb split at the joint (136027, 138027: MD 1.79 / 1.49 with the base's
    painted end vacated): the base pixels under the paint (object before and after) that the map
    vacated now mostly stay, each its own source; off, they are vacated as before."""
    for sid in (136027, 138027):
        sc = make_scene(sid, "articulated", "bend")
        base = sc.masks[sc.moved].any(0) & sc.masks_after[sc.moved].any(0)
        off, on = _fine(sc, stay_continued=False), _fine(sc)
        gap_off, gap_on = int((base & off.vacated).sum()), int((base & on.vacated).sum())
        assert gap_off >= 4 and gap_on <= gap_off - 3, (sid, gap_off, gap_on)
        stay = (on.source != off.source) & (on.source >= 0)
        assert bool(stay.any())
        idx = torch.nonzero(stay).flatten()
        assert torch.equal(on.source[idx], idx)                     # their own sources
        assert bool(base.reshape(-1)[idx].float().mean() >= 0.5)    # mostly the base itself


def test_continued_stops_at_an_edge_and_ignores_the_ground():
    """``FrontObjects.continued`` floods from an unpainted object into the vacant pixels across no
    edge only: not across an edge, not from the ground (a region touching the border)."""
    z = torch.zeros(1, 4, 16, 16)
    z[:, 0, 6:10, 2:8] = 3.0                                       # an unpainted object (its left part)
    painted = torch.zeros(16, 16, dtype=torch.bool)
    painted[5:11, 8:14] = True
    z[:, 0, 6:10, 8:10] = 3.0                                       # the object continued under the paint
    z[:, 1, 6:10, 10:12] = 3.0                                      # something else, across an edge
    objects = FrontObjects(z, painted, 0.2)
    got = objects.continued(painted)
    want = torch.zeros(16, 16, dtype=torch.bool)
    want[6:10, 8:10] = True
    assert torch.equal(got, want)
    assert not bool(objects.continued(torch.zeros(16, 16, dtype=torch.bool)).any())


def test_content_a_scale_down_leaves_unread_does_not_stay():
    """A bar half painted (its left half unpainted, same colour) and the painted half shrunk to half
    size elsewhere: the backward map reads only part of the content, and the unread content continues
    the unpainted half across no edge. Without a swing it is moving content: none of it stays (it
    did: 18 of 24 pixels, a ghost beside the shrunk copy; found in review)."""
    from fluxdrag.core.instructions import rle_encode

    lat = torch.zeros(1, 16, 32, 32)
    lat[:, 0, 14:18, 4:28] = 3.0                                   # the bar
    painted = torch.zeros(32, 32, dtype=torch.bool)
    painted[13:19, 16:29] = True                                    # its right half and a margin
    px = painted.repeat_interleave(8, 0).repeat_interleave(8, 1)
    doc = {"version": 1, "image_size": [256, 256], "mask": {"rle": rle_encode(px)},
           "drags": [{"handle": [176, 128], "target": [176, 232], "mode": "move", "scale": [0.5, 0.5]}]}
    from fluxdrag.pipelines.lazydrag import _stay_continued

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fine = build_plan(doc, lat, settings=LazyDragSettings(stay_continued=False)).cmap.fine
    assert fine.joined is None
    content = painted & (lat[0, 0] > 1)                            # every painted bar pixel moves
    objects = FrontObjects(lat, painted, 0.5)
    read = torch.zeros(fine.source.numel(), dtype=torch.bool)
    read[fine.source[fine.source >= 0]] = True
    assert int((content & ~read.reshape(fine.hw)).sum()) >= 12     # a scale-down leaves most unread
    assert int((objects.continued(content & ~read.reshape(fine.hw))).sum()) >= 12   # the ghost it was
    out = _stay_continued(fine, objects, content)
    idx = torch.arange(out.source.numel())
    stays = ((out.source == idx) & (out.source != fine.source)).reshape(fine.hw)
    assert not bool((stays & content).any()), int((stays & content).sum())


def test_the_paints_own_object_witnesses_no_repeat():
    """An object the frame cuts, with the colour of the dragged limb's base (within the edge jump):
    the base is joined to the paint, so it is the painted object's rest and no texture cell repeating
    the border object. Before, each made the other ground (the border object 'repeated' by the base,
    the base a 'repeat' of that ground), ``continued`` found nothing, and the base's painted end was
    vacated: toy scene 141007 split its limb (MD 1.14, IoU 0.59 → 0.11, 0.90)."""
    z = torch.zeros(1, 4, 16, 16)
    z[:, 1, 3:7, 0:3] = 4.0                                          # an object the left border cuts
    z[:, 1, 9:11, 6:9] = 4.2                                         # the unpainted base of a limb
    painted = torch.zeros(16, 16, dtype=torch.bool)
    painted[8:14, 9:14] = True
    z[:, 1, 9:11, 9:11] = 4.2                                        # the base continued under the paint
    z[:, 0, 11:13, 11:13] = 6.0                                      # the painted free part (the edit's content)
    objects = FrontObjects(z, painted, 0.5)
    assert not bool(objects.ground[3:7, 0:3].any())                  # the border object is an object
    got = objects.continued(painted & (z[0, 0] == 0))
    want = torch.zeros(16, 16, dtype=torch.bool)
    want[9:11, 9:11] = True
    assert torch.equal(got, want)


def test_a_limb_beside_a_like_coloured_object_at_the_border_holds():
    """Toy scene 141007 (tuning seed 141): of the three base pixels the map vacates (the two that
    split the limb, and one at the joint where the free part turns away), the two stay; before,
    none did."""
    sc = make_scene(141007, "articulated", "bend")
    base = sc.masks[sc.moved].any(0) & sc.masks_after[sc.moved].any(0)
    assert int((base & _fine(sc, stay_continued=False).vacated).sum()) == 3
    assert int((base & _fine(sc).vacated).sum()) <= 1
