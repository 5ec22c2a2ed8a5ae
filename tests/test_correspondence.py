"""Tier 1: LazyDrag correspondence map (M, A, regions) and initial latent, hand-computed cases."""
from __future__ import annotations

import json
import math

import pytest
import torch

from fluxdrag.core.correspondence import (
    CorrespondenceMap,
    build_correspondence,
    circumscribed_circle,
    compose_initial_latent,
    default_editable_region,
    drag_displacement,
    move_displacement,
    winner_takes_all_field,
)
from fluxdrag.core.instructions import TokenDrags, to_token_space


def _td(handles, targets, grid_hw, modes=None, scales=None, mask=None) -> TokenDrags:
    n = len(handles)
    return TokenDrags(
        handles=torch.tensor(handles, dtype=torch.float64).reshape(n, 2),
        targets=torch.tensor(targets, dtype=torch.float64).reshape(n, 2),
        modes=list(modes or ["move"] * n),
        scales=torch.tensor(scales or [[1.0, 1.0]] * n, dtype=torch.float64).reshape(n, 2),
        mask=mask,
        grid_hw=grid_hw,
        image_hw=(grid_hw[0] * 16, grid_hw[1] * 16),
    )


def _assert_partition(cm: CorrespondenceMap) -> None:
    regs = torch.stack([cm.destination, cm.inpaint, cm.transition, cm.background]).int()
    assert torch.equal(regs.sum(0), torch.ones(cm.grid_hw, dtype=torch.int32))


# ---------------------------------------------------------------- displacement fields


def test_elastic_lambda_one_at_handle_zero_on_circle():
    pts = torch.tensor([[0, 0], [2, 0], [4, 0], [5, 0], [0, -3]], dtype=torch.float64)
    v, lam = drag_displacement(pts, [0, 0], [2, 1], [0, 0], 4.0)
    assert torch.allclose(lam, torch.tensor([1.0, 0.5, 0.0, 0.0, 0.25], dtype=torch.float64))
    assert torch.allclose(v[1], torch.tensor([1.0, 0.5], dtype=torch.float64))  # 0.5 * d
    # off-centre handle s=(1,0): ray to p=(-1,0) meets O at q=(-4,0): |p-q|/|s-q| = 3/5
    _, lam2 = drag_displacement(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), [1, 0], [3, 0], [0, 0], 4)
    assert torch.allclose(lam2, torch.tensor([0.6, 1.0], dtype=torch.float64))
    # on the circle in an oblique direction: lambda 0
    p = torch.tensor([[4 * math.cos(1.0), 4 * math.sin(1.0)]], dtype=torch.float64)
    assert abs(drag_displacement(p, [1, 0], [3, 0], [0, 0], 4)[1].item()) < 1e-12


def test_move_displacement_rigid_and_scaled():
    pts = torch.tensor([[2.0, 3.0], [4.0, 1.0]])
    v = move_displacement(pts, [2, 3], [5, 3])
    assert v.tolist() == [[3.0, 0.0], [3.0, 0.0]]
    vs = move_displacement(pts, [2, 3], [5, 3], [2.0, 0.5])  # d + (r-1)(p-s)
    assert vs.tolist() == [[3.0, 0.0], [3.0 + 2.0, -0.5 * -2.0]]


def test_winner_takes_all_nearest_handle():
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [5.0, 0.0], [6.0, 0.0]])
    v, alpha, idx = winner_takes_all_field(
        pts, torch.tensor([[0.0, 0.0], [6.0, 0.0]]), torch.tensor([[0.0, 2.0], [6.0, -1.0]]),
        modes=["move", "move"],
    )
    assert idx.tolist() == [0, 0, 0, 1, 1]  # tie at x=3 -> lowest index
    assert alpha[0].item() == math.inf and alpha[4].item() == math.inf
    assert alpha[1].item() == 1.0 and alpha[2].item() == pytest.approx(1 / 9)
    assert v.tolist() == [[0, 2], [0, 2], [0, 2], [0, -1], [0, -1]]


