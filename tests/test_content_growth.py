"""``content_growth`` "split" [ours] (core.correspondence_content.grown_content): a lit object's shaded
side stands out from the ground by less than half its lit side's contrast, so ``content_contrast``
alone left it behind (toy scene 219000: IoU 0.525 for LazyDrag, DragFlow and ContextDrag). The
content grows into the pixels that score with the object's group (the part's two-class split),
through 4-neighbours only, never into a part apart from every handle or the rest of an unpainted
object; "none" is the old rule."""
import warnings

import pytest
import torch

from fluxdrag.core.correspondence import content_pixels  # first: it imports correspondence_latent in its order
from fluxdrag.core.correspondence_content import content_score, grown_content, two_class_threshold

H = W = 32


def _lit_scene():
    """An object (channel 2) lit from its right: its left columns are shaded (0.45 × the lit contrast),
    and its cast shadow lies to the lower left with a dark umbra touching the object's corner only
    diagonally (0.4 ×) and a faint penumbra (0.1 ×) touching the shaded side; the paint takes in
    ground around them."""
    z = torch.zeros(16, H, W)
    obj = torch.zeros(H, W, dtype=torch.bool)
    obj[10:16, 10:16] = True
    shaded = obj.clone()
    shaded[:, 13:] = False
    z[2, obj & ~shaded] = 3.0
    z[2, shaded] = 0.45 * 3.0
    umbra = torch.zeros(H, W, dtype=torch.bool)
    umbra[16:19, 7:10] = True                    # meets obj[15, 10] at a corner
    penumbra = torch.zeros(H, W, dtype=torch.bool)
    penumbra[10:16, 7:10] = True                 # along the shaded side
    z[1, umbra] = -0.4 * 3.0
    z[1, penumbra] = -0.1 * 3.0
    painted = torch.zeros(H, W, dtype=torch.bool)
    painted[6:21, 5:20] = True                   # painted generously: ground around it
    return z, obj, shaded, umbra, painted


def test_two_class_threshold_splits_two_groups():
    v = torch.tensor([0.0, 0.05, 0.1, 0.12, 0.46, 0.5, 0.9, 1.0])
    t = two_class_threshold(v)
    assert 0.12 < t < 0.46
    assert two_class_threshold(torch.tensor([0.3])) == 0.0


def test_the_shaded_side_moves_and_the_umbra_stays():
    z, obj, shaded, umbra, painted = _lit_scene()
    old = content_pixels(z, painted, 0.5)
    assert torch.equal(old, obj & ~shaded)                     # content_contrast alone: the lit side
    got = content_pixels(z, painted, 0.5, grow=True)
    assert torch.equal(got, obj)                               # the whole object, no shadow
    # the umbra scores with the object's group: only the 4-neighbour growth keeps it out
    score = content_score(z, painted)
    assert float(score[umbra].min()) >= two_class_threshold(score[painted])
    assert torch.equal(content_pixels(z, painted, 0.0, grow=True), painted)   # the paper: the whole region


def test_a_part_apart_from_every_handle_does_not_grow():
    z, obj, shaded, umbra, painted = _lit_scene()
    other = torch.zeros(H, W, dtype=torch.bool)
    other[24:29, 22:28] = True                   # a second painted part: a faint block with a bright cell
    z[3, other] = 0.45 * 3.0
    z[3, 26, 24] = 3.0
    paint = painted.clone()
    paint[23:31, 21:30] = True                   # painted with ground around it
    handle = torch.tensor([[12.0, 12.0]])        # (x, y) on the object
    got = content_pixels(z, paint, 0.5, grow=True, anchors=handle)
    assert torch.equal(got & obj, obj)
    assert int((got & other).sum()) == 1         # its bright cell stays content (as before), ungrown
    both = content_pixels(z, paint, 0.5, grow=True, anchors=torch.cat([handle, torch.tensor([[24.0, 26.0]])]))
    assert torch.equal(both & other, other)      # with a drag on it, it is a dragged object and grows


def test_the_growth_never_enters_the_rest_of_an_unpainted_object():
    """``objects``: painted pixels that continue an unpainted object (a limb's base at its joint,
    ``FrontObjects.continued``) stay out of the growth, as ``stay_continued`` keeps them."""
    z, obj, shaded, umbra, painted = _lit_scene()
    base = shaded & (torch.arange(W) == 10)[None, :]          # the shaded side's outer column

    class _Base:
        def continued(self, vacant):
            return vacant & base

    got = content_pixels(z, painted, 0.5, grow=True, objects=_Base())
    assert torch.equal(got, obj & ~base)
    keep = obj & ~shaded
    score = torch.zeros(H, W)
    score[shaded] = 0.45
    score[keep] = 1.0
    assert torch.equal(grown_content(keep, painted, score, 0.5), obj)
    assert torch.equal(grown_content(keep, painted, score, 0.5, avoid=base), obj & ~base)
    assert torch.equal(grown_content(keep, painted, score, 0.0), keep)   # contrast 0: no rule to grow


