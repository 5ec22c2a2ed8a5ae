"""Tier 1: DragFlow schedule, weights, feature unpacking, loss, latent loop (fluxdrag/core/dragflow.py)."""
from __future__ import annotations

import pytest
import torch

from fluxdrag.core.affine import (
    Region,
    background_edit_mask,
    warp_mask,
    warp_with_affine,
)
from fluxdrag.core.dragflow import (
    affine_feature_loss,
    cut_features,
    feature_grid_hw,
    hard_background_constraint,
    mean_drag_distance,
    optimise_latent,
    patchify,
    progressive_weight,
    region_weights,
    scale_level,
    unpack_token_features,
)


def _box(H: int, W: int, rows: range, cols: range) -> torch.Tensor:
    m = torch.zeros(H, W, dtype=torch.bool)
    m[rows.start: rows.stop, cols.start: cols.stop] = True
    return m


def test_progressive_weight():
    assert progressive_weight(0) == pytest.approx(0.02)
    assert progressive_weight(24) == pytest.approx(0.5)
    assert progressive_weight(49) == 1.0
    assert progressive_weight(50) == 1.0 and progressive_weight(69) == 1.0
    assert progressive_weight(1, n_transport=4) == 0.5


def test_region_weights():
    assert torch.equal(region_weights([0.3]), torch.tensor([1.0], dtype=torch.float64))
    # s = 0 -> 1 + 0.5/0.1 = 6 -> clamped 5; s = 0.4 -> 1 + 0.5/0.5 = 2
    want = torch.tensor([5 / 7, 2 / 7], dtype=torch.float64)
    assert torch.allclose(region_weights([0.0, 0.4]), want)
    # s = 0.9 -> 1.5, s = 0.15 -> 3
    want = torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)
    assert torch.allclose(region_weights([0.9, 0.15]), want)


def test_scale_level_rules():
    assert scale_level((512, 512), 10.0) == 2.0
    assert scale_level((600, 600), 10.0) == 2.0  # strictly greater than 600 needed
    assert scale_level((720, 960), 10.0) == 3.0
    assert scale_level((1024, 1024), 10.0) == 4.0
    assert scale_level((1024, 1024), 90.0) == 4.0  # adaptive off
    assert scale_level((1024, 1024), 90.0, use_adaptive=True) == pytest.approx(3.0)
    assert scale_level((1024, 1024), 20.0, use_adaptive=True) == 4.0  # drag < 30 px
    assert feature_grid_hw((720, 960), 3.0) == (240, 320)
    # adaptive: the mean drag spans 30 cells of the feature grid
    level = scale_level((512, 512), 60.0, use_adaptive=True)
    assert 60.0 * feature_grid_hw((512, 512), level)[1] / 512 == pytest.approx(30.0)


def test_mean_drag_distance_in_pixels():
    r1 = Region(_box(8, 8, range(2), range(2)), "relocate", target=(4, 4), begin=(1, 1))
    r2 = Region(_box(8, 8, range(2), range(2)), "relocate", target=(1, 5), begin=(1, 1))
    assert mean_drag_distance([r1, r2]) == pytest.approx((18**0.5 + 4) / 2)
    assert mean_drag_distance([r1, r2], (64, 64)) == pytest.approx(8 * (18**0.5 + 4) / 2)


def test_unpack_patchify_round_trip_and_order():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 8)
    tok = patchify(x)
    assert tok.shape == (2, 12, 12)
    assert torch.equal(unpack_token_features(tok, (3, 4)), x)
    # hand-built token: channels (c, ph, pw) = c*4 + ph*2 + pw
    t = torch.arange(8.0).reshape(1, 1, 8)
    maps = unpack_token_features(t, (1, 1))
    assert torch.equal(maps[0, 0], torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    assert torch.equal(maps[0, 1], torch.tensor([[4.0, 5.0], [6.0, 7.0]]))
    # second token of a 1x2 grid lands in columns 2..3
    t2 = torch.cat([torch.zeros(1, 1, 4), torch.ones(1, 1, 4)], dim=1)
    want = torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1]])
    assert torch.equal(unpack_token_features(t2, (1, 2))[0, 0], want)


