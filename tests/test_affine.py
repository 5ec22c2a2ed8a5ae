"""Tier 1: region affines, warps, min-area rectangles, DragFlow's editable mask (fluxdrag/core/affine.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fluxdrag.core.affine import (
    Region,
    affine_sampling_grid,
    apply_affine,
    background_edit_mask,
    convex_hull,
    mask_outline_points,
    min_area_rect,
    rect_mask,
    region_affine,
    rescale_affine,
    resize_mask,
    rotation_angle,
    warp_mask,
    warp_with_affine,
)


def _box(H: int, W: int, rows: range, cols: range) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[rows.start: rows.stop, cols.start: cols.stop] = True
    return m


# ----------------------------------------------------------------------------- affines


def test_rotation_by_90_degrees_about_anchor():
    anchor, begin, target = (10.0, 10.0), (15.0, 10.0), (10.0, 15.0)
    assert rotation_angle(begin, target, anchor) == pytest.approx(math.pi / 2)
    A = region_affine("rotate", begin, target, anchor, progress=1.0, image_hw=(32, 32))
    pts = torch.tensor([[15.0, 10.0], [12.0, 10.0], [10.0, 10.0], [10.0, 7.0]])
    # (x, y) -> anchor + R90 (p - anchor), R90 = [[0, -1], [1, 0]]
    want = torch.tensor([[10.0, 15.0], [10.0, 12.0], [10.0, 10.0], [13.0, 10.0]])
    assert torch.allclose(apply_affine(A, pts), want.double(), atol=1e-12)
    # half progress: 45 degrees
    A_half = region_affine("rotate", begin, target, anchor, progress=0.5)
    r = 5 / math.sqrt(2)
    got = apply_affine(A_half, torch.tensor([[15.0, 10.0]]))[0]
    assert torch.allclose(got, torch.tensor([10 + r, 10 + r], dtype=torch.float64), atol=1e-12)


def test_rotation_sign_counterclockwise_on_screen():
    # target above the anchor (smaller y) -> negative angle
    assert rotation_angle((5, 0), (0, -5), (0, 0)) == pytest.approx(-math.pi / 2)


def test_translation_with_progress():
    A = region_affine("relocate", (1, 2), (5, 10), progress=0.25)
    assert torch.equal(A, torch.tensor([[1.0, 0, 1.0], [0, 1.0, 2.0]], dtype=torch.float64))
    alias = region_affine("deformation", (1, 2), (5, 10))
    assert torch.equal(alias, region_affine("deform", (1, 2), (5, 10)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"op": "shear", "begin": (0, 0), "target": (1, 1)}, "unknown region operation"),
        ({"op": "rotate", "begin": (0, 0), "target": (1, 1)}, "needs an anchor"),
        (
            {"op": "rotate", "begin": (5, 5), "target": (6, 5), "anchor": (40, 5),
             "image_hw": (32, 32)},
            "outside",
        ),
        ({"op": "rotate", "begin": (5, 5), "target": (9, 5), "anchor": (1, 5)}, "rotation of 0"),
        (
            {"op": "rotate", "begin": (1, 5), "target": (9, 5), "anchor": (1, 5)},
            "coincides with the anchor",
        ),
    ],
)
def test_region_affine_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        region_affine(**kwargs)


def test_region_validation_and_defaults():
    with pytest.raises(ValueError, match="empty region mask"):
        Region(torch.zeros(8, 8, dtype=torch.bool), "relocate", target=(4, 4))
    with pytest.raises(ValueError, match="outside the image"):
        Region(_box(8, 8, range(2), range(2)), "relocate", target=(40, 1))
    r = Region(_box(16, 16, range(2, 4), range(4, 8)), "relocate", target=(10, 13))
    assert r.begin == (6.0, 3.0)  # centroid of cells 4..7 x 2..3, centres at +0.5
    assert r.area_fraction == pytest.approx(8 / 256)
    # the same region on the latent grid (1/8 here: 16 -> 2) scales the translation
    t_lat = r.affine(1.0, (2, 2))[:, 2]
    assert torch.allclose(t_lat, torch.tensor([0.5, 1.25], dtype=torch.float64))


def test_rescale_affine_pixel_to_latent_keeps_anchor():
    A = region_affine("rotate", (80, 40), (40, 80), (40, 40))
    A_lat = rescale_affine(A, 1 / 8)
    got = apply_affine(A_lat, torch.tensor([[5.0, 5.0], [10.0, 5.0]]))
    assert torch.allclose(got, torch.tensor([[5.0, 5.0], [5.0, 10.0]], dtype=torch.float64))


# ----------------------------------------------------------------------------- warps


def test_integer_translation_moves_content_exactly():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9)
    out = warp_with_affine(x, region_affine("relocate", (0, 0), (2, -1)))
    want = torch.zeros_like(x)
    want[:, :, 0:6, 2:9] = x[:, :, 1:7, 0:7]  # out[i, j] = x[i + 1, j - 2]
    assert torch.equal(out, want)
    # the generic grid_sample path agrees (float32 rounding only)
    A = region_affine("relocate", (0, 0), (2, -1))
    grid = affine_sampling_grid(A, (7, 9), 2).float()
    gs = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(gs, want, atol=1e-5)


def test_pixel_translation_is_exact_on_latent_grid():
    torch.manual_seed(1)
    z = torch.randn(1, 16, 8, 8)
    A_px = region_affine("relocate", (10, 10), (26, 2))  # 16 px right, 8 px up
    out = warp_with_affine(z, rescale_affine(A_px, 1 / 8))
    assert torch.equal(out[:, :, 0:7, 2:], z[:, :, 1:8, :6])
    assert torch.all(out[:, :, 7, :] == 0) and torch.all(out[:, :, :, :2] == 0)


def test_rotation_warp_moves_impulse():
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 1, 4] = 1.0  # centre (4.5, 1.5); about (3, 3): rel (1.5, -1.5) -> (1.5, 1.5)
    A = region_affine("rotate", (4, 3), (3, 4), (3, 3))  # +90 degrees
    out = warp_with_affine(x, A)
    want = torch.zeros_like(x)
    want[0, 0, 4, 4] = 1.0
    assert torch.allclose(out, want, atol=1e-5)


def test_warp_mask_moves_rectangle_exactly_pixel_and_latent():
    m = _box(64, 64, range(8, 24), range(8, 16))
    r = Region(m, "relocate", target=(12 + 24, 16 + 16))  # centroid (12, 16) -> +24, +16
    assert torch.equal(warp_mask(m, r.affine()), _box(64, 64, range(24, 40), range(32, 40)))
    m_lat = resize_mask(m, (8, 8))
    assert torch.equal(m_lat, _box(8, 8, range(1, 3), range(1, 2)))
    moved_lat = warp_mask(m_lat, r.affine(1.0, (8, 8)))
    assert torch.equal(moved_lat, _box(8, 8, range(3, 5), range(4, 5)))
    # rotation keeps the anchor cell in place
    r_rot = Region(m, "rotate", target=(12, 24), begin=(20, 16), anchor=(12, 16))
    moved = warp_mask(m, r_rot.affine())
    assert bool(moved[15, 11]) and bool(m[15, 11])
    assert moved.sum() == m.sum()


# ----------------------------------------------------------------------------- geometry


def test_convex_hull_drops_interior_and_collinear_points():
    pts = torch.tensor([[0, 0], [2, 0], [4, 0], [4, 3], [0, 3], [1, 1], [2, 2], [0, 1.5]])
    hull = convex_hull(pts)
    assert {tuple(p) for p in hull.tolist()} == {(0, 0), (4, 0), (4, 3), (0, 3)}


def test_min_area_rect_axis_aligned():
    torch.manual_seed(0)
    corners = torch.tensor([[2.0, 1.0], [8.0, 1.0], [8.0, 4.0], [2.0, 4.0]])
    inner = torch.rand(50, 2) * torch.tensor([6.0, 3.0]) + torch.tensor([2.0, 1.0])
    rect = min_area_rect(torch.cat([corners, inner]))
    assert rect.area == pytest.approx(18.0, abs=1e-12)
    assert rect.angle == pytest.approx(0.0, abs=1e-12)
    assert sorted(rect.size.tolist()) == pytest.approx([3.0, 6.0])
    assert torch.allclose(rect.centre, torch.tensor([5.0, 2.5], dtype=torch.float64))


def test_min_area_rect_rotated_square_is_exact():
    diamond = torch.tensor(
        [[0.0, 5.0], [5.0, 0.0], [10.0, 5.0], [5.0, 10.0], [5.0, 5.0], [3.0, 5.0]]
    )
    rect = min_area_rect(diamond)
    assert rect.area == pytest.approx(50.0, abs=1e-9)  # side 5*sqrt(2); axis box would be 100
    assert rect.angle == pytest.approx(math.pi / 4, abs=1e-12)
    assert {tuple(round(v, 9) for v in c) for c in rect.corners.tolist()} == {
        (0.0, 5.0), (5.0, 0.0), (10.0, 5.0), (5.0, 10.0)
    }


def test_mask_outline_hull_covers_cell_squares():
    m = _box(10, 12, range(2, 5), range(3, 8))
    rect = min_area_rect(mask_outline_points(m))
    assert rect.area == pytest.approx(15.0)  # 3 rows x 5 columns of whole cells
    assert torch.equal(rect_mask(rect.corners, 10, 12), m)


def test_rect_mask_cell_centres():
    got = rect_mask(torch.tensor([[2.0, 1.0], [6.0, 1.0], [6.0, 4.0], [2.0, 4.0]]), 6, 8)
    assert torch.equal(got, _box(6, 8, range(1, 4), range(2, 6)))


def test_background_mask_translation_is_union_box():
    m = _box(64, 64, range(10, 20), range(5, 15))
    A = region_affine("relocate", (0, 0), (20, 0))
    bg = background_edit_mask([m], [A], 64, 64)
    assert torch.equal(bg, _box(64, 64, range(10, 20), range(5, 35)))
    lat = background_edit_mask([m], [A], 64, 64, out_hw=(8, 8))  # rule "any"
    assert torch.equal(lat, _box(8, 8, range(1, 3), range(5)))
    maj = background_edit_mask([m], [A], 64, 64, out_hw=(8, 8), rule="majority")
    # rows 10..19 cover 6/8 of latent row 1 and 4/8 of row 2; cols 5..34 cover 3/8 of col 0
    assert torch.equal(maj, _box(8, 8, range(1, 3), range(1, 4)))


def test_background_mask_contains_original_and_moved_regions():
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    blob = ((xx - 20) ** 2 + (yy - 30) ** 2) < 49
    regions = [
        Region(blob, "rotate", target=(32, 44), begin=(44, 32), anchor=(32, 32)),
        Region(_box(64, 64, range(50, 56), range(40, 50)), "relocate", target=(52, 40)),
    ]
    As = [r.affine() for r in regions]
    bg = background_edit_mask([r.mask for r in regions], As, 64, 64, include_regions=False)
    for r, A in zip(regions, As):
        assert bool(bg[r.mask].all())
        assert bool(bg[warp_mask(r.mask, A)].all())
    assert bg.sum() < 64 * 64 / 2  # and it is not the whole image