def test_settings_defaults_and_paper_values():
    from fluxdrag.pipelines.contextdrag import PAPER as CD_PAPER
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.pipelines.dragflow_inputs import PAPER as DF_PAPER
    from fluxdrag.pipelines.dragflow_inputs import DragFlowSettings
    from fluxdrag.pipelines.lazydrag import PAPER as LD_PAPER
    from fluxdrag.pipelines.lazydrag import LazyDragSettings

    for cls, paper in ((LazyDragSettings, LD_PAPER), (ContextDragSettings, CD_PAPER), (DragFlowSettings, DF_PAPER)):
        assert cls().content_growth == "split" and paper.content_growth == "none"


def _scene_219000():
    from fluxdrag.toyworld.model import scene_latent_to_comfy
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(219000, "lit", "move")
    obj = sc.masks[sc.moved].any(0)
    return sc, obj, scene_latent_to_comfy(sc.latent)["samples"]


@pytest.mark.parametrize("growth", ["split", "none"])
def test_the_toy_scene_219000_moves_its_shaded_half(growth):
    """Toy ``lit`` move 219000 (light from the right, moved by (+10, -1) latent pixels): the three methods'
    content before this rule was the lit half (10 of 19 pixels short); with "split" each carries the
    whole object and nothing else: ContextDrag's map, LazyDrag's map (its destination is the object
    moved) and DragFlow's proposal (the object's latent copied to its destination)."""
    from bench.toybench.pack_methods import dragflow_regions
    from fluxdrag.pipelines.contextdrag import ContextDragSettings, build_map
    from fluxdrag.pipelines.dragflow import proposal
    from fluxdrag.pipelines.dragflow_inputs import DragFlowSettings, plan_edit
    from fluxdrag.pipelines.lazydrag import build_plan

    sc, obj, lat = _scene_219000()
    moved = torch.roll(obj, shifts=(-1, 10), dims=(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rmap = build_map(sc.drags, lat, settings=ContextDragSettings(content_growth=growth))
        plan = build_plan(sc.drags, lat, content_growth=growth)
        st = DragFlowSettings(content_growth=growth)
        _, dplan = plan_edit(dict(sc.drags, regions=dragflow_regions(sc)), lat, st)
    x_hat = proposal(lat, dplan.regions, hole_texture=st.hole_texture, content_contrast=st.content_contrast,
                     occluder_contrast=st.occluder_contrast, depth=st.depth, content_reference=st.content_reference,
                     content_piece=st.content_piece, shadow_carry=st.shadow_carry, content_growth=st.content_growth)
    cd = rmap.paint_mask & (rmap.content_score >= 0.5)
    ld = plan.cmap.fine.destination
    copied = (x_hat[0][:, moved] - lat[0][:, obj]).abs().amax(0) < 1e-5      # per object pixel, in raster order
    if growth == "split":
        assert torch.equal(cd, obj) and torch.equal(ld, moved) and bool(copied.all())
    else:
        n = int(obj.sum())
        assert int((cd & obj).sum()) < 0.7 * n and int((ld & moved).sum()) < 0.7 * n and int(copied.sum()) < 0.7 * n


def test_the_growth_never_brings_back_a_piece_the_piece_rule_left_out():
    """``content_piece`` largest drops a smaller standing-out piece (a shadow's dark edge, a texture's cell) as
    background; a band of the object's group joining it to the object must not carry it back (review)."""
    z, obj, shaded, umbra, painted = _lit_scene()
    band = torch.zeros(H, W, dtype=torch.bool)
    band[16:18, 13:15] = True                    # under the lit side: 0.4 x, the object's group
    spot = torch.zeros(H, W, dtype=torch.bool)
    spot[18:20, 13:16] = True                    # beyond it: 0.8 x, a smaller standing-out piece
    z[3, band] = 0.4 * 3.0
    z[3, spot] = 0.8 * 3.0
    handle = torch.tensor([[12.0, 12.0]])
    old = content_pixels(z, painted, 0.5, one_piece=True, anchors=handle)
    assert not bool((old & spot).any())
    got = content_pixels(z, painted, 0.5, one_piece=True, anchors=handle, grow=True)
    assert not bool((got & spot).any()) and torch.equal(got & obj, obj)


def test_contextdrag_grows_only_the_dragged_parts_with_every_piece_too():
    """ContextDrag's score with ``content_piece`` all: the growth still keeps to the parts nearest to a handle,
    as LazyDrag's (the review found every part grown there)."""
    from fluxdrag.core.correspondence_content import moving_score

    z, obj, shaded, umbra, painted = _lit_scene()
    other = torch.zeros(H, W, dtype=torch.bool)
    other[24:29, 22:28] = True
    z[3, other] = 0.45 * 3.0
    z[3, 26, 24] = 3.0
    paint = painted.clone()
    paint[23:31, 21:30] = True
    handle = torch.tensor([[12.0, 12.0]])
    for one_piece in (True, False):
        moving = moving_score(z, paint, 0.5, texture=False, one_piece=one_piece, grow=True, anchors=handle) >= 0.5
        assert torch.equal(moving & obj, obj) and int((moving & other).sum()) == 1


def test_a_tight_paint_gives_the_split_no_second_group():
    """The documented limit: with the paint on the object alone (no ground), the part's two groups are the lit
    side and the rest; the threshold lies above ``SPLIT_CEILING`` x ``content_contrast`` and nothing grows."""
    z, obj, shaded, umbra, painted = _lit_scene()
    assert torch.equal(content_pixels(z, obj, 0.5, grow=True), obj & ~shaded)


def test_contextdrag_content_reads_the_ground_behind_an_object_in_front():
    """ContextDrag's map scored its paint against a fill that ran through the objects in front touching it
    (LazyDrag's fill runs behind them): the edge of an object in front, inside the paint, stood out and
    was carried to the target (toy `occlusion` move 217022: 10 carried pixels off the object, BG 0.043)."""
    from fluxdrag.pipelines.contextdrag import ContextDragSettings, build_map
    from fluxdrag.toyworld.model import scene_latent_to_comfy
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(217022, "occlusion", "move")
    obj = sc.masks[sc.moved].any(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rmap = build_map(sc.drags, scene_latent_to_comfy(sc.latent)["samples"], settings=ContextDragSettings())
    content = rmap.paint_mask & (rmap.content_score >= 0.5)
    assert int((content & ~obj).sum()) == 0
    assert int((content & obj).sum()) >= 20


def test_a_split_at_the_cut_finds_no_second_group(monkeypatch):
    """``SPLIT_CEILING``: toy `texture` move 237001, a tile's edge pixel next to the object scores 0.49 and its
    part's two-class threshold is 0.47, at the cut: growing there carried the tile's edge to the target (BG
    0.002 -> 0.028). The part does not grow; with the ceiling lifted it would."""
    import fluxdrag.core.correspondence_content as cc
    from fluxdrag.pipelines.lazydrag import build_plan
    from fluxdrag.toyworld.model import scene_latent_to_comfy
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(237001, "texture", "move")
    after = sc.masks_after[sc.moved].any(0)
    lat = scene_latent_to_comfy(sc.latent)["samples"]

    def stray(growth="split"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int((build_plan(sc.drags, lat, content_growth=growth).cmap.fine.destination & ~after).sum())

    assert stray() == stray("none")              # the old rule's one stray pixel, no more
    monkeypatch.setattr(cc, "SPLIT_CEILING", 1.0)
    assert stray() == stray("none") + 1


def test_ground_next_to_a_textured_object_is_no_object_in_front():
    """``REPEAT_SLACK``: toy `texture` move 230017. An unpainted ground region beside the paint missed the
    ground-repeat test by 7 % of the edge jump and was read as an object in front (14 pixels); the fill ran
    behind it and the content changed (BG 0.037 for the three methods). A limb's base that continues into the
    paint (toy bend 231003) still stays: ``continued`` keeps the strict test."""
    from fluxdrag.core.correspondence import FrontObjects
    from fluxdrag.pipelines.contextdrag import ContextDragSettings, build_map
    from fluxdrag.toyworld.model import scene_latent_to_comfy
    from fluxdrag.toyworld.scenes import make_scene

    def front(seed, family, case):
        sc = make_scene(seed, family, case)
        lat = scene_latent_to_comfy(sc.latent)["samples"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            P = build_map(sc.drags, lat, settings=ContextDragSettings()).paint_mask
        return FrontObjects(lat, P, 0.5), P

    objects, P = front(230017, "texture", "move")
    assert int(objects.touching(P).sum()) <= 1
    objects, P = front(231003, "articulated", "bend")
    assert int(objects.continued(P).sum()) >= 20


def test_the_texture_continuation_does_not_copy_the_limb_into_itself():
    """``content_score``'s texture reference copies the image from the offset whose copy best matches the ring
    around the paint. On toy bend 14017011 (a straight limb, its base unpainted) the best copy was shifted along
    the limb: it continued the base into the painted free segment, 10 of whose 31 painted pixels then scored
    as ground (21 at 0.5 or more; the three methods broke the limb: LazyDrag MD 2.45, ContextDrag 1.37). With the
    objects around the paint (``FrontObjects.standing``) kept out of the copy, 30 score as content; a smooth
    ground's off-object pixels stay below."""
    from fluxdrag.core.correspondence import FrontObjects, latent_region
    from fluxdrag.core.instructions import rle_decode
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(14017011, "articulated", "bend")
    z = sc.latent
    P = latent_region(rle_decode(sc.drags["mask"]["rle"]), tuple(z.shape[-2:]))
    objects = FrontObjects(z[None], P, 0.5)
    behind = objects.touching(P)
    limb = sc.masks[sc.moved].any(0) & P
    old = content_score(z, P, behind=behind, texture=True)
    new = content_score(z, P, behind=behind, texture=True, objects=objects)
    assert int((old[limb] >= 0.5).sum()) <= 22
    assert int((new[limb] >= 0.5).sum()) >= 30 and not bool((new[P & ~limb] >= 0.5).any())
    got = content_pixels(z, P, 0.5, behind=behind, one_piece=True, texture=True, grow=True, objects=objects)
    assert int((got & limb).sum()) >= 28 and not bool((got & ~limb).any())