def test_cut_features_concatenates():
    a, b = torch.ones(1, 2, 8, 8), torch.full((1, 3, 8, 8), 2.0)
    out = cut_features([a, b], (4, 4))
    assert out.shape == (1, 5, 4, 4)
    assert torch.equal(out[:, 2:], torch.full((1, 3, 4, 4), 2.0))


def test_affine_feature_loss_values():
    torch.manual_seed(0)
    F_orig = torch.randn(1, 4, 8, 8)
    mask = _box(8, 8, range(2, 4), range(2, 4))
    A = torch.tensor([[1.0, 0, 3.0], [0, 1.0, 1.0]], dtype=torch.float64)
    warped = warp_with_affine(F_orig, A)
    assert affine_feature_loss(warped, F_orig, [mask], [A], [1.0]).item() == 0.0
    # outside the moved mask F_cur is free
    free = warped.clone()
    free[..., 0, 0] = 100.0
    assert affine_feature_loss(free, F_orig, [mask], [A], [1.0]).item() == 0.0
    # hand value: F_orig = 1, F_cur = 0 -> 4 cells x 1 channel of |0 - 1| over 1*1*4*4
    ones = torch.ones(1, 1, 4, 4)
    m = _box(4, 4, range(2), range(2))
    A1 = torch.tensor([[1.0, 0, 1.0], [0, 1.0, 0.0]], dtype=torch.float64)
    loss = affine_feature_loss(torch.zeros_like(ones), ones, [m], [A1], [0.5])
    assert loss.item() == pytest.approx(0.5 * 4 / 16)


def test_hard_background_constraint_is_bitwise():
    torch.manual_seed(0)
    z, z_bg = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    M = _box(4, 4, range(1, 3), range(2))
    out = hard_background_constraint(z, z_bg, M)
    assert torch.equal(out[..., ~M], z_bg[..., ~M]) and torch.equal(out[..., M], z[..., M])
    soft = hard_background_constraint(z, z_bg, torch.full((4, 4), 0.25))
    assert torch.allclose(soft, 0.75 * z_bg + 0.25 * z)


def _toy(H=24, W=24, C=4):
    """Latent with a textured 5x5 blob at rows/cols 4..8 on small noise; region at 8x pixels."""
    torch.manual_seed(0)
    z0 = 0.05 * torch.randn(1, C, H, W)
    ii, jj = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij")
    z0[:, :, 4:9, 4:9] += 1.0 + 0.2 * ii + 0.1 * jj
    pix = torch.zeros(8 * H, 8 * W, dtype=torch.bool)
    pix[32:72, 32:72] = True
    return z0, pix


def test_optimise_latent_moves_blob_and_keeps_background():
    z0, pix = _toy()
    region = Region(pix, "relocate", target=(52 + 80, 52 + 64))  # +10 latent cols, +8 rows
    edit = background_edit_mask([pix], [region.affine()], *pix.shape, out_hw=(24, 24))
    N = z0.numel()
    lr = 0.1 * N  # one L1 sign step = 0.1 per cell
    seen = []
    res = optimise_latent(z0, lambda z: z, z0, [region], z0, edit, lr=lr, callback=seen.append)
    assert res.iterations == 70 and len(seen) == 70 and seen[-1]["phase"] == "intensify"
    z = res.z
    # background outside the editable mask is bitwise z_bg
    assert torch.equal(z[..., ~edit], z0[..., ~edit])
    # inside the moved region the blob's content sits at the target
    A_lat = region.affine(1.0, (24, 24))
    M1 = warp_mask(_box(24, 24, range(4, 9), range(4, 9)), A_lat)
    assert torch.equal(M1, _box(24, 24, range(12, 17), range(14, 19)))
    want = warp_with_affine(z0, A_lat)
    assert (z - want)[..., M1].abs().max() <= 0.1 + 1e-4
    # intensity-weighted centroid of the content under the moved mask = old centroid + (10, 8)
    def centroid(t, m):
        w = t.mean(1)[0] * m
        ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
        return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())

    cx0, cy0 = centroid(z0, _box(24, 24, range(4, 9), range(4, 9)))
    cx, cy = centroid(z, M1)
    assert cx == pytest.approx(cx0 + 10, abs=0.1) and cy == pytest.approx(cy0 + 8, abs=0.1)
    # the loss at the final pose fell by more than 10x from the unedited latent
    m_lat = _box(24, 24, range(4, 9), range(4, 9))
    before = affine_feature_loss(z0, z0, [m_lat], [A_lat], [1.0])
    after = affine_feature_loss(z, z0, [m_lat], [A_lat], [1.0])
    assert after < 0.1 * before


