"""ContextDrag's swing, motion warp and depth rule on the cases a review found wrong: a second
painted part near a swing's pivot, a swing with move_affine 'translate', and a part rotated
behind an object in front (its carried and spilled destination tokens)."""
import warnings

import torch

from fluxdrag.core.reverse_mapping import injection_pairs
from fluxdrag.pipelines.contextdrag import build_map, map_for, patched_map
from fluxdrag.toyworld.latent import rle_encode

KW = dict(drag_groups="component", content_contrast=0.0, rigid_tolerance=0.2)


def _doc(px: torch.Tensor, drags: list) -> dict:
    return {"version": 1, "image_size": [256, 256], "mask": {"rle": rle_encode(px)}, "drags": drags}


def _moved_sources(rm) -> set:
    d, s = injection_pairs(rm)
    w = rm.grid_hw[1]
    return {(int(x) % w, int(x) // w) for x, q in zip(s, d) if x != q}


def _on_front(rm, src, front: torch.Tensor) -> torch.Tensor:
    """(n, 2, 2) bool: which latent pixels of each listed token's destination lie on ``front``."""
    from fluxdrag.core.reverse_depth import moved_destinations

    dest = moved_destinations(rm, src)
    w, off = rm.grid_hw[1], torch.arange(2)
    q_rows = (dest // w * 2)[:, None, None] + off[None, :, None]
    q_cols = (dest % w * 2)[:, None, None] + off[None, None, :]
    return front[q_rows, q_cols]


def test_swing_moves_the_dragged_part_not_the_part_nearest_its_pivot():
    """A lone drag on a bar's free end swings the bar about its far end; the pivot lies off the bar
    on the handle -> target bisector, nearer another painted part. The part that moves is still the
    one the drag's handle lies on (the bar), for the point drags and the motion warp alike."""
    from fluxdrag.core.reverse_tokens import motion_parts

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[120:136, 64:176] = True                                    # the bar: token rows 7-8, x 4-10
    px[64:80, 48:80] = True                                       # another part above its far end
    rm = build_map(_doc(px, [{"handle": [168, 128], "target": [168, 40]}]), torch.zeros(1, 16, 32, 32))
    [(part, m)] = motion_parts(rm)
    assert bool(part[7:9, 4:11].any()) and not bool(part[3:5, 3:5].any())
    for warp in ("pixel", "motion"):
        moved = _moved_sources(map_for(rm, True, move_affine="points", swing=True, warp=warp, **KW))
        assert moved and all(y >= 6 for _, y in moved), (warp, moved)     # bar tokens only


def test_swing_with_translate_keeps_the_drag():
    """move_affine 'translate' reads a move drag as its handle -> target; a swing (a move drag from
    the pivot to itself) would then move nothing. The lone drag stays the drag it is."""
    px = torch.zeros(256, 256, dtype=torch.bool)
    px[120:136, 64:176] = True
    rm = build_map(_doc(px, [{"handle": [168, 128], "target": [148, 72]}]), torch.zeros(1, 16, 32, 32))
    on = map_for(rm, True, move_affine="translate", swing=True, warp="motion", **KW)
    off = map_for(rm, True, move_affine="translate", swing=False, warp="motion", **KW)
    assert _moved_sources(on) and torch.equal(on.src, off.src) and torch.equal(on.handles, off.handles)


def test_a_part_rotated_behind_an_object_stays_behind_it_everywhere():
    """A bar rotated (warp 'motion') onto an unpainted object in front, stated behind: every
    destination latent pixel on the object shows the object, in the destinations the motion's
    carriers serve and in the tokens its edge spills onto as well as in the bar's own."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_contextdrag_subtoken import _pca

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[80:112, 64:176] = True
    lat = torch.zeros(1, 16, 32, 32)
    lat[..., 10:14, 8:22] = 5.0                                    # the painted bar
    lat[..., 14:28, 10:24] = -5.0                                  # an object in front, below it
    doc = _doc(px, [{"handle": [120, 96], "target": [128, 150], "mode": "move", "angle": 35.0,
                     "depth": "behind"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm = map_for(build_map(doc, lat), True, move_affine="points", swing=True, warp="motion", **KW)
    assert rm.params["motions"][0]["carried"]
    src, rows, cols = _pca(rm, warp="motion", occluder_contrast=0.5, depth="auto").depth_pixels(lat)
    front = lat[0, 0] == -5.0
    on_front = _on_front(rm, src, front)
    assert int(on_front.sum()) > 40 and bool(front[rows, cols][on_front].all())


def test_a_swung_map_survives_its_json_round_trip():
    """The map node's output with a swing near another part (its motion's "at") through JSON gives
    the patches the same map: the same pairs and the same motions."""
    import json

    from fluxdrag.core.reverse_mapping import ReverseMap

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[120:136, 64:176] = True
    px[64:80, 48:80] = True
    rm = build_map(_doc(px, [{"handle": [168, 128], "target": [168, 40]}]), torch.zeros(1, 16, 32, 32))
    back = ReverseMap.from_dict(json.loads(json.dumps(rm.to_dict())))
    kw = dict(move_affine="points", swing=True, warp="motion", **KW)
    a, b = map_for(rm, True, **kw), map_for(back, True, **kw)
    assert "at" in rm.params["motions"][0] and a.params["motions"] == b.params["motions"]
    assert torch.equal(a.src, b.src) and torch.equal(a.dst_mask, b.dst_mask)


def test_map_drags_keeps_two_objects_painted_apart_apart():
    """[ours] ``map_drags`` groups the drags to fuse by the moving content's parts at latent pixels:
    two objects one pixel apart touch on the token grid, and their two moves happen to fit one
    rotation; they stay two drags (turned together they landed wrong: toy scene 126027)."""
    from fluxdrag.core.instructions import TokenDrags
    from fluxdrag.pipelines.contextdrag import map_drags

    h, w = 16, 16
    px = torch.zeros(2 * h, 2 * w, dtype=torch.bool)
    px[8:14, 6:12] = True
    px[8:14, 13:19] = True
    tok = px.reshape(h, 2, w, 2).any(3).any(1)
    td = TokenDrags(handles=torch.tensor([[4.25, 5.25], [7.75, 5.25]], dtype=torch.float64),
                    targets=torch.tensor([[4.25, 8.25], [7.75, 8.75]], dtype=torch.float64),
                    modes=["move", "move"], scales=torch.ones(2, 2, dtype=torch.float64), mask=tok,
                    grid_hw=(h, w), image_hw=(16 * h, 16 * w))
    fused, _, _ = map_drags(td, tok, 0.2, "translate", swing=False)
    apart, _, _ = map_drags(td, tok, 0.2, "translate", swing=False, pixels=px)
    assert fused.shape[0] == 1 and apart.shape[0] == 2


def test_a_move_by_whole_tokens_behind_an_object_stays_behind_it():
    """A block dragged by a whole number of tokens (nothing shifted or composited: its tokens are
    injected as they are, not re-embedded) onto an unpainted object in front, stated behind: its
    destination tokens on the object are re-embedded showing the object (they were pasted over
    it), and with the depth rule "over" nothing is added."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_contextdrag_subtoken import _pca

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[160:208, 192:240] = True                                    # the block: tokens y 10-12, x 12-14
    lat = torch.zeros(1, 16, 32, 32)
    lat[..., 20:26, 24:30] = 5.0                                   # the painted block
    lat[..., 14:24, 2:10] = -5.0                                   # an object in front, left of it
    doc = _doc(px, [{"handle": [216, 184], "target": [88, 184], "mode": "move", "depth": "behind"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm = build_map(doc, lat)
    pca = _pca(rm, occluder_contrast=0.5, depth="auto")
    assert not pca._pixels[0].numel()                              # a move by 8 whole tokens: none listed
    src, rows, cols = pca.depth_pixels(lat)
    front = lat[0, 0] == -5.0
    on_front = _on_front(rm, src, front)
    assert int(on_front.sum()) >= 8 and bool(front[rows, cols][on_front].all())
    assert not bool(front[rows, cols][~on_front].any())            # elsewhere the block's own pixels
    over = _doc(px, [{"handle": [216, 184], "target": [88, 184], "mode": "move", "depth": "front"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm_over = build_map(over, lat)
    assert not _pca(rm_over, occluder_contrast=0.5, depth="auto").depth_pixels(lat)[0].numel()


def test_a_thin_ring_shrunk_by_a_scale_keeps_its_pixels():
    """The toy world's scene 134027 (``large``, ``scale``): a one-pixel ring on a ground of its own
    hue, dragged with scale 0.677 under warp 'motion'. Most inverse images fall between its pixels;
    where one lies on the ring (the mask read bilinearly ≥ ½), the destination shows a ring pixel,
    not the nearest pixel in its hollow or on the ground. It showed 2 of them, and the ring vanished
    from the edit (found 0, MD 11 tokens); 6 with the rule (found, MD 0.15)."""
    from fluxdrag.core.reverse_tokens import moved_patch_pixels
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(134027, "large", "scale")
    ring = sc.masks[sc.moved].any(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm = build_map(sc.drags, sc.latent[None])
    src, rows, cols = moved_patch_pixels(rm, subtoken=True, composite=True, warp="motion")
    shown = ring[rows.clamp(max=31), cols] & (rows < 32)
    assert int(shown.sum()) >= 5, int(shown.sum())


def test_a_stretch_over_its_own_source_borrows_a_far_token():
    """The toy world's scene 137023 (``multi``, ``stretch`` ×1.54 upward, over its own source): with
    warp 'motion' every part token was already used, and the destinations over the source had no
    token left (a band of ground across the stretched square: MD 0.95, IoU 0.60). They now carry a
    reference token lent from far from the edit (MD 0, IoU 0.91), and no lent token lies within two
    tokens of the region or its destination."""
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(137023, "multi", "stretch")
    st = ContextDragSettings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm = build_map(sc.drags, sc.latent[None], settings=st)
        m = patched_map(rm, st)
    after = sc.masks_after[sc.moved].any(0).reshape(16, 2, 16, 2).sum((1, 3)) >= 2   # tokens mostly object
    assert bool(m.dst_mask[after].all()), int((after & ~m.dst_mask).sum())
    d, s = injection_pairs(m)
    edit = rm.src_mask | m.dst_mask
    near = torch.nn.functional.max_pool2d(edit.float()[None, None], 5, 1, 2)[0, 0] > 0
    lent = [int(x) for x in s if not bool(edit.reshape(-1)[x])]
    assert lent and not any(bool(near.reshape(-1)[x]) for x in lent)


def test_a_bent_limbs_base_under_the_paint_leaves_the_painted_region():
    """``stay_continued``: on toy-world bends (133032, 137043) the painted pixels of the limb's base
    that do not move (no content) were filled with ground (the limb came apart at its joint:
    133032 MD 0.13 → 0.06 with the rule); they now leave the painted region, so the lock keeps
    them, and every pixel that leaves is the base's. Off, the region is as before."""
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.toyworld.scenes import make_scene

    st = ContextDragSettings()
    kw = dict(drag_groups=st.drag_groups, move_affine=st.move_affine, content_contrast=st.content_contrast,
              rigid_tolerance=st.rigid_tolerance, warp=st.warp, swing=st.swing)
    for sid in (133032, 137043):
        sc = make_scene(sid, "articulated", "bend")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rm = build_map(sc.drags, sc.latent[None], settings=st)
            off = map_for(rm, st.subtoken, **kw)
            on = map_for(rm, st.subtoken, stay_continued=True, **kw)
        base = sc.masks[sc.moved].any(0) & sc.masks_after[sc.moved].any(0)
        left = off.paint_mask & ~on.paint_mask
        assert int(left.sum()) >= 2 and bool(base[left].all()), sid
        assert not bool((on.paint_mask & ~on.fine_mask & base).any()), sid
        assert torch.equal(off.fine_mask, on.fine_mask) and torch.equal(off.dst_mask, on.dst_mask)


def test_a_textures_cells_under_the_painted_shadow_do_not_move():
    """``content_reference`` "texture" and ``content_piece`` "largest" (as LazyDrag's): on toy-world
    texture moves (142009, 144009, 146009, 147009) the painted shadow's texture cells stood out from
    the membrane and moved with the object (11–35 pixels each, pasted at the target: BG 0.037 over 9
    tuning moves); now at most 3 do, and every object pixel still moves. membrane / all: as before."""
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.toyworld.scenes import make_scene

    for sid in (142009, 144009, 146009, 147009):
        sc = make_scene(sid, "texture", "move")
        obj = sc.masks[sc.moved].any(0)
        moving = []
        for kw in ({}, dict(content_piece="all", content_reference="membrane")):
            st = ContextDragSettings(**kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rm = build_map(sc.drags, sc.latent[None], settings=st)
                m = patched_map(rm, st)
            moving.append(m.fine_mask)
        now, before = moving
        assert bool(now[obj].all()) and bool(before[obj].all())
        assert int((now & ~obj).sum()) <= 3 and int((before & ~obj).sum()) >= 10, sid


def test_drag_groups_read_two_objects_painted_apart_as_two_parts():
    """[ours] ``drag_groups`` "component" reads the region's parts on the moving content at latent
    pixels: two objects two pixels apart share a token corner, so on the token grid they were one
    part, mapped by one field of both drags, and near the other object a token took a blend of the
    two motions (toy scene 205022: a column of the other object's pixels beside the moved one)."""
    from fluxdrag.core.reverse_groups import drag_groups_of
    from fluxdrag.core.reverse_mapping import build_reverse_map

    h, w = 8, 8
    px = torch.zeros(2 * h, 2 * w, dtype=torch.bool)
    px[2:6, 2:6] = True                                        # tokens (1..2, 1..2)
    px[7:10, 7:10] = True                                      # tokens (3..4, 3..4): a shared corner
    tok = px.reshape(h, 2, w, 2).any(3).any(1)
    s = torch.tensor([[1.5, 1.5], [4.0, 4.0]], dtype=torch.float64)
    t = torch.tensor([[1.5, 5.5], [6.0, 2.0]], dtype=torch.float64)
    assert len(drag_groups_of(s, tok)) == 1
    groups = drag_groups_of(s, tok, px)
    assert [g[1].tolist() for g in groups] == [[0], [1]]
    assert bool(groups[0][0][1:3, 1:3].all()) and not bool(groups[0][0][3:5, 3:5].any())
    one = build_reverse_map(s, t, tok, (h, w), snap=True, drag_groups="component")
    two = build_reverse_map(s, t, tok, (h, w), snap=True, drag_groups="component", pixel_region=px)
    assert one.back is None and two.back is not None
    d, src = injection_pairs(two)
    for q, p in zip(d.tolist(), src.tolist()):                # each destination reads its own object
        qx, qy, px_, py_ = q % w, q // w, p % w, p // w
        drag = 0 if py_ <= 2 else 1
        assert (qx - px_, qy - py_) == (round(float(t[drag, 0] - s[drag, 0])), round(float(t[drag, 1] - s[drag, 1])))


def test_two_objects_painted_apart_each_land_where_their_drag_puts_them():
    """The toy scene the rule was found on: every moved pixel the map shows lands on the truth."""
    from fluxdrag.core.reverse_landed import content_pairs
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(205022, "multi", "multi_move")
    st = ContextDragSettings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm = patched_map(build_map(sc.drags, sc.latent[None], settings=st), st)
    d, s = content_pairs(rm, subtoken=True, warp=st.warp, on_shape=True)
    truth = sc.masks_after[sc.moved].any(0)
    assert int(truth[d[:, 0], d[:, 1]].sum()) == d.shape[0] == int(truth.sum())


def test_a_dotted_object_painted_as_one_is_one_drag_group():
    """The drag groups read the paint, not the moving content: a dotted object's standing-out pixels
    are many pieces (``content_piece`` "all"), and read on them its two drags were two groups, each
    half moved rigidly by its own drag (review). Painted as one region, it is one group: one field
    of both drags (the map stores no per-group field)."""
    lat = torch.zeros(1, 16, 32, 32)
    lat[:, :, 8:24:2, 8:24:2] = 4.0
    px = torch.zeros(256, 256, dtype=torch.bool)
    px[64:192, 64:192] = True
    doc = _doc(px, [{"handle": [72, 128], "target": [56, 128], "mode": "move"},
                    {"handle": [184, 128], "target": [200, 128], "mode": "move"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm = build_map(doc, lat, content_piece="all")
    assert rm.back is None


def test_the_spill_takes_only_its_own_groups_lost_pixels():
    """On a map merged from drag groups the field stored at a token is the nearest group's: next to
    one object's destination it reached into the other object's region and spilled that object's
    lost edge pixels with the first one's motion (toy scene 210026, `textured_bg` `multi_move`: three
    ring pixels beside the other object, BG 0.040). Every moved pixel the map shows now lands on the
    truth, and every truth pixel is shown."""
    from fluxdrag.core.reverse_landed import content_pairs
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(210026, "textured_bg", "multi_move")
    st = ContextDragSettings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rm = patched_map(build_map(sc.drags, sc.latent[None], settings=st), st)
    d, s = content_pairs(rm, subtoken=True, warp=st.warp, on_shape=True, spill_onto=st.fill_in_place)
    truth = sc.masks_after[sc.moved].any(0)
    assert int(truth[d[:, 0], d[:, 1]].sum()) == d.shape[0] == int(truth.sum())


def test_the_spill_reads_the_groups_the_map_was_merged_from():
    """Review: the patches' paint may lose pixels after the map is built (``stay_continued`` takes a
    limb's unmoved base out of it). Read again on that paint, the groups changed (a piece joined to
    its drag's part only through such pixels fell to the other group), and the spill pasted one of
    its pixels with the other group's motion. The map keeps the groups it was merged from."""
    from dataclasses import replace

    from fluxdrag.core.reverse_groups import group_labels
    from fluxdrag.core.reverse_landed import content_pairs
    from fluxdrag.core.reverse_mapping import build_reverse_map

    h = w = 24
    paint = torch.zeros(2 * h, 2 * w, dtype=torch.bool)
    paint[4:12, 4:16] = True                                   # A, dragged up
    paint[14:22, 4:12] = True                                  # B2, no drag of its own
    bridge = torch.zeros_like(paint)
    bridge[18:20, 12:36] = True                                # joins B2 to B1
    paint |= bridge
    paint[14:26, 36:44] = True                                 # B1, dragged right
    tok = paint.reshape(h, 2, w, 2).any(3).any(1)
    s = torch.tensor([[4.5, 3.5], [19.5, 9.5]], dtype=torch.float64)
    t = s + torch.tensor([[0.0, -1.5], [1.5, 0.0]], dtype=torch.float64)
    rm = build_reverse_map(s, t, tok, (h, w), snap=True, drag_groups="component", pixel_region=paint)
    labels = group_labels(rm)
    assert labels is not None and int(labels[8, 3]) == int(labels[9, 19])   # B2 with B1
    fine = paint & ~bridge
    got = [set(map(tuple, torch.cat(content_pairs(replace(rm, fine_mask=fine, paint_mask=p), subtoken=True,
                                                  warp="token", on_shape=True, spill_onto=True), 1).tolist()))
           for p in (paint, fine)]
    assert got[0] == got[1]
