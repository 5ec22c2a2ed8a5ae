"""Tier 1: AttentionDrag across grids (fluxdrag/core/attention_drag_move.py): layer grid → latent grid."""
from __future__ import annotations

import pytest
import torch

from fluxdrag.core.attention_drag import attention_drag, attention_to_handle, cell_index
from fluxdrag.core.attention_drag_move import (
    apply_move,
    attention_maps_from_qk,
    attention_preview,
    block_grid,
    clamp_cells,
    handle_index_on_grid,
    pixels_to_cells,
    plan_move,
    upsample_maps,
)

H, W = 8, 8
S = torch.zeros(H, W, dtype=torch.bool)
S[1:4, 1:4] = True  # object square (columns 1..3, rows 1..3)
HANDLE = (2, 2)


def _square_qk(grid=(H, W), square=S, handle=HANDLE, c=30.0):
    n = grid[0] * grid[1]
    q, k = torch.zeros(1, 1, n, 2), torch.zeros(1, 1, n, 2)
    k[0, 0, square.reshape(-1), 0] = c
    q[0, 0, cell_index(handle, grid), 0] = 1.0
    return q, k


def test_block_grid_finds_the_downscale():
    assert block_grid(384, (16, 24)) == (16, 24, 1)
    assert block_grid(96, (16, 24)) == (8, 12, 2)
    assert block_grid(35, (9, 13)) == (5, 7, 2)  # ceil sizes of odd latents
    assert block_grid(4, (64, 64)) == (2, 2, 32)
    with pytest.raises(ValueError, match="power-of-two"):
        block_grid(100, (16, 24))


def test_handle_index_on_grid_and_cells():
    # sun at (204, 46) px on 16-px cells of a 16x16 grid: cell (12, 2)
    assert handle_index_on_grid((204, 46), (16, 16), 16) == 2 * 16 + 12
    assert handle_index_on_grid((256, 256), (16, 16), 16) == 255  # image edge → last cell
    assert handle_index_on_grid((0, 0), (16, 16), 16) == 0
    cells = pixels_to_cells([(204, 46), (4, 4)], 8)
    torch.testing.assert_close(cells, torch.tensor([[25.0, 5.25], [0.0, 0.0]], dtype=torch.float64))
    c = clamp_cells(pixels_to_cells([(256, 256)], 8), (32, 32))
    assert c.tolist() == [[31.0, 31.0]]


def test_upsample_identity_nearest_and_crop():
    m = torch.rand(2, 4, 6)
    assert upsample_maps(m, (4, 6)) is m
    up = upsample_maps(m, (8, 12), mode="nearest")
    torch.testing.assert_close(up, m.repeat_interleave(2, 1).repeat_interleave(2, 2))
    const = torch.full((1, 3, 4), 0.25)
    torch.testing.assert_close(upsample_maps(const, (5, 7)), torch.full((1, 5, 7), 0.25))
    assert upsample_maps(m[:, :3, :4], (5, 7), mode="nearest").shape == (2, 5, 7)
    with pytest.raises(ValueError):
        upsample_maps(m, (8, 30))


def test_plan_and_move_equal_core_pipeline_on_a_1to1_grid():
    q, k = _square_qk()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, H, W, generator=g)
    handles, targets = [HANDLE], [(5.0, 4.0)]
    ref = attention_drag(z, q, k, (H, W), handles, targets, scale=1.0)
    attn = attention_to_handle(q, k, [cell_index(HANDLE, (H, W))], (H, W), scale=1.0)
    plan = plan_move(attn, handles, targets)
    res = apply_move(z, plan)
    assert torch.equal(res.latent, ref.latent)
    assert torch.equal(plan.union, ref.mask) and torch.equal(res.holes, ref.holes)
    assert torch.equal(plan.union, S)  # the one-hot square is the automatic mask
    # the square moved rigidly by (3, 2): the object's content sits at the destination
    assert torch.equal(res.latent[..., 3:6, 4:7], z[..., 1:4, 1:4])


def test_nothing_outside_mask_and_destinations_changes():
    g = torch.Generator().manual_seed(1)
    attn = torch.rand(2, 12, 10, generator=g) ** 4
    z = torch.randn(2, 3, 12, 10, generator=g)
    plan = plan_move(attn, [(2, 3), (7, 8)], [(5, 1), (4.4, 9.6)], tau=1.5, dilate=1)
    res = apply_move(z, plan)
    changed = (res.latent != z).any(dim=(0, 1))
    assert changed.any()
    assert not (changed & ~res.changed_region).any()
    assert torch.equal(res.changed_region, plan.union | res.written)
    assert (plan.weights[:, ~plan.union] == 0).all()
    assert (plan.field[~plan.union] == 0).all()