def test_optimise_latent_early_stop_and_rotation():
    z0, pix = _toy()
    # +90 degrees about pixel (40, 40): the blob turns about its upper-left part
    region = Region(pix, "rotate", target=(40, 80), begin=(80, 40), anchor=(40, 40))
    edit = background_edit_mask([pix], [region.affine()], *pix.shape, out_hw=(24, 24))
    A_lat = region.affine(1.0, (24, 24))
    m_lat = _box(24, 24, range(4, 9), range(4, 9))
    before = affine_feature_loss(2.0 * z0, 2.0 * z0, [m_lat], [A_lat], [1.0]).item()
    res = optimise_latent(
        z0, lambda z: 2.0 * z, 2.0 * z0, [region], z0, edit,
        n_transport=10, n_intensify=40, lr=0.05 * z0.numel(), early_stop_tol=0.3 * before,
    )
    assert 10 < res.iterations < 50  # stopped inside INTENSIFY
    assert res.losses[-1] <= 0.3 * before
    assert torch.equal(res.z[..., ~edit], z0[..., ~edit])


# ------------------------------------------------------------------------------- ours (issue 17)
def test_token_maps_are_the_tokens_on_their_grid():
    from fluxdrag.core.dragflow import token_maps
    t = torch.randn(2, 12, 5)
    m = token_maps(t, (3, 4))
    assert m.shape == (2, 5, 3, 4)
    assert torch.equal(m[1, :, 2, 1], t[1, 2 * 4 + 1])
    with pytest.raises(ValueError):
        token_maps(t, (3, 3))


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
def test_adam_and_normalized_steps_do_not_depend_on_gradient_scale(optimizer):
    """The same latent moves the same way whatever the loss's scale (its normalisation over C·h·w,
    the image size); plain SGD's step scales with it."""
    z0 = torch.zeros(1, 16, 8, 8)
    r = Region(_box(8, 8, range(2, 4), range(2, 4)), "relocate", target=(5.0, 3.0), begin=(3.0, 3.0))
    F0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    M = torch.ones(8, 8, dtype=torch.bool)

    def run(scale, opt):
        fn = lambda z: scale * (z[:, :4] + F0)  # noqa: E731
        return optimise_latent(z0, fn, scale * F0, [r], z0, M, n_transport=2, n_intensify=3,
                               lr=0.1, optimizer=opt).z
    a, b = run(1.0, optimizer), run(1000.0, optimizer)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    s1, s2 = run(1.0, "sgd"), run(1000.0, "sgd")
    assert not torch.allclose(s1, s2)