# ---------------------------------------------------------------- the map


def test_single_move_translates_square_exactly():
    h, w = 12, 14
    P = torch.zeros(h, w, dtype=torch.bool)
    P[2:6, 2:6] = True  # 4x4 square, rows 2..5, cols 2..5
    cm = build_correspondence(_td([[3, 3]], [[9, 4]], (h, w), mask=P))  # d = (+6, +1)
    _assert_partition(cm)
    expect_dst = torch.zeros(h, w, dtype=torch.bool)
    expect_dst[3:7, 8:12] = True
    assert torch.equal(cm.destination, expect_dst)
    for r in range(3, 7):
        for c in range(8, 12):
            assert cm.matching[r, c].tolist() == [r - 1, c - 6]
    assert bool((cm.matching[~expect_dst] == -1).all())
    assert torch.equal(cm.inpaint, P)  # no overlap: the whole source is vacated
    # A = 1 at the handle's destination and its 4-neighbours, 1/2 diagonally, 1/4 at two cells
    assert cm.weight[4, 9].item() == 1.0
    assert cm.weight[4, 10].item() == 1.0 and cm.weight[3, 8].item() == 0.5
    assert cm.weight[4, 11].item() == 0.25
    assert bool((cm.weight[~expect_dst] == 0).all())
    # R_trans: one-token (Chebyshev) ring around R_dst u R_inp
    moved = expect_dst | P
    ring = torch.zeros(h, w, dtype=torch.bool)
    for r in range(h):
        for c in range(w):
            near = moved[max(0, r - 1):r + 2, max(0, c - 1):c + 2].any()
            ring[r, c] = bool(near) and not bool(moved[r, c])
    assert torch.equal(cm.transition, ring)
    assert int(cm.transition.sum()) == (36 - 16) + (36 - 16)  # two separate 6x6 rings


def test_move_from_pixel_instructions_token_grid():
    doc = {"version": 1, "image_size": [256, 192], "drags": [
        {"handle": [56, 56], "target": [152, 56], "mode": "move"}],
        "mask": {"polygons": [[[32, 32], [96, 32], [96, 96], [32, 96]]]}}
    cm = build_correspondence(to_token_space(doc, (192, 256)))
    assert cm.grid_hw == (12, 16)
    assert torch.nonzero(cm.destination).tolist() == [
        [r, c] for r in range(2, 6) for c in range(8, 12)
    ]
    assert cm.matching[2, 8].tolist() == [2, 2]


def test_regions_disjoint_cover_with_overlap_and_scale():
    h, w = 10, 10
    P = torch.zeros(h, w, dtype=torch.bool)
    P[3:7, 3:7] = True
    # move by +2 in x: source cols 3..6 -> 5..8, overlap at cols 5..6
    cm = build_correspondence(_td([[4, 4]], [[6, 4]], (h, w), mask=P), transition_width=2)
    _assert_partition(cm)
    assert torch.nonzero(cm.inpaint[3]).flatten().tolist() == [3, 4]
    assert torch.nonzero(cm.destination[3]).flatten().tolist() == [5, 6, 7, 8]
    # 2-token ring: rows 1..8 x cols 1..9 minus the 4x6 moved block
    assert int(cm.transition.sum()) == 8 * 9 - 4 * 6
    assert not bool(cm.background[1:9, 1:].any()) and bool(cm.background[:, 0].all())
    # scaled move (r = 2 about the handle) still gives a partition
    cm2 = build_correspondence(_td([[4, 4]], [[5, 5]], (h, w), scales=[[2.0, 2.0]], mask=P))
    _assert_partition(cm2)
    assert cm2.matching[5, 5].tolist() == [4, 4]  # handle -> target
    assert cm2.matching[7, 7].tolist() == [5, 5]  # (5,5) + (1,1) + (1,1)


