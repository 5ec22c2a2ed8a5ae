"""Tier 1: AttentionDrag pure-core math (fluxdrag/core/attention_drag.py) with hand-built attention."""

from __future__ import annotations

import math

import pytest
import torch

from fluxdrag.core.attention_drag import (
    attention_displacement_field,
    attention_drag,
    attention_to_handle,
    auto_mask,
    cell_index,
    fill_holes_attention_weighted,
    handle_weights,
    mask_threshold,
    pixel_to_cell,
    warp_latent_one_step,
)

H, W = 8, 8
C_LOGIT = 30.0
HANDLE = (2, 2)  # (x, y)


def _square(x0: int, x1: int, y0: int, y1: int, hw=(H, W)) -> torch.Tensor:
    """Bool (h, w) mask of columns x0..x1 and rows y0..y1 (inclusive)."""
    m = torch.zeros(hw, dtype=torch.bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


S = _square(1, 3, 1, 3)  # the object square around the handle
T = _square(5, 6, 5, 6)  # queries that look at the square's key


def _square_qk() -> tuple[torch.Tensor, torch.Tensor]:
    """q, k (1, 1, 64, 2) with scale 1: keys in S are c·e0, the handle's query and the queries
    in T are e0, everything else is 0. So q_handle·k_j = c on S and 0 elsewhere."""
    q = torch.zeros(1, 1, H * W, 2)
    k = torch.zeros(1, 1, H * W, 2)
    k[0, 0, S.reshape(-1), 0] = C_LOGIT
    q[0, 0, cell_index(HANDLE, (H, W)), 0] = 1.0
    q[0, 0, T.reshape(-1), 0] = 1.0
    return q, k


# --------------------------------------------------------------------------- attention map


def test_query_direction_matches_closed_form():
    q, k = _square_qk()
    a = attention_to_handle(q, k, cell_index(HANDLE, (H, W)), (H, W), scale=1.0)
    assert a.shape == (H, W)
    den = 9 * math.exp(C_LOGIT) + 55
    expected = torch.where(S, math.exp(C_LOGIT) / den, 1.0 / den).float()
    torch.testing.assert_close(a, expected, rtol=1e-5, atol=0)
    assert abs(float(a.sum()) - 1.0) < 1e-5


def test_key_direction_matches_closed_form_and_differs_from_query():
    q, k = _square_qk()
    idx = cell_index(HANDLE, (H, W))
    a_key = attention_to_handle(q, k, idx, (H, W), direction="key", scale=1.0, chunk=7)
    looking = T.clone()
    looking[HANDLE[1], HANDLE[0]] = True  # the handle's own query also looks at S
    p_look = math.exp(C_LOGIT) / (9 * math.exp(C_LOGIT) + 55)  # P_i(handle) for those
    p_rest = 1.0 / 64  # zero queries attend uniformly
    total = 5 * p_look + 59 * p_rest
    expected = torch.where(looking, p_look / total, p_rest / total).float()
    torch.testing.assert_close(a_key, expected, rtol=1e-5, atol=0)
    # "query" = where the handle looks (S), "key" = who looks at the handle (T ∪ handle)
    a_query = attention_to_handle(q, k, idx, (H, W), direction="query", scale=1.0)
    assert torch.equal(auto_mask(a_query), S)
    assert torch.equal(auto_mask(a_key), looking)


def test_both_directions_match_brute_force_and_multi_handle_stacks():
    g = torch.Generator().manual_seed(0)
    hw = (3, 5)  # non-square: row-major order matters
    q = torch.randn(2, 3, 15, 4, generator=g)
    k = torch.randn(2, 3, 15, 4, generator=g)
    p = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)  # (B, H, N, N), scale 1/√4
    handles = [4, 11]
    for direction in ("query", "key"):
        multi = attention_to_handle(q, k, handles, hw, direction=direction, chunk=4)
        assert multi.shape == (2, 3, 5)
        for n, hidx in enumerate(handles):
            if direction == "query":
                per = p[:, :, hidx, :]
            else:
                col = p[:, :, :, hidx]
                per = col / col.sum(-1, keepdim=True)
            torch.testing.assert_close(multi[n], per.mean((0, 1)).reshape(hw))
            single = attention_to_handle(q, k, hidx, hw, direction=direction)
            torch.testing.assert_close(single, multi[n])
            mx = attention_to_handle(q, k, hidx, hw, direction=direction, heads_reduce="max")
            torch.testing.assert_close(mx, per.amax((0, 1)).reshape(hw))