def test_mask_modes():
    q, k = _square_qk()
    attn = attention_to_handle(q, k, [cell_index(HANDLE, (H, W))], (H, W), scale=1.0)
    user = torch.zeros(H, W, dtype=torch.bool)
    user[0:3, 0:8] = True
    rep = plan_move(attn, [HANDLE], [(5, 2)], mask=user, mask_mode="replace")
    assert torch.equal(rep.union, user)
    inter = plan_move(attn, [HANDLE], [(5, 2)], mask=user, mask_mode="intersect")
    assert torch.equal(inter.union, S & user)
    user2 = torch.zeros(H, W, dtype=torch.bool)  # the handle cell survives an empty user mask
    only = plan_move(attn, [HANDLE], [(5, 2)], mask=user2, mask_mode="intersect").union
    assert only.sum() == 1 and only[HANDLE[1], HANDLE[0]]
    with pytest.raises(ValueError, match="mask_mode"):
        plan_move(attn, [HANDLE], [(5, 2)], mask=user, mask_mode="union")


def test_zero_length_drag_is_refused():
    attn = torch.rand(1, H, W)
    with pytest.raises(ValueError, match="zero length"):
        plan_move(attn, [(3, 3)], [(3, 3)])


def test_maps_from_qk_on_a_coarser_layer_grid():
    """A 4x4 layer grid over an 8x8 latent (f = 2, 16-px cells): the handle pixel picks its layer
    cell, the map peaks on the square, and upsampled it covers the square's latent cells."""
    sq = torch.zeros(4, 4, dtype=torch.bool)
    sq[0:2, 0:2] = True
    q, k = _square_qk((4, 4), sq, handle=(1, 1))
    maps = attention_maps_from_qk(q, k, [(20.0, 20.0)], (4, 4), cell_px=16, scale=1.0)
    assert maps.shape == (1, 4, 4)
    assert torch.equal(maps[0] > 0.2, sq)
    up = upsample_maps(maps, (8, 8), mode="nearest")
    plan = plan_move(up, clamp_cells(pixels_to_cells([(20.0, 20.0)]), (8, 8)), [(6.0, 2.0)])
    big = torch.zeros(8, 8, dtype=torch.bool)
    big[0:4, 0:4] = True
    assert torch.equal(plan.union, big)


def test_preview_draws_map_mask_and_arrow():
    q, k = _square_qk()
    attn = attention_to_handle(q, k, [cell_index(HANDLE, (H, W))], (H, W), scale=1.0)
    plan = plan_move(attn, [HANDLE], [(6, 5)])
    img = attention_preview(plan, (64, 64))
    assert img.shape == (64, 64, 3) and 0 <= float(img.min()) and float(img.max()) <= 1
    cyan = (img[..., 0] < 0.05) & (img[..., 1] > 0.95) & (img[..., 2] > 0.95)
    assert cyan.any()
    # the map is hot on the square (red channel high), cool far from it
    assert float(img[20, 20, 0]) > float(img[60, 4, 0]) + 0.3
    with pytest.raises(ValueError):
        attention_preview(plan, (64, 64), image=torch.zeros(32, 32, 3))


def test_split_mask_gives_each_handle_its_own_part():
    from fluxdrag.core.attention_drag_move import mask_parts, split_mask

    m = torch.zeros(6, 8, dtype=torch.bool)
    m[1:3, 1:3] = True          # part A
    m[3:5, 5:8] = True          # part B, not touching A
    m[5, 4] = True              # touches B at a corner only: part of B
    assert len(mask_parts(m)) == 2
    a, b = split_mask(m, [(1, 1), (6, 4)])
    assert int(a.sum()) == 4 and int(b.sum()) == 7 and not (a & b).any()
    whole = split_mask(m, [(0, 0)])[0]                 # one handle: every part is its
    assert torch.equal(whole, m)
    near = split_mask(m, [(1, 1), (7, 0)])             # B has no handle: the nearest one takes it
    assert int(near[0].sum()) == 4 and int(near[1].sum()) == 7
    attn = torch.ones(2, 6, 8)
    plan = plan_move(attn, [(1, 1), (6, 4)], [(1, 2), (5, 4)], mask=m, split=True, rigid=True, fuse="mean")
    assert torch.equal(plan.field[1, 1], torch.tensor([0.0, 1.0]))   # A moves by drag 0 only
    assert torch.equal(plan.field[4, 6], torch.tensor([-1.0, 0.0]))  # B by drag 1 only
    shared = plan_move(attn, [(1, 1), (6, 4)], [(1, 2), (5, 4)], mask=m, rigid=True, fuse="mean")
    assert torch.equal(shared.field[1, 1], torch.tensor([-0.5, 0.5]))  # one shared mask mixes them


def test_threshold_weights_move_a_drawn_mask_whole():
    """normalise="threshold" with a drawn mask ("replace"): every cell of it moves by the full drag
    (low-attention cells of the object would otherwise be left as debris along the drag)."""
    attn = torch.full((1, 6, 6), 0.01)
    attn[0, 2, 2] = 1.0
    drawn = torch.zeros(6, 6, dtype=torch.bool)
    drawn[1:4, 1:4] = True
    plan = plan_move(attn, [(2, 2)], [(4, 2)], mask=drawn, normalise="threshold")
    assert torch.equal(plan.weights[0], drawn.float())
    auto = plan_move(attn, [(2, 2)], [(4, 2)], normalise="threshold", dilate=1)
    ring = auto.union & ~(attn[0] > 2 * attn[0].mean())
    assert ring.any() and float(auto.weights[0][ring].max()) < 1.0   # a share on the dilation ring