def test_two_drags_split_by_voronoi_rule():
    h, w = 9, 12
    P = torch.zeros(h, w, dtype=torch.bool)
    P[4, 0:12] = True  # one row of 12 tokens
    td = _td([[2, 4], [9, 4]], [[2, 1], [9, 7]], (h, w), mask=P)  # up 3 / down 3
    cm = build_correspondence(td, transition_width=0)
    _assert_partition(cm)
    # nearest handle: cols 0..5 (|c-2| <= |c-9|) -> drag 0, cols 6..11 -> drag 1
    assert torch.nonzero(cm.destination[1]).flatten().tolist() == list(range(6))
    assert torch.nonzero(cm.destination[7]).flatten().tolist() == list(range(6, 12))
    for c in range(6):
        assert cm.matching[1, c].tolist() == [4, c]
    for c in range(6, 12):
        assert cm.matching[7, c].tolist() == [4, c]
    assert torch.equal(cm.inpaint, P)
    assert int(cm.destination.sum()) == 12


def test_collision_keeps_larger_alpha():
    h, w = 3, 14
    P = torch.zeros(h, w, dtype=torch.bool)
    P[1, 0:12] = True
    # drag 0: s=(2,1) -> +3; drag 1: s=(9,1) -> -3. Voronoi: cols 0..5 | 6..11.
    # destination x in 3..8 is hit by source x-3 (alpha 1/(x-5)^2) and x+3 (alpha 1/(x-6)^2)
    cm = build_correspondence(_td([[2, 1], [9, 1]], [[5, 1], [6, 1]], (h, w), mask=P))
    _assert_partition(cm)
    src_cols = [cm.matching[1, x, 1].item() for x in range(3, 9)]
    assert src_cols == [0, 1, 2, 9, 10, 11]
    assert cm.weight[1, 3:9].tolist() == [0.25, 1.0, 1.0, 1.0, 1.0, 0.25]
    assert torch.nonzero(cm.inpaint[1]).flatten().tolist() == [0, 1, 2, 9, 10, 11]
    assert cm.transition[:, 12].all() and not cm.transition[:, 13].any()
    assert cm.transition[0, :13].all() and cm.transition[2, :13].all()
    assert int(cm.background.sum()) == 3


def test_equal_alpha_collision_tie_is_lowest_source_index():
    P = torch.zeros(1, 8, dtype=torch.bool)
    P[0, [1, 5]] = True
    # shrink about the handle (3,0) with r = (0.01, 1): x -> 3 + 0.01 (x - 3), so sources 1 and 5
    # land on 2.98 and 3.02 -> both round to 3; both are 2 cells from the handle (alpha 1/4)
    cm = build_correspondence(_td([[3, 0]], [[3, 0]], (1, 8), scales=[[0.01, 1.0]], mask=P))
    assert cm.destination[0].tolist() == [False, False, False, True] + [False] * 4
    assert cm.matching[0, 3].tolist() == [0, 1]
    assert cm.weight[0, 3].item() == 0.25


def test_destinations_off_grid_are_dropped():
    P = torch.zeros(4, 6, dtype=torch.bool)
    P[1, 1:5] = True
    cm = build_correspondence(_td([[2, 1]], [[5, 1]], (4, 6), mask=P), transition_width=0)
    assert torch.nonzero(cm.destination[1]).flatten().tolist() == [4, 5]  # cols 3,4 -> 6,7 dropped
    assert cm.matching[1, 5].tolist() == [1, 2]
    _assert_partition(cm)