def test_row_major_orientation_on_non_square_grid():
    hw = (6, 10)
    cell = (7, 2)  # x=7, y=2
    q = torch.zeros(1, 1, 60, 1)
    k = torch.zeros(1, 1, 60, 1)
    q[0, 0, 0, 0] = 1.0
    k[0, 0, cell_index(cell, hw), 0] = 50.0
    a = attention_to_handle(q, k, 0, hw, scale=1.0)
    assert a.shape == hw
    assert divmod(int(a.argmax()), 10) == (2, 7)  # [row, col] = [y, x]


def test_attention_bad_inputs():
    q, k = _square_qk()
    with pytest.raises(ValueError, match="direction"):
        attention_to_handle(q, k, 0, (H, W), direction="both")
    with pytest.raises(ValueError, match="grid"):
        attention_to_handle(q, k, 0, (4, 4))
    with pytest.raises(ValueError, match="handle index"):
        attention_to_handle(q, k, 64, (H, W))


# --------------------------------------------------------------------------- mask


def test_auto_mask_equals_thresholded_set_and_includes_handle():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(6, 7, generator=g) ** 4
    m = auto_mask(a, tau=2.0)
    assert torch.equal(m, a > 2.0 * a.mean())
    low = (a <= 2.0 * a.mean()).nonzero()[0]  # a cell below threshold
    handle = (int(low[1]), int(low[0]))
    mh = auto_mask(a, tau=2.0, handles=[handle])
    expected = (a > 2.0 * a.mean()).clone()
    expected[handle[1], handle[0]] = True
    assert torch.equal(mh, expected)
    assert torch.equal(auto_mask(a, tau=0.5, relative_to="max"), a > 0.5 * a.max())
    assert torch.equal(auto_mask(a, tau=0.3, relative_to="absolute"), a > 0.3)


def test_auto_mask_dilate_and_per_handle_stack():
    a = torch.zeros(2, 5, 5)
    a[0, 2, 2] = 1.0
    a[1, 0, 4] = 1.0
    m = auto_mask(a, handles=[(0, 0), (4, 4)], dilate=1)
    exp0 = _square(1, 3, 1, 3, (5, 5)) | _square(0, 1, 0, 1, (5, 5))
    exp1 = _square(3, 4, 0, 1, (5, 5)) | _square(3, 4, 3, 4, (5, 5))
    assert torch.equal(m[0], exp0)
    assert torch.equal(m[1], exp1)


# --------------------------------------------------------------------------- field


def test_one_hot_square_field_moves_exactly_the_square():
    q, k = _square_qk()
    a = attention_to_handle(q, k, cell_index(HANDLE, (H, W)), (H, W), scale=1.0)
    m = auto_mask(a, handles=[HANDLE])
    assert torch.equal(m, S)
    field = attention_displacement_field(a, [HANDLE], [(5, 3)], m)
    expected = torch.zeros(H, W, 2)
    expected[S] = torch.tensor([3.0, 1.0])
    torch.testing.assert_close(field, expected, rtol=0, atol=1e-6)