def test_hole_is_held_at_the_start_and_redrawn_with_fresh_noise():
    from fluxdrag.core.dragflow import fill_from_surroundings, hole_start, vacated_mask
    x0 = torch.zeros(1, 16, 8, 8)
    x0[..., 2:4, 2:4] = 5.0                   # the object
    z = x0 * 0.1 + 0.9 * torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    m = _box(64, 64, range(16, 32), range(16, 32))
    hole = vacated_mask([Region(m, "relocate", target=(56.0, 24.0), begin=(24.0, 24.0))], (8, 8))
    assert hole.sum() == 4 and bool(hole[2:4, 2:4].all())
    assert torch.equal(fill_from_surroundings(x0, hole)[..., 2:4, 2:4], torch.zeros(1, 16, 2, 2))
    zs = hole_start(z, x0, hole, 0.9, seed=1)
    assert torch.equal(zs[..., ~hole], z[..., ~hole])
    assert not torch.allclose(zs[..., hole], z[..., hole])
    # the optimisation keeps the hole at its start whatever the gradient says
    r = Region(m[::8, ::8], "relocate", target=(7.0, 3.0), begin=(3.0, 3.0))
    F0 = torch.randn(1, 4, 8, 8)
    out = optimise_latent(zs, lambda q: q[:, :4] * 3, F0, [r], zs, torch.ones(8, 8, dtype=torch.bool),
                          n_transport=2, n_intensify=2, lr=0.5, optimizer="adam", hole=hole)
    assert torch.equal(out.z[..., hole], zs[..., hole])
    assert not torch.equal(out.z[..., ~hole], zs[..., ~hole])


def test_region_edit_mask_is_the_regions_and_their_copies():
    from fluxdrag.core.dragflow import region_edit_mask
    m = _box(64, 64, range(16, 32), range(16, 32))
    A = Region(m, "relocate", target=(56.0, 24.0), begin=(24.0, 24.0)).affine()
    M = region_edit_mask([m], [A], (8, 8))
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[2:4, 2:4] = True
    want[2:4, 6:8] = True
    assert torch.equal(M, want)
    M1 = region_edit_mask([m], [A], (8, 8), dilate=1)
    assert bool(M1[1:5, 1:5].all()) and int(M1.sum()) > int(M.sum())


def test_paired_fireflow_with_a_given_background_path_never_calls_the_original_branch():
    from fluxdrag.core.dragflow import paired_fireflow
    path = [torch.full((1, 2, 4, 4), float(i)) for i in range(4)]
    M = torch.zeros(4, 4, dtype=torch.bool)
    M[1:3, 1:3] = True

    def boom(z, s):
        raise AssertionError("original branch evaluated")
    z, zo = paired_fireflow(lambda z, s: -z, boom, torch.ones(1, 2, 4, 4), path[0], [1.0, 0.6, 0.3, 0.0],
                            M, orig_path=path)
    assert torch.equal(zo, path[-1]) and torch.equal(z[..., ~M], path[-1][..., ~M])


def test_paired_fireflow_holds_the_hole_on_its_path_down_to_the_release_sigma():
    from fluxdrag.core.dragflow import paired_fireflow
    sig = [1.0, 0.6, 0.3, 0.0]
    path = [torch.full((1, 2, 4, 4), 5.0) for _ in sig]
    M = torch.ones(4, 4, dtype=torch.bool)
    hole = torch.zeros(4, 4, dtype=torch.bool)
    hole[0, 0] = True
    seen = []

    def v(z, s):
        seen.append((s, float(z[0, 0, 0, 0])))
        return torch.zeros_like(z)
    z, _ = paired_fireflow(v, None, torch.zeros(1, 2, 4, 4), path[0], sig, M, orig_path=path,
                           hold=(hole, lambda s: torch.full((1, 2, 4, 4), 100 * s), 0.5))
    # after the step ending at 0.6 the hole is the path's value (the next midpoint sees it);
    # the step ending at 0.3 (< 0.5) releases it: v = 0 leaves it at 60, not 30
    assert any(abs(s - 0.45) < 1e-9 and abs(val - 60.0) < 1e-4 for s, val in seen), seen
    assert float(z[0, 0, 0, 0]) == pytest.approx(60.0) and float(z[0, 0, 1, 1]) == 0.0