def test_elastic_drag_map_handle_goes_to_target():
    h, w = 16, 16
    P = torch.zeros(h, w, dtype=torch.bool)
    P[4:12, 4:12] = True
    cm = build_correspondence(_td([[6, 8]], [[9, 8]], (h, w), modes=["drag"], mask=P))
    _assert_partition(cm)
    assert cm.matching[8, 9].tolist() == [8, 6] and cm.weight[8, 9].item() == 1.0
    c, R = circumscribed_circle(P)
    assert c.tolist() == [7.5, 7.5] and R == pytest.approx(4 * math.sqrt(2))
    # corner p = (11, 11): ray from s = (6, 8) along (5, 3)/sqrt(34) meets O at t ~ 6.557,
    # lambda = 1 - sqrt(34)/t ~ 0.111, so the corner moves by ~0.33 tokens and stays in place
    _, lam = drag_displacement(torch.tensor([[11.0, 11.0]]), [6, 8], [9, 8], c, R)
    assert lam.item() == pytest.approx(0.1108, abs=1e-3)
    # along the handle's row the displacement shrinks away from the handle
    _, lam_row = drag_displacement(
        torch.tensor([[float(x), 8.0] for x in range(6, 12)]), [6, 8], [9, 8], c, R
    )
    assert bool((lam_row[1:] < lam_row[:-1]).all()) and lam_row[0].item() == 1.0


def test_default_region_is_disc_around_handle():
    td = _td([[5, 5]], [[5, 11]], (16, 16), modes=["drag"])  # |d| = 6 -> radius 3
    region = default_editable_region(td, (16, 16))
    assert int(region.sum()) == 29  # lattice points with x^2 + y^2 <= 9
    assert bool(region[5, 2]) and bool(region[2, 5]) and bool(region[3, 3])
    assert not bool(region[2, 3])
    cm = build_correspondence(td)
    assert torch.equal(cm.editable, region)
    _assert_partition(cm)
    small = default_editable_region(_td([[5, 5]], [[5, 6]], (16, 16)), (16, 16))
    assert int(small.sum()) == 5  # min radius 1


def test_errors():
    td = _td([[1, 1]], [[2, 1]], (4, 4))
    with pytest.raises(ValueError, match="region is empty"):
        build_correspondence(td, region_mask=torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one drag"):
        build_correspondence(_td([], [], (4, 4)))
    with pytest.raises(ValueError, match="token grid"):
        build_correspondence(td, region_mask=torch.ones(3, 4, dtype=torch.bool))


def test_to_dict_round_trip_json():
    P = torch.zeros(6, 8, dtype=torch.bool)
    P[1:4, 1:4] = True
    cm = build_correspondence(_td([[2, 2]], [[5, 3]], (6, 8), modes=["drag"], mask=P))
    d = json.loads(json.dumps(cm.to_dict()))
    cm2 = CorrespondenceMap.from_dict(d)
    for name in ("matching", "weight", "destination", "inpaint", "transition", "background",
                 "editable"):
        assert torch.equal(getattr(cm2, name), getattr(cm, name)), name
    assert torch.equal(cm2.drags.handles, cm.drags.handles) and cm2.drags.modes == ["drag"]
    assert cm2.grid_hw == (6, 8)


def test_flat_indices():
    P = torch.zeros(4, 6, dtype=torch.bool)
    P[1, 1] = True
    cm = build_correspondence(_td([[1, 1]], [[3, 2]], (4, 6), mask=P))
    idx = cm.source_index()
    assert idx[2 * 6 + 3].item() == 1 * 6 + 1 and int((idx >= 0).sum()) == 1
    ids = cm.id_source_index()
    trans_flat = torch.nonzero(cm.transition.reshape(-1)).flatten()
    assert torch.equal(ids[trans_flat], trans_flat)
    assert ids[2 * 6 + 3].item() == 7


# ---------------------------------------------------------------- initial latent


def test_compose_initial_latent_moves_patches_and_is_seeded():
    h, w = 4, 5
    P = torch.zeros(h, w, dtype=torch.bool)
    P[1, 1] = True
    P[2, 1] = True
    cm = build_correspondence(_td([[1, 1]], [[3, 1]], (h, w), mask=P))  # (1,1)->(1,3), (2,1)->(2,3)
    z = torch.randn(2, 16, 2 * h, 2 * w, generator=torch.Generator().manual_seed(7))
    out = compose_initial_latent(z, cm, seed=3)
    assert out.shape == z.shape
    # destination patches are exact copies of the source 2x2 latent patches
    assert torch.equal(out[:, :, 2:4, 6:8], z[:, :, 2:4, 2:4])
    assert torch.equal(out[:, :, 4:6, 6:8], z[:, :, 4:6, 2:4])
    # inpaint patches are the seeded noise at those positions
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out[:, :, 2:6, 2:4], noise[:, :, 2:6, 2:4])
    # everything else (transition + background) is z_T
    keep = torch.ones(2 * h, 2 * w, dtype=torch.bool)
    keep[2:6, 2:4] = False
    keep[2:6, 6:8] = False
    assert torch.equal(out[:, :, keep], z[:, :, keep])
    assert torch.equal(compose_initial_latent(z, cm, seed=3), out)
    other = compose_initial_latent(z, cm, seed=4)
    assert not torch.equal(other[:, :, 2:6, 2:4], out[:, :, 2:6, 2:4])
    assert torch.equal(other[:, :, keep], out[:, :, keep])
    assert torch.equal(z, torch.randn(2, 16, 8, 10, generator=torch.Generator().manual_seed(7)))


