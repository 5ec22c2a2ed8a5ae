"""Tier 1: ContextDrag latent-space reverse mapping (fluxdrag/core/reverse_mapping.py), hand-computed."""
from __future__ import annotations

import json

import pytest
import torch

from fluxdrag.core.reverse_ids import reference_position_ids
from fluxdrag.core.reverse_mapping import (
    ReverseMap,
    build_reverse_map,
    convex_hull,
    default_region_mask,
    forward_coarse_region,
    forward_displacement,
    injection_pairs,
    points_in_convex_polygon,
    reverse_lookup,
)


def rect(h: int, w: int, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    """Bool (h, w) mask of the cells x0 <= x <= x1, y0 <= y <= y1 (inclusive)."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def shifted(m: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """m translated by (dx, dy), cells leaving the grid dropped."""
    h, w = m.shape
    out = torch.zeros_like(m)
    yx = torch.nonzero(m)
    y, x = yx[:, 0] + dy, yx[:, 1] + dx
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    out[y[ok], x[ok]] = True
    return out


def assert_sources_valid(r: ReverseMap) -> None:
    """No destination without a source; every source lies in M_SRC; -1 exactly off M_DST."""
    h, w = r.grid_hw
    has_src = (r.src >= 0).all(dim=-1)
    assert torch.equal(has_src, r.dst_mask)
    assert torch.equal((r.src == -1).all(dim=-1), ~r.dst_mask)
    s = r.src[r.dst_mask]
    assert ((s[:, 0] < w) & (s[:, 1] < h)).all()
    assert r.src_mask[s[:, 1], s[:, 0]].all()
    assert not (r.dst_mask & ~r.coarse_mask).any()


# --------------------------------------------------------------------------------------------
# geometry pieces


def test_convex_hull_drops_interior_and_collinear_points_ccw():
    pts = [[0, 0], [2, 0], [1, 0], [2, 2], [0, 2], [1, 1], [0, 1], [2, 2]]
    hull = convex_hull(pts)
    assert hull.tolist() == [[0, 0], [2, 0], [2, 2], [0, 2]]  # counter-clockwise in (x, y)
    assert convex_hull([[3, 1]]).tolist() == [[3, 1]]
    assert convex_hull([[0, 0], [1, 1], [2, 2]]).tolist() == [[0, 0], [2, 2]]
    assert convex_hull(torch.zeros(0, 2)).shape == (0, 2)


def test_point_in_convex_polygon_inclusive_boundary():
    tri = convex_hull([[0, 0], [4, 0], [0, 4]])
    q = [[0, 0], [2, 2], [1, 1], [2.01, 2.01], [4, 0], [-0.5, 1], [3, 0.5]]
    assert points_in_convex_polygon(q, tri).tolist() == [True, True, True, False, True, False, True]
    seg = convex_hull([[1, 1], [3, 1]])
    assert points_in_convex_polygon([[2, 1], [3, 1], [4, 1], [2, 1.5]], seg).tolist() == [
        True, True, False, False
    ]
    dot = convex_hull([[1, 1]])
    assert points_in_convex_polygon([[1, 1], [1, 2]], dot).tolist() == [True, False]


def test_forward_displacement_hand_computed():
    s, t = [[5, 10], [20, 10]], [[8, 10], [17, 10]]  # d = (+3, 0), (-3, 0)
    d = forward_displacement([[5, 10], [20, 10], [4, 9]], s, t)
    assert d[0].tolist() == [3.0, 0.0]  # at a handle, w = inf -> d_i exactly
    assert d[1].tolist() == [-3.0, 0.0]
    # p = (4, 9): |p - s1|^2 = 2, |p - s2|^2 = 16^2 + 1 = 257
    w1, w2 = 1 / 2, 1 / 257
    assert d[2, 0].item() == pytest.approx((3 * w1 - 3 * w2) / (w1 + w2), abs=1e-9)
    assert d[2, 1].item() == 0.0


def test_default_region_is_disc_around_handle():
    m = default_region_mask([[5, 5]], [[9, 8]], (12, 12))  # |d| = 5 -> radius 2.5
    yy, xx = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    expected = ((xx - 5) ** 2 + (yy - 5) ** 2) <= 6.25
    assert torch.equal(m, expected)
    assert int(m.sum()) == 21
    small = default_region_mask([[3, 3]], [[3.5, 3]], (8, 8))  # radius max(1, 0.25) = 1
    assert int(small.sum()) == 5 and small[3, 3] and small[2, 3] and not small[2, 2]


# --------------------------------------------------------------------------------------------
# single drag = translation


@pytest.mark.parametrize(
    ("handle", "d"),
    [((3, 4), (3, 2)), ((5.5, 6.0), (-2, 4)), ((4, 4), (6, 0)), ((4, 5), (0, -3))],
)
@pytest.mark.parametrize("anchor", ["target", "handle"])
def test_single_drag_translates_square_exactly(handle, d, anchor):
    h, w = 16, 16
    src = rect(h, w, 3, 6, 4, 7)  # 4x4 square
    t = (handle[0] + d[0], handle[1] + d[1])
    r = build_reverse_map([handle], [t], src, (h, w), anchor=anchor)
    expected = shifted(src, *d)
    assert torch.equal(r.coarse_mask, expected)
    assert torch.equal(r.dst_mask, expected)
    qy, qx = torch.nonzero(r.dst_mask).unbind(1)
    assert torch.equal(r.src[qy, qx, 0], qx - d[0])  # src(q) = q - d exactly
    assert torch.equal(r.src[qy, qx, 1], qy - d[1])
    assert torch.equal(r.vacated_mask, src & ~expected)
    assert_sources_valid(r)


def test_non_convex_source_hull_filled_then_sources_dropped():
    # L-shape: the hull of its translate covers the notch, whose sources are outside M_SRC
    src = rect(12, 12, 2, 3, 2, 6) | rect(12, 12, 2, 6, 5, 6)
    r = build_reverse_map([[2, 2]], [[4, 3]], src, (12, 12))
    moved = shifted(src, 2, 1)  # x 4..5, y 3..7 and x 4..8, y 6..7
    # hull edge (5, 3) -> (8, 6) adds the notch cells (6, 4), (6, 5), (7, 5) to M_DST^coarse
    notch = torch.zeros_like(src)
    notch[4, 6] = notch[5, 6] = notch[5, 7] = True
    assert torch.equal(r.coarse_mask, moved | notch)
    assert torch.equal(r.dst_mask, moved)  # e.g. (6, 4) would read (4, 3), not in M_SRC
    assert_sources_valid(r)


def test_vacated_area_is_source_minus_destination():
    src = rect(10, 12, 1, 4, 2, 5)
    r = build_reverse_map([[2, 3]], [[4, 3]], src, (10, 12))  # d = (2, 0), overlaps itself
    assert torch.equal(r.vacated_mask, src & ~r.dst_mask)
    assert r.vacated_mask.nonzero().tolist() == [[y, x] for y in range(2, 6) for x in (1, 2)]
    assert not (r.vacated_mask & r.dst_mask).any()


# --------------------------------------------------------------------------------------------
# several drags


def test_two_opposite_drags_power_8_are_two_translations():
    h, w = 21, 26
    a, b = rect(h, w, 4, 6, 9, 11), rect(h, w, 19, 21, 9, 11)
    r = build_reverse_map([[5, 10], [20, 10]], [[8, 10], [17, 10]], a | b, (h, w), power=8)
    assert torch.equal(r.dst_mask, shifted(a, 3, 0) | shifted(b, -3, 0))
    for qx in range(7, 10):
        assert r.src[10, qx].tolist() == [qx - 3, 10]
    for qx in range(16, 19):
        assert r.src[10, qx].tolist() == [qx + 3, 10]
    assert_sources_valid(r)


def test_two_opposite_drags_power_2_hand_computed():
    h, w = 21, 26
    a, b = rect(h, w, 4, 6, 9, 11), rect(h, w, 19, 21, 9, 11)
    s, t = [[5, 10], [20, 10]], [[8, 10], [17, 10]]
    r = build_reverse_map(s, t, a | b, (h, w))
    # forward: column x = 4 of A moves by 3(1/2 - 1/257)/(1/2 + 1/257) ~ 2.954 (-> 6.954), the
    # column x = 6 by 3(1/2 - 1/197)/(1/2 + 1/197) ~ 2.940 (-> 8.940): hull covers x = 7, 8 only;
    # symmetric for B (x = 17, 18). Rows stay 9..11 (d_y = 0).
    exp_coarse = rect(h, w, 7, 8, 9, 11) | rect(h, w, 17, 18, 9, 11)
    assert torch.equal(r.coarse_mask, exp_coarse)
    # reverse (anchored on targets): q = (7, 10): w1 = 1, w2 = 1/100,
    # W_x = (-3 + 3/100) / 1.01 ~ -2.941 -> round(4.059) = 4; q = (8, 10) = t1 -> 8 - 3 = 5;
    # q = (7, 9): w1 = 1/2, w2 = 1/101, W_x = (-3/2 + 3/101) / (1/2 + 1/101) ~ -2.883 -> 4
    assert r.src[10, 7].tolist() == [4, 10]
    assert r.src[10, 8].tolist() == [5, 10]
    assert r.src[9, 7].tolist() == [4, 9]
    assert r.src[10, 17].tolist() == [20, 10] and r.src[10, 18].tolist() == [21, 10]
    assert torch.equal(r.dst_mask, exp_coarse)
    assert_sources_valid(r)
    # a single hull over both regions spans the gap; q there find no source and are dropped
    r_all = build_reverse_map(s, t, a | b, (h, w), hull_groups="all")
    assert torch.equal(r_all.coarse_mask, rect(h, w, 7, 18, 9, 11))
    # q = (9, 10): w1 = 1, w2 = 1/64, W_x = (-3 + 3/64) / (65/64) ~ -2.908 -> round(6.092) = 6
    assert r_all.src[10, 9].tolist() == [6, 10]
    assert torch.equal(r_all.dst_mask, rect(h, w, 7, 9, 9, 11) | rect(h, w, 16, 18, 9, 11))
    assert_sources_valid(r_all)


# --------------------------------------------------------------------------------------------
# grid borders


def test_drag_past_right_border_is_clipped():
    h, w = 10, 16
    src = rect(h, w, 10, 13, 3, 5)
    r = build_reverse_map([[11, 4]], [[15, 4]], src, (h, w))  # d = (4, 0): x 14..17
    assert torch.equal(r.dst_mask, rect(h, w, 14, 15, 3, 5))
    assert r.src[4, 14].tolist() == [10, 4] and r.src[4, 15].tolist() == [11, 4]
    assert_sources_valid(r)


def test_drag_past_top_left_corner_is_clipped():
    h, w = 10, 10
    src = rect(h, w, 0, 3, 0, 3)
    r = build_reverse_map([[1, 1]], [[-1, 0]], src, (h, w))  # d = (-2, -1)
    assert torch.equal(r.dst_mask, rect(h, w, 0, 1, 0, 2))
    assert r.src[0, 0].tolist() == [2, 1] and r.src[2, 1].tolist() == [3, 3]
    assert torch.equal(r.vacated_mask, src & ~rect(h, w, 0, 1, 0, 2))
    assert_sources_valid(r)


def test_sources_outside_grid_or_region_are_dropped():
    # hull=False: rounded forward points x 3..5 dilated by 1 -> x 2..6, y 0..4 (clipped at 0)
    h, w = 8, 10
    src = rect(h, w, 0, 2, 0, 3)
    r = build_reverse_map([[1, 1]], [[4, 1]], src, (h, w), hull=False, dilate=1)
    assert torch.equal(r.coarse_mask, rect(h, w, 2, 6, 0, 4))
    # q = (2, y) -> source (-1, y) off the grid; x = 6 -> (3, y) and y = 4 -> (x, 4) off M_SRC
    assert torch.equal(r.dst_mask, rect(h, w, 3, 5, 0, 3))
    assert_sources_valid(r)
    r0 = build_reverse_map([[1, 1]], [[4, 1]], src, (h, w), hull=False, dilate=0)
    assert torch.equal(r0.coarse_mask, rect(h, w, 3, 5, 0, 3))


# --------------------------------------------------------------------------------------------
# reverse lookup readings


def test_reverse_lookup_handle_anchor_inverts_forward_map():
    s, t = [[4.0, 4.0], [12.0, 9.0]], [[6.0, 5.0], [10.0, 9.0]]
    p = torch.tensor([[5.0, 5.0], [4.0, 4.0], [11.0, 8.0]])
    q = p + forward_displacement(p, s, t)
    back = reverse_lookup(q, s, t, anchor="handle", fixed_point_iters=30)
    assert torch.allclose(back, p.double(), atol=1e-6)
    # target anchor: at a target the source is its handle exactly
    assert reverse_lookup(t, s, t).tolist() == s


# --------------------------------------------------------------------------------------------
# masks, serialisation, consumers


def test_hide_mask_sets():
    h, w = 10, 12
    src = rect(h, w, 2, 4, 2, 4)
    r = build_reverse_map([[3, 3]], [[5, 3]], src, (h, w))  # translation by (2, 0)
    assert torch.equal(r.hide_mask("vacated", exclude_sources=False), rect(h, w, 2, 3, 2, 4))
    assert torch.equal(r.hide_mask("source", exclude_sources=False), src)
    assert not r.hide_mask("none").any()
    # a translation uses every source token: after the id rewrite nothing stays in the vacated area
    assert not r.hide_mask("vacated").any()
    # overlap: reference tokens inside M_DST that are no source (x = 5, 6 lie outside M_SRC)
    assert torch.equal(r.hide_mask("overlap"), rect(h, w, 5, 6, 2, 4))
    assert torch.equal(r.hide_mask("vacated_overlap", exclude_sources=False),
                       rect(h, w, 2, 3, 2, 4) | rect(h, w, 5, 6, 2, 4))
    # shrink: region dragged past the right border, half of it is no source -> hidden by default
    r2 = build_reverse_map([[11, 4]], [[15, 4]], rect(h, 16, 10, 13, 3, 5), (h, 16))
    assert torch.equal(r2.hide_mask("vacated"), rect(h, 16, 12, 13, 3, 5))


def test_to_dict_from_dict_roundtrip_through_json():
    src = rect(12, 14, 2, 5, 3, 6)
    r = build_reverse_map([[3, 4]], [[8, 6]], src, (12, 14), power=3)
    d = json.loads(json.dumps(r.to_dict()))
    r2 = ReverseMap.from_dict(d)
    assert r2.grid_hw == (12, 14)
    for name in ("src_mask", "coarse_mask", "dst_mask", "src", "handles", "targets"):
        assert torch.equal(getattr(r2, name), getattr(r, name)), name
    assert r2.params["power"] == 3.0 and r2.params["anchor"] == "target"
    assert d["pairs"][0] == [7, 5, 2, 3]  # first destination (7, 5) <- (2, 3), d = (5, 2)
    d["pairs"][0] = [7, 6, 0, 0]  # a source outside M_SRC is refused
    with pytest.raises(ValueError, match="outside src_mask"):
        ReverseMap.from_dict(d)


def test_injection_pairs_consistent_with_src():
    h, w = 9, 11
    r = build_reverse_map([[2, 2], [8, 6]], [[4, 3], [6, 6]], None, (h, w), power=8)
    dst, src = injection_pairs(r)
    assert dst.dtype == torch.long and src.dtype == torch.long
    assert dst.numel() == int(r.dst_mask.sum()) > 0
    assert torch.equal(dst, torch.nonzero(r.dst_mask.reshape(-1)).reshape(-1))  # ascending
    assert torch.equal(src, r.src[..., 1].reshape(-1)[dst] * w + r.src[..., 0].reshape(-1)[dst])
    # with handle (2, 2) -> (4, 3) the target token 4 + 3 w takes the handle token 2 + 2 w
    assert src[dst == 3 * w + 4].tolist() == [2 * w + 2]


def comfy_ref_ids(h: int, w: int, index: float = 1.0, oh: float = 0.0, ow: float = 0.0):
    """Kontext-style reference ids (index, row + oh, col + ow), row-major (h*w, 3)."""
    ids = torch.zeros(h, w, 3)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(h)[:, None] + oh
    ids[..., 2] = torch.arange(w)[None, :] + ow
    return ids.reshape(h * w, 3)


def test_reference_position_ids_move_sources_to_destinations():
    h, w = 10, 12
    src = rect(h, w, 2, 4, 2, 4)
    r = build_reverse_map([[3, 3]], [[8, 5]], src, (h, w))  # translation by (5, 2)
    base = comfy_ref_ids(h, w, oh=0.0, ow=12.0)
    ids = reference_position_ids(base, (h, w), r)
    grid = ids.reshape(h, w, 3)
    for y in range(2, 5):
        for x in range(2, 5):  # token at (x, y) now reads as (x + 5, y + 2)
            assert grid[y, x].tolist() == [1.0, y + 2.0, x + 5.0 + 12.0]
    moved = src.reshape(-1)
    assert torch.equal(ids[~moved], base[~moved])  # every other token keeps its ids
    no_idx = reference_position_ids(base[None], (h, w), r, keep_index=False)  # batched
    assert no_idx.shape == (1, h * w, 3)
    assert no_idx[0, 2 * w + 2].tolist() == [0.0, 4.0, 19.0]
    assert torch.equal(base, comfy_ref_ids(h, w, oh=0.0, ow=12.0))  # input untouched


def test_reference_position_ids_collisions_and_vacated_offset():
    h, w = 6, 6
    d = {
        "version": 1, "grid_hw": [h, w], "handles": [[1.0, 1.0]], "targets": [[3.0, 1.0]],
        "src_mask": {"size": [h, w], "counts": [7, 2, 27]},  # cells (1, 1), (2, 1)
        "coarse_mask": {"size": [h, w], "counts": [9, 2, 25]},
        "pairs": [[3, 1, 1, 1], [4, 1, 1, 1]],  # two destinations read the token (1, 1)
    }
    r = ReverseMap.from_dict(d)
    base = comfy_ref_ids(h, w)
    mean = reference_position_ids(base, (h, w), r).reshape(h, w, 3)
    assert mean[1, 1].tolist() == [1.0, 1.0, 3.5]
    first = reference_position_ids(base, (h, w), r, collision="first").reshape(h, w, 3)
    assert first[1, 1].tolist() == [1.0, 1.0, 3.0]
    # (2, 1) is vacated and no source: it keeps its ids unless an offset is asked for
    assert mean[1, 2].tolist() == [1.0, 1.0, 2.0]
    off = reference_position_ids(base, (h, w), r, vacated_offset=(100, -50)).reshape(h, w, 3)
    assert off[1, 2].tolist() == [1.0, -49.0, 102.0]
    assert off[1, 1].tolist() == [1.0, 1.0, 3.5]


def test_errors_are_clear():
    with pytest.raises(ValueError, match="one target per handle"):
        build_reverse_map([[1, 1]], [[2, 2], [3, 3]], None, (8, 8))
    with pytest.raises(ValueError, match=r"\(8, 8\) token mask"):
        build_reverse_map([[1, 1]], [[2, 2]], torch.ones(4, 4, dtype=torch.bool), (8, 8))
    r = build_reverse_map([[1, 1]], [[2, 2]], None, (8, 8))
    with pytest.raises(ValueError, match="N = 8"):
        reference_position_ids(torch.zeros(10, 3), (8, 8), r)
    with pytest.raises(ValueError, match="anchor"):
        build_reverse_map([[1, 1]], [[2, 2]], None, (8, 8), anchor="middle")
    empty = build_reverse_map([[1, 1]], [[2, 2]], torch.zeros(8, 8, dtype=torch.bool), (8, 8))
    assert not empty.dst_mask.any() and injection_pairs(empty)[0].numel() == 0
    assert not forward_coarse_region([[1, 1]], [[2, 2]], torch.zeros(8, 8, dtype=torch.bool)).any()