def test_field_normalisations_and_rigid():
    a = torch.zeros(1, 4, 4)
    a[0] = torch.tensor(
        [[0.0, 0.1, 0.0, 0.0], [0.1, 0.4, 0.8, 0.0], [0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    )
    handle, target = (1, 1), (3, 1)  # d = (2, 0); the handle (0.4) is not the map's max (0.8)
    mask = a[0] > 0
    f_max = attention_displacement_field(a, [handle], [target], mask, normalise="max")
    assert float(f_max[1, 1, 0]) == 2.0  # the handle moves by exactly d
    assert abs(float(f_max[1, 2, 0]) - 2.0) < 1e-6  # 0.8 / 0.8
    assert abs(float(f_max[2, 1, 0]) - 0.5) < 1e-6  # 0.2 / 0.8 · 2
    assert float(f_max[..., 1].abs().max()) == 0.0
    f_h = attention_displacement_field(a, [handle], [target], mask, normalise="handle")
    assert abs(float(f_h[2, 1, 0]) - 1.0) < 1e-6  # 0.2 / 0.4 · 2
    assert abs(float(f_h[1, 2, 0]) - 2.0) < 1e-6  # clamped to 1 · 2
    f_none = attention_displacement_field(a, [handle], [target], mask, normalise="none")
    assert abs(float(f_none[1, 1, 0]) - 0.8) < 1e-6  # 0.4 · 2
    f_rigid = attention_displacement_field(a, [handle], [target], mask, rigid=True)
    expected = torch.zeros(4, 4, 2)
    expected[mask] = torch.tensor([2.0, 0.0])
    assert torch.equal(f_rigid, expected)
    assert float(f_max[~mask].abs().max()) == 0.0  # zero outside the mask


def test_field_sums_handles_and_zero_length_drag_raises():
    a = torch.ones(2, 3, 3)
    masks = torch.zeros(2, 3, 3, dtype=torch.bool)
    masks[0, :, 0] = True
    masks[1, :, :2] = True
    f = attention_displacement_field(a, [(0, 1), (1, 1)], [(0, 0), (2, 1)], masks)
    assert torch.equal(f[1, 0], torch.tensor([1.0, -1.0]))  # both drags add up
    assert torch.equal(f[1, 1], torch.tensor([1.0, 0.0]))
    assert torch.equal(f[1, 2], torch.tensor([0.0, 0.0]))
    w = handle_weights(a, [(0, 1), (1, 1)], masks)
    assert torch.equal(w, masks.float())
    with pytest.raises(ValueError, match="drag 1 has zero length"):
        attention_displacement_field(a, [(0, 1), (1, 1)], [(0, 0), (1, 1)], masks)


def test_threshold_weights_move_every_masked_cell_by_the_full_drag():
    """normalise="threshold": w = min(1, A / (τ·mean A)) — every cell of the automatic mask moves
    rigidly (an object is not torn apart), a cell below the threshold by its share."""
    a = torch.full((1, 4, 4), 0.01)
    a[0, 1, 1], a[0, 1, 2], a[0, 2, 1] = 0.4, 0.8, 0.3
    thr = float(mask_threshold(a, 2.0, "mean"))
    assert abs(thr - 2.0 * float(a.mean())) < 1e-7
    auto = auto_mask(a, tau=2.0, handles=[(1, 1)])[0]
    f = attention_displacement_field(a, [(1, 1)], [(3, 1)], auto, normalise="threshold")
    assert torch.equal(f[auto], torch.tensor([2.0, 0.0]).expand(int(auto.sum()), 2))
    assert float(f[~auto].abs().max()) == 0.0
    wider = torch.ones(4, 4, dtype=torch.bool)  # a drawn mask: cells below the threshold get their share
    w = handle_weights(a, [(1, 1)], wider, normalise="threshold")
    assert abs(float(w[0, 0, 0]) - 0.01 / thr) < 1e-6 and float(w[0, 1, 2]) == 1.0
    # the "max" reading moves the 0.3 cell by 3/8 of the drag: the object tears
    f_max = attention_displacement_field(a, [(1, 1)], [(3, 1)], auto, normalise="max")
    assert abs(float(f_max[2, 1, 0]) - 0.75) < 1e-6


def test_zscore_threshold_is_mean_plus_tau_std():
    a = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(0))
    thr = mask_threshold(a, 2.0, "zscore")
    for i in range(2):
        assert abs(float(thr[i]) - float(a[i].mean() + 2.0 * a[i].std(unbiased=False))) < 1e-6
    assert torch.equal(auto_mask(a, relative_to="zscore"), a > thr)
    with pytest.raises(ValueError, match="relative_to"):
        mask_threshold(a, 2.0, "median")


def test_mean_fusion_does_not_add_drags_on_one_object():
    """fuse="mean": two handles on one object dragged alike move it by their drag (the sum moves it
    twice as far); a cell reached by one drag only moves by w·d in both."""
    a = torch.ones(2, 3, 3)
    masks = torch.zeros(2, 3, 3, dtype=torch.bool)
    masks[0, :, :2] = True
    masks[1, :, 1:] = True
    hs, ts = [(0, 1), (2, 1)], [(1, 2), (3, 2)]
    f_sum = attention_displacement_field(a, hs, ts, masks, rigid=True)
    f_mean = attention_displacement_field(a, hs, ts, masks, rigid=True, fuse="mean")
    assert torch.equal(f_sum[1, 1], torch.tensor([2.0, 2.0]))
    assert torch.equal(f_mean[1, 1], torch.tensor([1.0, 1.0]))
    assert torch.equal(f_mean[1, 0], f_sum[1, 0]) and torch.equal(f_mean[1, 2], f_sum[1, 2])
    with pytest.raises(ValueError, match="fuse"):
        attention_displacement_field(a, hs, ts, masks, fuse="max")


# --------------------------------------------------------------------------- warp


def test_warp_moves_square_exactly_and_leaves_the_rest_bit_identical():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 4, H, W, generator=g)
    field = torch.zeros(H, W, 2)
    field[S] = torch.tensor([3.0, 1.0])
    out, holes, written = warp_latent_one_step(z, field, S)
    dest = _square(4, 6, 2, 4)
    assert torch.equal(out[:, :, 2:5, 4:7], z[:, :, 1:4, 1:4])
    assert torch.equal(written, dest)
    assert torch.equal(holes, S & ~dest)
    untouched = ~(S | dest)
    assert torch.equal(out[:, :, untouched], z[:, :, untouched])