def test_compose_rejects_wrong_latent_size():
    P = torch.ones(2, 2, dtype=torch.bool)
    cm = build_correspondence(_td([[0, 0]], [[1, 0]], (2, 2), mask=P))
    with pytest.raises(ValueError, match="token grid 2x2"):
        compose_initial_latent(torch.zeros(1, 16, 6, 4), cm)
    assert compose_initial_latent(torch.zeros(1, 4, 4, 4, dtype=torch.float16), cm).dtype == (
        torch.float16
    )


# ---------------------------------------------------------------- issue 18: rotation, backward
# mapping, rigid fusion, resolution-independent gate, latent-pixel map


def test_move_with_angle_rotates_about_the_handle_clockwise_on_screen():
    from fluxdrag.core.correspondence import move_inverse
    pts = torch.tensor([[3.0, 2.0], [2.0, 3.0]], dtype=torch.float64)
    v = move_displacement(pts, [2, 2], [2, 2], angle=90.0)   # (1, 0) -> (0, 1): right -> down
    assert torch.allclose(pts + v, torch.tensor([[2.0, 3.0], [1.0, 2.0]], dtype=torch.float64))
    # with a scale, and the inverse undoes it
    v = move_displacement(pts, [2, 2], [5, 1], [2.0, 0.5], angle=30.0)
    assert torch.allclose(move_inverse(pts + v, [2, 2], [5, 1], [2.0, 0.5], 30.0), pts)
    # angle 0 is the paper's d + (r - 1)(p - s)
    assert torch.allclose(move_displacement(pts, [2, 2], [5, 1], [2.0, 0.5], 0.0),
                          torch.tensor([5 - 2.0, 1 - 2.0]) + torch.tensor([1.0, -0.5]) * (pts - 2))


def test_backward_mapping_leaves_no_holes_when_enlarging():
    h, w = 12, 12
    P = torch.zeros(h, w, dtype=torch.bool)
    P[4:8, 4:8] = True
    td = _td([[5.5, 5.5]], [[5.5, 5.5]], (h, w), scales=[[2.0, 2.0]], mask=P)
    fwd = build_correspondence(td, transition_width=0)
    bwd = build_correspondence(td, transition_width=0, backward=True)
    assert int(fwd.destination.sum()) == 16           # forward: 16 sources, spread with gaps
    assert int(bwd.destination.sum()) == 64           # backward: the whole 8x8 block
    assert bool(bwd.destination[2:10, 2:10].all())
    # every destination's source lies in P
    m = bwd.matching[bwd.destination]
    assert bool(P[m[:, 0], m[:, 1]].all())


