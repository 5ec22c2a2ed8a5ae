"""Tier 1: DragFlow's start-latent pieces of issue 27 (fluxdrag/core/dragflow.py, fluxdrag/core/dragflow_plan.py):
the moved copies' cells, the token ring around them, the nearest-warped feature target, the hole's
fill area, the shifted fill of a textured hole and the plan's fresh-noise cells."""
from __future__ import annotations

import math

import torch

from fluxdrag.core.affine import Region
from fluxdrag.core.dragflow import (
    destination_mask,
    fill_by_shift,
    fill_from_surroundings,
    hole_start,
    moved_start,
    near_tokens,
    region_targets,
    vacated_mask,
)
from fluxdrag.core.dragflow_plan import plan_dragflow


def _box(H, W, r0, r1, c0, c1):
    m = torch.zeros(H, W, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m


def test_destination_mask_is_where_moved_start_writes():
    r = Region(_box(16, 16, 2, 6, 2, 6), "relocate", target=(11.0, 4.0), begin=(4.0, 4.0))
    dst = destination_mask([r], (16, 16))
    assert dst.sum() == 16 and dst[2:6, 9:13].all()
    z = torch.zeros(1, 1, 16, 16)
    src = torch.arange(256.0).reshape(1, 1, 16, 16)
    out = moved_start(z, src, [r])
    assert torch.equal(out[0, 0] != 0, dst)
    assert not (vacated_mask([r], (16, 16)) & dst).any()


def test_near_tokens_grows_by_whole_tokens():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2, 3] = True                                  # token (1, 1)
    t0 = near_tokens(m, 0)
    assert t0.sum() == 4 and t0[2:4, 2:4].all()
    t1 = near_tokens(m, 1)
    assert t1.sum() == 36 and t1[0:6, 0:6].all()
    assert not near_tokens(m, -1).any()


def test_nearest_target_keeps_real_feature_vectors():
    F0 = torch.randn(1, 3, 8, 8)
    mask = _box(8, 8, 2, 5, 2, 5)
    A = Region(mask, "rotate", target=(3.5 + math.cos(0.5), 3.5 + math.sin(0.5)), begin=(4.5, 3.5),
               anchor=(3.5, 3.5)).affine(1.0, (8, 8))
    (M, T), = region_targets(F0, [mask], [A], "nearest")
    cells = F0[0].reshape(3, -1).T
    inside = T[0].permute(1, 2, 0)[M[0, 0].bool()]
    assert all(torch.isclose(cells, v).all(1).any() for v in inside)   # every target cell is a source cell
    (_, Tb), = region_targets(F0, [mask], [A], "bilinear")
    assert not torch.equal(Tb, T)


def test_hole_start_fills_the_whole_vacated_area_but_redraws_only_the_fresh_cells():
    x0 = torch.zeros(1, 2, 8, 8)
    x0[..., 2:6, 2:6] = 5.0                          # an object
    hole = _box(8, 8, 2, 6, 2, 6)
    fresh = _box(8, 8, 2, 6, 2, 4)
    z = torch.full((1, 2, 8, 8), 7.0)
    out = hole_start(z, x0, fresh, 0.5, fill_mask=hole)
    assert torch.equal(out[..., ~fresh], z[..., ~fresh])
    eps = (out[..., fresh] - 0.5 * 0.0) / 0.5        # fill from outside the whole hole is background 0
    assert eps.abs().max() < 6 and eps.std() > 0.5


def test_plan_fresh_is_the_hole_beyond_the_margin():
    r = Region(_box(32, 32, 4, 12, 4, 12), "relocate", target=(20.0, 8.0), begin=(8.0, 8.0))
    kw = dict(edit_region="regions", edit_dilate=0, feature_scale=0.0, scale_rule="fixed",
              feature_grid="token", kv_scope="outside_edit", adaptive_weights=True,
              hole_fill="surroundings", n_transport=0, n_intensify=0)
    whole = plan_dragflow([r], (4, 4), hole_margin=-1, **kw)
    ring = plan_dragflow([r], (4, 4), hole_margin=1, **kw)
    assert torch.equal(whole.fresh, whole.hole)
    assert (ring.fresh <= ring.hole).all() and ring.fresh.sum() < ring.hole.sum()
    none = plan_dragflow([r], (4, 4), hole_margin=1, **{**kw, "hole_fill": "none"})
    assert none.hole is None and none.fresh is None