def test_warp_collisions_rounding_and_out_of_grid():
    z = torch.arange(9.0).reshape(1, 1, 3, 3)
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 0] = mask[0, 2] = mask[2, 2] = True
    field = torch.zeros(3, 3, 2)
    field[0, 0] = torch.tensor([0.5, 1.4])  # → (1, 1) with half-up rounding
    field[0, 2] = torch.tensor([-1.0, 1.0])  # → (1, 1) too
    field[2, 2] = torch.tensor([1.0, 0.0])  # off the grid
    weight = torch.zeros(3, 3)
    weight[0, 0], weight[0, 2] = 0.3, 0.9
    out, holes, written = warp_latent_one_step(z, field, mask, weight)
    assert float(out[0, 0, 1, 1]) == 2.0  # larger weight wins
    assert torch.equal(holes, mask)  # all three sources moved away or off the grid
    assert written.sum() == 1 and bool(written[1, 1])
    out_tie, _, _ = warp_latent_one_step(z, field, mask, torch.ones(3, 3))
    assert float(out_tie[0, 0, 1, 1]) == 0.0  # tie: first source in row-major order


# --------------------------------------------------------------------------- fill


def _fill_grid() -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.full((1, 1, 5, 5), 100.0)
    # neighbours of the holes at (x=2, y=2) and (x=3, y=2), as [y, x]
    z[0, 0, 2, 1], z[0, 0, 2, 4] = 2.0, 10.0
    z[0, 0, 1, 2], z[0, 0, 3, 2] = 4.0, 8.0
    z[0, 0, 1, 3], z[0, 0, 3, 3] = 6.0, 0.0
    holes = torch.zeros(5, 5, dtype=torch.bool)
    holes[2, 2] = holes[2, 3] = True
    z[0, 0, 2, 2] = z[0, 0, 2, 3] = -999.0
    return z, holes


def test_fill_inverse_distance_weights_by_hand():
    z, holes = _fill_grid()
    out = fill_holes_attention_weighted(z, holes)
    # (2,2): left 2 @1, right 10 @2, up 4 @1, down 8 @1
    assert abs(float(out[0, 0, 2, 2]) - (2 + 10 / 2 + 4 + 8) / 3.5) < 1e-5
    # (3,2): left 2 @2, right 10 @1, up 6 @1, down 0 @1
    assert abs(float(out[0, 0, 2, 3]) - (2 / 2 + 10 + 6 + 0) / 3.5) < 1e-5
    assert torch.equal(out[:, :, ~holes], z[:, :, ~holes])
    near = fill_holes_attention_weighted(z, holes, radius=1)  # right neighbour (r=2) dropped
    assert abs(float(near[0, 0, 2, 2]) - (2 + 4 + 8) / 3.0) < 1e-5