def test_rigid_fusion_turns_rotating_drags_into_one_rotation():
    from fluxdrag.core.correspondence import fuse_rigid_drags
    h, w = 16, 16
    P = torch.zeros(h, w, dtype=torch.bool)
    P[5:11, 5:11] = True
    c = torch.tensor([8.0, 8.0], dtype=torch.float64)
    th = math.radians(40)
    R = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
    hs = c + torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]], dtype=torch.float64)
    ts = c + (hs - c) @ R.T
    td = _td(hs.tolist(), ts.tolist(), (h, w), modes=["drag"] * 3, mask=P)
    fused = fuse_rigid_drags(td, P, tolerance=0.2)
    assert len(fused) == 1 and fused.modes == ["move"]
    assert abs(float(fused.angles[0]) - 40.0) < 1e-6
    assert torch.allclose(fused.handles[0], hs.mean(0)) and torch.allclose(fused.targets[0], ts.mean(0))
    assert fuse_rigid_drags(td, P, tolerance=0.0) is td          # the paper: never
    # drags that do not fit a rigid motion stay as they are
    bent = _td(hs.tolist(), [ts[0].tolist(), hs[1].tolist(), (hs[2] + 3).tolist()], (h, w),
               modes=["drag"] * 3, mask=P)
    assert len(fuse_rigid_drags(bent, P, tolerance=0.2)) == 3
    # drags on two separate parts are fused per part only
    P2 = P.clone()
    P2[0:2, 0:2] = True
    two = _td(hs.tolist() + [[0.5, 0.5]], ts.tolist() + [[1.5, 0.5]], (h, w), modes=["drag"] * 4, mask=P2)
    out = fuse_rigid_drags(two, P2, tolerance=0.2)
    assert len(out) == 2 and out.modes == ["drag", "move"]


def test_two_objects_painted_apart_are_not_fused_when_their_tokens_touch():
    """[ours] ``pixel_region``: two objects painted one latent pixel apart touch on the token grid
    (one part there); each is dragged by its own move, and the two moves happen to fit one rotation.
    Read on the pixel grid they are two parts, and each keeps its own drag."""
    from fluxdrag.core.correspondence import fuse_rigid_drags
    h, w = 16, 16
    px = torch.zeros(2 * h, 2 * w, dtype=torch.bool)
    px[8:14, 6:12] = True                     # object A
    px[8:14, 13:19] = True                    # object B, one latent pixel to the right
    tok = px.reshape(h, 2, w, 2).any(3).any(1)
    hs = [[4.25, 5.25], [7.75, 5.25]]         # the objects' centres, in tokens
    ts = [[4.25, 8.25], [7.75, 8.75]]         # two moves whose ends fit a small rotation
    td = _td(hs, ts, (h, w), modes=["move", "move"], mask=tok)
    assert len(fuse_rigid_drags(td, tok, tolerance=0.2)) == 1            # the token grid: one part
    out = fuse_rigid_drags(td, tok, tolerance=0.2, pixel_region=px)
    assert len(out) == 2 and out.modes == ["move", "move"]


def test_gate_unit_is_resolution_independent():
    from fluxdrag.core.correspondence import gate_unit_tokens
    assert gate_unit_tokens((1024, 1024), 0) == 1.0          # the paper: one token at any size
    assert gate_unit_tokens((512, 512), 512) == 1.0          # equal to the paper at 512²
    assert gate_unit_tokens((1024, 768), 512) == 1.5         # shorter side 768 → 1.5 tokens
    # a token three away at 1024²: literal 1/9; image-relative (1.5 px-units away) 4/9 at 1024x1024
    P = torch.ones(64, 64, dtype=torch.bool)
    td = TokenDrags(handles=torch.tensor([[10.0, 10.0]]), targets=torch.tensor([[11.0, 10.0]]),
                    modes=["move"], scales=torch.ones(1, 2), mask=P, grid_hw=(64, 64),
                    image_hw=(1024, 1024))
    lit = build_correspondence(td, transition_width=0)
    rel = build_correspondence(td, transition_width=0, gate_reference=512)
    assert abs(float(lit.weight[10, 14]) - 1 / 9) < 1e-9       # source (13, 10) → dest (14, 10)
    assert abs(float(rel.weight[10, 14]) - 4 / 9) < 1e-9


