"""LazyDrag's occlusion rules [ours]: unpainted objects in front of the edit
(core.correspondence_latent.unpainted_objects) are found on a smooth background and not on a
texture nor on the rest of the painted object; the hole fill runs behind them and ``depth`` "under"
keeps them over the moved content (pipelines.lazydrag.behind_objects); the paper's setting has none."""
import torch

from fluxdrag.core.correspondence import FineMap, unpainted_objects
from fluxdrag.core.instructions import rle_encode
from fluxdrag.pipelines.lazydrag import PAPER, LazyDragSettings, behind_objects, build_plan

H = W = 32


def _ground() -> torch.Tensor:
    """A smooth background (16, H, W): a gentle ramp in two channels."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                          indexing="ij")
    z = torch.zeros(16, H, W)
    z[0] = 0.05 * x
    z[1] = 0.04 * y
    return z


def _scene():
    """A painted object (channel 2) with a front object (channel 3) covering its right side."""
    z = _ground()
    painted = torch.zeros(H, W, dtype=torch.bool)
    painted[10:18, 8:14] = True
    front = torch.zeros(H, W, dtype=torch.bool)
    front[8:20, 14:20] = True
    z[2, painted] += 4.0
    z[3, front] += 4.0
    return z, painted, front


def test_an_object_in_front_of_the_paint_is_found():
    z, painted, front = _scene()
    got = unpainted_objects(z, painted, painted, 0.5)
    assert torch.equal(got, front)
    assert not unpainted_objects(z, painted, painted, 0.0).any()       # 0: the paper, none


def test_texture_border_and_the_rest_of_the_painted_object_are_not_objects():
    z, painted, _ = _scene()
    # a two-tone ground: its right part runs along the border, so it is ground, not in front
    zb = _ground()
    zb[2, painted] += 4.0
    zb[3, :, 14:] += 4.0
    assert not unpainted_objects(zb, painted, painted, 0.5).any()
    # ground the paint cuts off in a corner, a little off the rest of the ground's colour
    corner = torch.zeros(H, W, dtype=torch.bool)
    corner[24:, 24:] = True
    corner[30:, 30:] = False
    zk = _ground()
    zk[2, corner] += 4.0
    zk[5, 30:, 30:] += 2.0
    assert not unpainted_objects(zk, corner, corner, 0.5).any()
    # the painted part's own continuation (a limb's base, the same colour): joined, not in front
    zl = _ground()
    limb = torch.zeros(H, W, dtype=torch.bool)
    limb[10:18, 8:20] = True
    zl[2, limb] += 4.0
    assert not unpainted_objects(zl, painted, painted, 0.5).any()
    # a checkerboard texture: its enclosed cells repeat the cells on the border
    zc = _ground()
    y, x = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    cells = ((y // 4 + x // 4) % 2 == 1)
    zc[4, cells] += 3.0
    zc[2, painted] += 4.0
    zc[4, painted] = 0.0
    assert not unpainted_objects(zc, painted, painted, 0.5).any()


def test_an_object_the_frame_cuts_is_found(monkeypatch):
    """[ours] ``FRAME_CONTACT``: an object in front that the image border cuts is an object (a short
    stretch of the border, repeated nowhere); 0 restores "every border region is ground"."""
    from fluxdrag.core import correspondence_latent as cl

    z, painted, _ = _scene()
    zb = _ground()
    zb[2, painted] += 4.0
    side = torch.zeros(H, W, dtype=torch.bool)
    side[8:20, 14:W] = True
    zb[3, side] += 4.0
    assert torch.equal(unpainted_objects(zb, painted, painted, 0.5), side)
    # the same, with two more cells of its colour elsewhere on the border: a texture's cells, ground
    zt = zb.clone()
    zt[3, 0:3, 0:4] += 4.0
    zt[3, 29:, 0:4] += 4.0
    assert not unpainted_objects(zt, painted, painted, 0.5).any()
    monkeypatch.setattr(cl, "FRAME_CONTACT", 0.0)
    assert not unpainted_objects(zb, painted, painted, 0.5).any()


def test_the_hollow_of_a_ring_in_front_is_ground(monkeypatch):
    """[ours] ``HOLE_REACH``: the hollow of a ring in front (or of the painted ring) shows the ground
    beside the ring, on a
    ground whose light moves its colour across the image by more than the edge jump (so the ground
    regions' means alone call the hollow an object); a dot of another colour inside a square stays
    an object. ``depth`` "under" then shows the moved content through the hollow. 0: as before."""
    from fluxdrag.core import correspondence_latent as cl

    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                          indexing="ij")
    z = torch.zeros(16, H, W)
    z[0] = 0.35 * x                                    # a strong light gradient across the ground (0.25 before
    #   REPEAT_SLACK: the hollow's mean then lay 1.098 x the edge jump from the ground's, inside the slack)
    painted = torch.zeros(H, W, dtype=torch.bool)
    painted[12:18, 4:10] = True
    r = ((y - 15) ** 2 + (x - 24) ** 2).sqrt()
    ring = (r >= 2.5) & (r <= 4.5)
    hollow = r < 2.5
    z[2, painted] += 4.0
    z[3, ring] += 4.0
    assert torch.equal(unpainted_objects(z, painted, ring | hollow, 0.5), ring)
    # the hollow of the painted ring itself (the ring is dragged): ground, not an object the release frees
    zp = torch.zeros(16, H, W)
    zp[0] = 0.35 * x
    zp[2, ring] += 4.0
    assert not unpainted_objects(zp, ring, ring | hollow, 0.5).any()
    # a square ring without its corners: the hollow meets the ground outside only at the corners'
    # diagonals, so the paint alone encloses it (4-neighbours, as the regions are linked)
    sq = (x - 24).abs().le(2) & (y - 15).abs().le(2)
    inner = (x - 24).abs().le(1) & (y - 15).abs().le(1)
    corners = (x - 24).abs().eq(2) & (y - 15).abs().eq(2)
    cut_ring = sq & ~inner & ~corners
    zq = torch.zeros(16, H, W)
    zq[0] = 0.35 * x
    zq[2, cut_ring] += 4.0
    assert not unpainted_objects(zq, cut_ring, cut_ring | inner, 0.5).any()
    monkeypatch.setattr(cl, "HOLE_REACH", 0)
    assert torch.equal(unpainted_objects(z, painted, ring | hollow, 0.5), ring | hollow)
    assert torch.equal(unpainted_objects(zp, ring, ring | hollow, 0.5), hollow)
    monkeypatch.setattr(cl, "HOLE_REACH", 2)
    # a dot of its own colour inside a square: an object in front, not a window
    zd = z.clone()
    zd[3, ring] -= 4.0
    square = (x - 24).abs().le(4) & (y - 15).abs().le(4)
    dot = (x - 24).abs().le(1) & (y - 15).abs().le(1)
    zd[3, square & ~dot] += 4.0
    zd[5, dot] += 4.0
    assert torch.equal(unpainted_objects(zd, painted, square, 0.5), square)
    # moved behind the ring, the content shows through its hollow
    src = torch.full((H * W,), -1, dtype=torch.long)
    dst = torch.zeros(H, W, dtype=torch.bool)
    ys, xs = torch.nonzero(painted, as_tuple=True)
    src[ys * W + xs + 17] = ys * W + xs
    dst[ys, xs + 17] = True
    under = behind_objects(z[None], FineMap(src, painted, dst), 0.5, "under")
    assert torch.equal(under.destination, dst & ~ring)
    assert bool((under.destination & hollow).any())


def test_a_dim_object_with_a_weak_edge_stays_apart(monkeypatch):
    """[ours] ``LINK_SHARE``: an object in front whose outline is an edge everywhere but at a corner
    pixel (dimmer there, below the edge threshold against the ground) is still an object; with 0 (one
    weak pair joins two regions, as before) it leaks into the ground and is lost. A soft ground stays
    one region either way."""
    from fluxdrag.core import correspondence_latent as cl

    z, painted, front = _scene()
    z[3, front] -= 4.0
    z[3, front] += 2.5                                 # 0.6 × the painted object's contrast
    z[3, 8, 19] -= 0.7                                 # a corner pixel under half of it
    assert torch.equal(unpainted_objects(z, painted, painted, 0.5), front)
    ground = ~painted & ~front
    assert torch.unique(cl.FrontObjects(z, painted, 0.5).lab[ground]).numel() == 1
    monkeypatch.setattr(cl, "LINK_SHARE", 0.0)
    assert not unpainted_objects(z, painted, painted, 0.5).any()
    assert torch.unique(cl.FrontObjects(z, painted, 0.5).lab[ground]).numel() == 1


def test_fill_behind_and_depth_under():
    z, painted, front = _scene()
    # the content moves 6 px right, onto the front object
    src = torch.full((H * W,), -1, dtype=torch.long)
    dst = torch.zeros(H, W, dtype=torch.bool)
    ys, xs = torch.nonzero(painted, as_tuple=True)
    src[ys * W + xs + 6] = ys * W + xs
    dst[ys, xs + 6] = True
    fine = FineMap(src, painted, dst)
    over = behind_objects(z[None], fine, 0.5, "over")
    assert torch.equal(over.source, fine.source)
    assert torch.equal(over.fill_region, painted | front)
    under = behind_objects(z[None], fine, 0.5, "under")
    assert not (under.destination & front).any()
    assert torch.equal(under.destination, dst & ~front)
    assert FineMap.from_dict(under.to_dict()).fill_region.equal(under.fill_region)
    # auto: only the objects that already cover the paint at the source stay on top
    assert torch.equal(behind_objects(z[None], fine, 0.5, "auto").destination, dst & ~front)
    far = front.clone()
    far[:, 14:20] = False
    far[8:20, 24:28] = True                    # an object the content was never behind
    z2 = _ground()
    z2[2, painted] += 4.0
    z2[3, far] += 4.0
    src2 = torch.full((H * W,), -1, dtype=torch.long)
    dst2 = torch.zeros(H, W, dtype=torch.bool)
    src2[ys * W + xs + 14] = ys * W + xs
    dst2[ys, xs + 14] = True
    fine2 = FineMap(src2, painted, dst2)
    assert torch.equal(behind_objects(z2[None], fine2, 0.5, "auto").destination, dst2)
    assert torch.equal(behind_objects(z2[None], fine2, 0.5, "under").destination, dst2 & ~far)


def test_plan_runs_the_rules_only_off_the_paper_setting():
    z, painted, front = _scene()
    mask = painted.repeat_interleave(8, 0).repeat_interleave(8, 1)
    doc = {"version": 1, "image_size": [8 * W, 8 * H], "mask": {"rle": rle_encode(mask)},
           "drags": [{"handle": [88.0, 112.0], "target": [136.0, 112.0], "mode": "move"}]}
    ours = build_plan(doc, z[None], None, LazyDragSettings(depth="under")).cmap.fine
    assert torch.equal(ours.fill_region, painted | front)
    assert not (ours.destination & front).any()
    assert LazyDragSettings().depth == "auto" and PAPER.depth == "over" and PAPER.occluder_contrast == 0.0
    # auto: the painted object is behind the front one at its source, so it stays behind it
    auto = build_plan(doc, z[None], None, LazyDragSettings()).cmap.fine
    assert torch.equal(auto.destination, ours.destination)
    paper = build_plan(doc, z[None], None, LazyDragSettings(occluder_contrast=0.0, depth="under")).cmap.fine
    assert paper.fill_region is None and (paper.destination & front).any()


def test_a_shadow_painted_next_to_an_object_in_front_stays_behind():
    """The content test reads the painted pixels against the background continued behind the
    objects in front: a painted shadow beside one is not taken for content."""
    from fluxdrag.core.correspondence import content_pixels

    z, painted, front = _scene()
    shadow = torch.zeros(H, W, dtype=torch.bool)
    shadow[18:21, 8:20] = True            # under the object and the front one, painted
    shadow &= ~front
    z[0, shadow] -= 0.4
    paint = painted | shadow
    behind = unpainted_objects(z, paint, paint, 0.5)
    assert torch.equal(behind, front)
    assert torch.equal(content_pixels(z, paint, 0.5, behind=behind), painted)


def _two_object_scene():
    """Two painted objects (channel 2), each with an unpainted object (channels 3, 4) 8 px right
    of it that it never touches: only a stated depth can put the moved object behind one."""
    z = _ground()
    painted = torch.zeros(H, W, dtype=torch.bool)
    painted[4:10, 4:10] = True
    painted[20:26, 4:10] = True
    fronts = [torch.zeros(H, W, dtype=torch.bool) for _ in range(2)]
    fronts[0][3:11, 16:24] = True
    fronts[1][19:27, 16:24] = True
    z[2, painted] += 4.0
    z[3, fronts[0]] += 4.0
    z[4, fronts[1]] += 4.0
    return z, painted, fronts


def test_each_drag_states_its_own_depth():
    """A drag's ``depth`` overrides the setting for what that drag moves (behind = under, front =
    over, none = the setting); two drags of one document each by their own."""
    z, painted, fronts = _two_object_scene()
    mask = painted.repeat_interleave(8, 0).repeat_interleave(8, 1)

    def dst(*depths, setting="auto"):
        drags = [{"handle": [56.0, 56.0], "target": [152.0, 56.0], "mode": "move"},
                 {"handle": [56.0, 184.0], "target": [152.0, 184.0], "mode": "move"}]
        for d, depth in zip(drags, depths):
            if depth is not None:
                d["depth"] = depth
        doc = {"version": 1, "image_size": [8 * W, 8 * H], "mask": {"rle": rle_encode(mask)}, "drags": drags}
        return build_plan(doc, z[None], None, LazyDragSettings(depth=setting)).cmap.fine.destination

    plain = dst(None, None)
    assert (plain & fronts[0]).any() and (plain & fronts[1]).any()     # auto: never behind them: over
    behind = dst("behind", None)
    assert not (behind & fronts[0]).any() and torch.equal(behind & fronts[1], plain & fronts[1])
    assert torch.equal(behind & ~fronts[0], plain & ~fronts[0])          # nothing else changes
    assert torch.equal(dst(None, "behind") & ~fronts[1], plain & ~fronts[1])
    assert not (dst("behind", "behind") & (fronts[0] | fronts[1])).any()
    assert torch.equal(dst("behind", "behind"), dst(None, None, setting="under"))
    front = dst("front", None, setting="under")
    assert torch.equal(front & fronts[0], plain & fronts[0]) and not (front & fronts[1]).any()
    assert torch.equal(dst("front", "front", setting="under"), plain)
    assert torch.equal(dst("auto", "auto"), plain)


def test_fused_drags_keep_their_depth_and_a_conflict_falls_back_to_the_setting():
    import pytest

    from fluxdrag.core.correspondence_fields import group_depth

    assert group_depth(["auto", "behind", "behind"]) == "behind"
    assert group_depth(["auto", "auto"]) == "auto"
    with pytest.warns(UserWarning, match="different depths"):
        assert group_depth(["front", "behind"]) == "auto"
    # two drags rotating the first object rigidly are fused into one move: it keeps "behind"
    z, painted, fronts = _two_object_scene()
    mask = painted.repeat_interleave(8, 0).repeat_interleave(8, 1)
    drags = [{"handle": [40.0, 56.0], "target": [136.0, 56.0], "depth": "behind"},
             {"handle": [72.0, 56.0], "target": [168.0, 56.0]}]
    doc = {"version": 1, "image_size": [8 * W, 8 * H], "mask": {"rle": rle_encode(mask)}, "drags": drags}
    plan = build_plan(doc, z[None], None, LazyDragSettings())
    assert plan.cmap.drags.depths == ["behind"] and plan.cmap.drags.modes == ["move"]
    drags[0].pop("depth")
    plain = build_plan(doc, z[None], None, LazyDragSettings()).cmap.fine.destination
    assert (plain & fronts[0]).any() and not (plan.cmap.fine.destination & fronts[0]).any()


def test_a_stated_depth_without_objects_in_front_to_find_is_said():
    import pytest

    z, painted, _ = _two_object_scene()
    mask = painted.repeat_interleave(8, 0).repeat_interleave(8, 1)
    doc = {"version": 1, "image_size": [8 * W, 8 * H], "mask": {"rle": rle_encode(mask)},
           "drags": [{"handle": [56.0, 56.0], "target": [152.0, 56.0], "mode": "move", "depth": "behind"}]}
    with pytest.warns(UserWarning, match=r"drag\(s\) 0 state a depth"):
        build_plan(doc, z[None], None, PAPER)