def test_shifted_fill_continues_stripes_and_keeps_a_smooth_background_smooth():
    h = w = 24
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    stripes = (((xx + yy) // 2) % 2).float()[None, None].repeat(1, 4, 1, 1)   # period 4 diagonals
    hole = _box(h, w, 9, 14, 8, 15)
    avoid = _box(h, w, 2, 6, 2, 6)
    out = fill_by_shift(stripes, hole, avoid=avoid)
    assert torch.equal(out, stripes)                      # the stripes come back exactly
    blur = fill_from_surroundings(stripes, hole)
    assert float((blur - stripes)[..., hole].abs().mean()) > 0.2   # what the smooth fill does
    bump = torch.exp(-((xx - 12.0) ** 2 + (yy - 11.0) ** 2) / 60.0)[None, None].repeat(1, 4, 1, 1)
    assert torch.equal(fill_by_shift(bump, hole), fill_from_surroundings(bump, hole))   # smooth: the blur wins
    # never copied from an avoided cell: with every other cell avoided, the smooth fill stands in
    assert torch.equal(fill_by_shift(stripes, hole, avoid=~hole), fill_from_surroundings(stripes, hole))


def _lit_scene(H=32, W=32):
    """A ground lit along channel 0 as a ramp in x, a bright 4×4 object (channel 1) and its
    cast shadow: channel 0 darkened by 0.4 on the 4×3 cells right of the object."""
    xs = torch.arange(W, dtype=torch.float32)
    z = torch.zeros(1, 4, H, W)
    z[0, 0] = 0.1 * xs[None, :].expand(H, W)
    obj = _box(H, W, 10, 14, 4, 8)
    shadow = _box(H, W, 10, 14, 8, 11)
    z[0, 1][obj] = 3.0
    z[0, 0][obj] = 0.0
    z[0, 0][shadow] -= 0.4
    return z, obj, shadow


def test_carried_proposal_moves_the_shadow_as_a_darkening_of_the_new_ground():
    from fluxdrag.core.dragflow_proposal import carried_proposal

    z, obj, shadow = _lit_scene()
    r = Region(obj | shadow, "relocate", target=(18.0, 12.0), begin=(6.0, 12.0))    # 12 cells right
    out = carried_proposal(z, [r], 0.5, "smooth")[0]
    new_obj, new_shadow = _box(32, 32, 10, 14, 16, 20), _box(32, 32, 10, 14, 20, 23)
    assert torch.equal(out[:, new_obj], z[0][:, obj])                       # the object, as it is
    ground = 0.1 * torch.arange(32.0)[None, :].expand(32, 32)
    err = (out[0] - (ground - 0.4))[new_shadow].abs().max()
    assert err < 0.02, err                                                  # the new ground, darkened
    copied = (z[0, 0][shadow] - (ground - 0.4)[new_shadow]).abs().max()     # a copy: the old ground
    assert copied > 1.0
    old = (obj | shadow) & ~(new_obj | new_shadow)
    assert (out[1][old].abs() < 1e-6).all()                                 # no object left behind
    assert (out[0][old] - ground[old]).abs().max() < 0.35                   # the old shadow lit again
    # contrast 0: every painted cell copied as is (the whole region moves)
    from fluxdrag.pipelines.dragflow import proposal

    same = proposal(z, [r], hole_texture="smooth", content_contrast=0.0, occluder_contrast=0.0, depth="over",
                    content_reference="texture", content_piece="largest", shadow_carry="none",
                    content_growth="split")[0]
    assert torch.allclose(same[0][new_shadow], z[0, 0][shadow])


def test_carried_proposal_depth_keeps_an_unpainted_object_in_front():
    from fluxdrag.core.dragflow_proposal import carried_proposal

    z, obj, shadow = _lit_scene()
    front = _box(32, 32, 9, 15, 18, 24)                  # an unpainted object where the copy lands
    z[0, 2][front] = 3.0
    z[0, 0][front] = 0.0
    r = Region(obj, "relocate", target=(18.0, 12.0), begin=(6.0, 12.0))
    over = carried_proposal(z, [r], 0.5, "smooth", occluder_contrast=0.5, depth="over")[0]
    under = carried_proposal(z, [r], 0.5, "smooth", occluder_contrast=0.5, depth="under")[0]
    auto = carried_proposal(z, [r], 0.5, "smooth", occluder_contrast=0.5, depth="auto")[0]
    both = _box(32, 32, 10, 14, 18, 20)
    assert (over[1][both] == 3.0).all() and (over[2][both] == 0).all()     # pasted on top
    assert (under[2][both] == 3.0).all() and (under[1][both] == 0).all()   # kept behind it
    assert torch.equal(auto, over)               # it never covered the painted object: no evidence


def test_carried_proposal_follows_each_regions_stated_depth():
    """A region's own depth (the instructions' per-drag intent) overrides the setting within its
    footprint: behind keeps the unpainted object in front, front covers it, auto = the setting;
    two regions with different intents each get their own."""
    from fluxdrag.core.dragflow_proposal import carried_proposal

    z, obj, _ = _lit_scene()
    front = _box(32, 32, 9, 15, 18, 24)
    z[0, 2][front] = 3.0
    z[0, 0][front] = 0.0
    both = _box(32, 32, 10, 14, 18, 20)

    def run(depth_setting, intent):
        r = Region(obj, "relocate", target=(18.0, 12.0), begin=(6.0, 12.0), depth=intent)
        return carried_proposal(z, [r], 0.5, "smooth", occluder_contrast=0.5, depth=depth_setting)[0]

    assert torch.equal(run("over", "behind"), run("under", "auto"))
    assert torch.equal(run("under", "front"), run("over", "auto"))
    behind = run("auto", "behind")
    assert (behind[2][both] == 3.0).all() and (behind[1][both] == 0).all()
    # two objects, two intents: the first goes behind the front object, the second lands on a
    # second unpainted object and covers it
    obj2 = _box(32, 32, 22, 26, 4, 8)
    front2 = _box(32, 32, 21, 27, 18, 24)
    z[0, 1][obj2] = 3.0
    z[0, 0][obj2] = 0.0
    z[0, 3][front2] = 3.0
    z[0, 0][front2] = 0.0
    both2 = _box(32, 32, 22, 26, 18, 20)
    rs = [Region(obj, "relocate", target=(18.0, 12.0), begin=(6.0, 12.0), depth="behind"),
          Region(obj2, "relocate", target=(18.0, 24.0), begin=(6.0, 24.0), depth="front")]
    out = carried_proposal(z, rs, 0.5, "smooth", occluder_contrast=0.5, depth="auto")[0]
    assert (out[2][both] == 3.0).all() and (out[1][both] == 0).all()      # behind its front object
    assert (out[1][both2] == 3.0).all() and (out[3][both2] == 0).all()    # over the other one
    swapped = carried_proposal(z, [Region(obj, "relocate", target=(18.0, 12.0), begin=(6.0, 12.0), depth="front"),
                                   Region(obj2, "relocate", target=(18.0, 24.0), begin=(6.0, 24.0),
                                          depth="behind")], 0.5, "smooth", occluder_contrast=0.5, depth="auto")[0]
    assert (swapped[1][both] == 3.0).all() and (swapped[3][both2] == 3.0).all()


def test_the_instructions_depth_reaches_the_regions_and_a_depth_that_cannot_act_is_said():
    """A region's or a drag's ``depth`` in the JSON reaches the core Regions DragFlow plans with;
    with settings that find no objects in front (the paper's) a stated depth is warned about."""
    import pytest

    from fluxdrag.core.instructions import rle_encode
    from fluxdrag.pipelines.dragflow_inputs import PAPER, DragFlowSettings, plan_edit, regions_for_latent

    m = torch.zeros(128, 128, dtype=torch.bool)
    m[40:72, 16:48] = True
    reg = {"op": "relocate", "mask": {"rle": rle_encode(m)}, "begin": [32, 56], "target": [96, 56]}
    doc = {"version": 1, "image_size": [128, 128], "regions": [dict(reg, depth="behind"), reg]}
    _, regions = regions_for_latent(doc, 128, 128)
    assert [r.depth for r in regions] == ["behind", "auto"]
    drags = {"version": 1, "image_size": [128, 128], "mask": {"rle": rle_encode(m)},
             "drags": [{"handle": [32, 56], "target": [96, 56], "depth": "front"}]}
    _, regions = regions_for_latent(drags, 128, 128)
    assert [r.depth for r in regions] == ["front"]
    z = torch.zeros(1, 16, 16, 16)
    with pytest.warns(UserWarning, match=r"region\(s\) 0 state a depth"):
        plan_edit(doc, z, PAPER)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_edit(doc, z, DragFlowSettings())