def test_fine_map_moves_only_the_masked_pixels():
    from fluxdrag.core.correspondence import harmonic_fill
    h, w = 8, 8
    px = torch.zeros(2 * h, 2 * w, dtype=torch.bool)
    px[3:6, 3:5] = True                       # a 3x2 latent-pixel object, not token aligned
    tok = px.reshape(h, 2, w, 2).any(3).any(1)
    td = _td([[2.0, 2.0]], [[5.5, 2.0]], (h, w), mask=tok)   # 3.5 tokens = 7 latent pixels right
    cm = build_correspondence(td, backward=True, pixel_mask=px)
    fm = cm.fine
    assert int(fm.destination.sum()) == 6 and bool(fm.destination[3:6, 10:12].all())
    assert torch.equal(fm.vacated, px)       # no overlap: the whole source is vacated
    z = torch.randn(1, 3, 2 * h, 2 * w)
    z0 = compose_initial_latent(z, cm, seed=1)
    assert torch.equal(z0[..., 3:6, 10:12], z[..., 3:6, 3:5])          # moved exactly
    keep = ~(fm.destination | fm.vacated)
    assert torch.equal(z0[..., keep], z[..., keep])                     # nothing else touched
    assert not torch.equal(z0[..., px], z[..., px])                     # vacated: noise
    # the token map (the paper) would have moved whole tokens, background included
    tok_cm = build_correspondence(td)
    assert int(tok_cm.destination.sum()) * 4 > int(fm.destination.sum())
    # round trip of the record keeps the fine map
    back = CorrespondenceMap.from_dict(json.loads(json.dumps(cm.to_dict())))
    assert torch.equal(back.fine.source, fm.source) and torch.equal(back.fine.editable, px)
    # harmonic fill: a linear ramp is reproduced inside the hole
    ramp = torch.arange(16, dtype=torch.float32).reshape(1, 1, 1, 16).expand(1, 1, 16, 16).clone()
    filled = harmonic_fill(ramp.masked_fill(px, 99.0), px)
    assert (filled - ramp).abs().max() < 1e-3


def test_harmonic_fill_settles_on_a_wide_hole():
    """A 1024 px image's latent (128²) with a hole 70 latent pixels wide (a large dragged object):
    the membrane is solved to convergence, not left part-way from the ring's mean. A harmonic
    boundary (a tilted plane, per channel) is reproduced inside the hole, and the fill has no
    Laplacian residual. Jacobi sweeps of 2·(H + W), used before, were 0.57 off on the plane."""
    from fluxdrag.core.correspondence import harmonic_fill

    n = 128
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    plane = torch.stack([0.05 * x - 0.03 * y + c for c in range(4)])[None]        # (1, 4, n, n)
    hole = torch.zeros(n, n, dtype=torch.bool)
    hole[20:90, 30:100] = True
    hole[55, 30:50] = False                                                       # a pixel bridge left in
    filled = harmonic_fill(plane.masked_fill(hole, 7.0), hole)
    assert float((filled - plane)[..., hole].abs().max()) < 1e-3
    # on a curved boundary the fill is a membrane: each hole pixel the mean of its 4 neighbours
    wavy = torch.sin(x / 9.0)[None, None] + 0.01 * (y * y)[None, None]
    f = harmonic_fill(wavy, hole)[0, 0]
    p = torch.nn.functional.pad(f[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    mean4 = 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])
    span = float(wavy[0, 0][hole].max() - wavy[0, 0][hole].min())      # the boundary's range over the hole
    assert float((mean4 - f)[hole].abs().max()) < 1e-5 * span
    # a channel's constant offset costs no precision: the same fill, lifted
    lifted = harmonic_fill(wavy + 1000.0, hole)[0, 0] - 1000.0
    assert float((lifted - f)[hole].abs().max()) < 1e-3
    # the image outside the hole is untouched, and a whole-image region takes its own mean
    assert torch.equal(filled[..., ~hole], plane[..., ~hole])
    everything = torch.ones(n, n, dtype=torch.bool)
    assert torch.allclose(harmonic_fill(plane, everything), plane.mean((-2, -1), keepdim=True).expand_as(plane))