def test_fill_attention_factor_by_hand():
    z, holes = _fill_grid()
    a = torch.zeros(5, 5)
    a[2, 1], a[2, 4], a[1, 2], a[3, 2] = 0.5, 0.0, 1.0, 0.25
    out = fill_holes_attention_weighted(z, holes, attn_weights=a)
    # ω = (1/r)(1 − a): left 0.5, right 0.5·1, up 0, down 0.75
    expected = (2 * 0.5 + 10 * 0.5 + 8 * 0.75) / (0.5 + 0.5 + 0.75)
    assert abs(float(out[0, 0, 2, 2]) - expected) < 1e-5
    # all neighbours fully "object": fall back to plain 1/r weights
    out_all = fill_holes_attention_weighted(z, holes, attn_weights=torch.ones(5, 5))
    assert abs(float(out_all[0, 0, 2, 2]) - (2 + 10 / 2 + 4 + 8) / 3.5) < 1e-5


def test_fill_corner_hole_and_second_pass():
    z = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0], [7.0, 0.0, 9.0]]).reshape(1, 1, 3, 3)
    holes = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
    out = fill_holes_attention_weighted(z, holes)
    expected = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    torch.testing.assert_close(out[0, 0], expected)  # centre: 2nd pass, mean of the arms
    one_pass = fill_holes_attention_weighted(z, holes, max_passes=1)
    assert float(one_pass[0, 0, 1, 1]) == 0.0  # no ±x/±y neighbour on the first pass
    corner = torch.zeros(3, 3, dtype=torch.bool)
    corner[0, 0] = True
    zc = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert float(fill_holes_attention_weighted(zc, corner)[0, 0, 0, 0]) == (1.0 + 3.0) / 2


# --------------------------------------------------------------------------- pipeline


def test_attention_drag_one_hot_square_end_to_end():
    q, k = _square_qk()
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1, 4, H, W, generator=g)
    res = attention_drag(z, q, k, (H, W), [HANDLE], [(5, 3)], scale=1.0)
    out = res.latent
    dest = _square(4, 6, 2, 4)
    assert torch.equal(res.mask, S)
    assert res.attention.shape == (1, H, W)
    assert torch.equal(res.holes, S)  # S and its image are disjoint
    assert torch.equal(out[:, :, 2:5, 4:7], z[:, :, 1:4, 1:4])  # the square moved by (3, 1)
    outside = ~(S | dest)
    assert torch.equal(out[:, :, outside], z[:, :, outside])  # bit for bit
    # hole (x=1, y=1): background on all sides: left (0,1)@1, right (4,1)@3, up (1,0)@1,
    # down (1,4)@3
    exp = (z[0, :, 1, 0] + z[0, :, 1, 4] / 3 + z[0, :, 0, 1] + z[0, :, 4, 1] / 3) / (8 / 3)
    torch.testing.assert_close(out[0, :, 1, 1], exp)
    # hole (x=3, y=2): its right neighbour (4,2) is the moved object (weight 1) → excluded
    exp = (z[0, :, 2, 0] / 3 + z[0, :, 0, 3] / 2 + z[0, :, 4, 3] / 2) / (1 / 3 + 1)
    torch.testing.assert_close(out[0, :, 2, 3], exp)
    plain = attention_drag(
        z, q, k, (H, W), [HANDLE], [(5, 3)], scale=1.0, fill_with_attention=False
    ).latent
    exp = (z[0, :, 2, 0] / 3 + z[0, :, 0, 3] / 2 + z[0, :, 4, 3] / 2 + z[0, :, 1, 1]) / (
        1 / 3 + 1 + 1
    )  # (4,2) now holds the old (1,1)
    torch.testing.assert_close(plain[0, :, 2, 3], exp)


def test_attention_drag_zero_length_and_pixel_to_cell():
    q, k = _square_qk()
    z = torch.zeros(1, 4, H, W)
    with pytest.raises(ValueError, match="drag 0 has zero length"):
        attention_drag(z, q, k, (H, W), [HANDLE], [HANDLE])
    assert pixel_to_cell((40.0, 24.0), 16) == (2.0, 1.0)  # FLUX token centre
    assert pixel_to_cell((20.0, 4.0), 8) == (2.0, 0.0)  # SD1.5 latent cell centre
