"""ContextDrag's sub-token precision (issue 28): the map's consistent rounding (``snap``) and
Position-Consistent Attention's content shift below the token grid (``subtoken_shifts``)."""
from __future__ import annotations

import pytest
import torch

from fluxdrag.core.reverse_mapping import build_reverse_map, injection_pairs
from fluxdrag.core.reverse_tokens import subtoken_shifts


def _region(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_half_token_drag_moves_the_whole_region_with_snap():
    """A rigid drag of 2.5 tokens: the literal rounding (hull cells, half-up both ways) loses a
    column of the 3×3 region; ``snap`` moves all nine tokens by the rounded 3 tokens."""
    src = _region(12, 12, 4, 7, 2, 5)
    h, t = [[3.0, 5.0]], [[5.5, 5.0]]
    literal = build_reverse_map(h, t, src, (12, 12))
    snapped = build_reverse_map(h, t, src, (12, 12), snap=True)
    assert int(literal.dst_mask.sum()) < 9
    assert int(snapped.dst_mask.sum()) == 9
    dst, s = injection_pairs(snapped)
    assert torch.equal(dst - s, torch.full_like(dst, 3))          # every token moved by round_half_up(2.5)
    assert sorted(s.tolist()) == sorted(torch.nonzero(src.reshape(-1)).flatten().tolist())


def test_thin_region_is_not_lost():
    """A one-token-thin bar dragged by (−7.5, 8.5) tokens: its hull is a segment between cell
    centres, so the literal reading has no destination at all (the object vanished on the toy
    benchmark); ``snap`` keeps all five tokens."""
    src = _region(16, 16, 3, 4, 8, 13)
    h, t = [[10.25, 3.5]], [[2.75, 12.0]]
    assert int(build_reverse_map(h, t, src, (16, 16)).dst_mask.sum()) == 0
    assert int(build_reverse_map(h, t, src, (16, 16), snap=True).dst_mask.sum()) == 5


def test_subtoken_shift_is_the_rest_of_the_drag_in_latent_pixels():
    """2.5 tokens = 5 latent pixels; the tokens move by 3 tokens (6 px), so their content is taken
    one latent pixel further along the drag (+1 px); a whole-token drag needs no shift."""
    src = _region(12, 12, 4, 7, 2, 5)
    rm = build_reverse_map([[3.0, 5.0]], [[5.5, 5.0]], src, (12, 12), snap=True)
    s, shift = subtoken_shifts(rm)
    assert s.numel() == 9 and torch.equal(shift, torch.tensor([[1, 0]] * 9))
    whole = build_reverse_map([[3.0, 5.0]], [[6.0, 5.0]], src, (12, 12), snap=True)
    assert not subtoken_shifts(whole)[1].any()


def test_shifted_patches_follow_fluxs_patchify():
    """PCA re-embeds the moved tokens from the reference shifted by whole latent pixels, laid out
    as FLUX patchifies ("b c (h ph) (w pw) -> b (h w) (c ph pw)")."""
    from fluxdrag.attention_patches.contextdrag import PositionConsistentAttention

    src = _region(6, 6, 2, 3, 1, 2)
    rm = build_reverse_map([[1.0, 2.0]], [[2.5, 2.0]], src, (6, 6), snap=True)
    pca = PositionConsistentAttention(rm, rewrite_ids=True, hide="vacated_overlap", hide_from="image",
                                      collision="mean", subtoken=True, start=0.0, end=1.0, reference_index=0)
    ref = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)
    tok, patches = pca.shifted_patches(ref)
    assert tok.tolist() == [2 * 6 + 1]
    want = ref[:, :, 4:6, 3:5].reshape(2, 1, -1)               # token (x 1, y 2) shifted one pixel right
    assert torch.equal(patches, want)


def _fine(h: int, w: int, pixels) -> torch.Tensor:
    m = torch.zeros(2 * h, 2 * w, dtype=torch.bool)
    for y, x in pixels:
        m[y, x] = True
    return m


def test_composite_keeps_the_destination_background_in_edge_tokens():
    """A one-pixel object in the corner of its token, dragged one whole token right: the moved
    token takes the object pixel from the source and its other three pixels from the destination
    (the background there); ``composite=False`` moves the whole token."""
    from fluxdrag.core.reverse_tokens import moved_patch_pixels

    rm = build_reverse_map([[1.0, 1.0]], [[2.0, 1.0]], _region(4, 4, 1, 2, 1, 2), (4, 4), snap=True)
    rm.fine_mask = _fine(4, 4, [(2, 2)])                     # latent pixel (row 2, col 2): token (x 1, y 1)
    tok, rows, cols = moved_patch_pixels(rm, subtoken=True, composite=True)
    assert tok.tolist() == [1 * 4 + 1]
    assert rows[0].tolist() == [[2, 2], [3, 3]]
    assert cols[0].tolist() == [[2, 5], [4, 5]]              # object pixel from the source, the rest at x 4..5
    assert not moved_patch_pixels(rm, subtoken=True, composite=False)[0].numel()   # whole token, no shift


def test_composite_spills_the_edge_row_a_half_token_drag_leaves_between_tokens():
    """A drag of 2.5 tokens down: each destination gathers the last pixel row of one source token
    and the first of the next (a one-pixel shift). The region's first pixel row (row 2, the upper
    row of token y 1, whose upper neighbour is no source) is carried by no destination; the
    reference token above the destination (y 3, no source, it stays where it is) gets it over its
    own lower row."""
    from fluxdrag.core.reverse_tokens import moved_patch_pixels

    rm = build_reverse_map([[1.0, 2.0]], [[1.0, 4.5]], _region(8, 4, 1, 3, 1, 2), (8, 4), snap=True)
    rm.fine_mask = _fine(8, 4, [(y, x) for y in (2, 3, 4) for x in (2, 3)])
    dst, src = injection_pairs(rm)
    assert sorted(dst.tolist()) == [4 * 4 + 1, 5 * 4 + 1]
    tok, rows, cols = moved_patch_pixels(rm, subtoken=True, composite=True)
    assert sorted(tok.tolist()) == [1 * 4 + 1, 2 * 4 + 1, 3 * 4 + 1]
    spill = tok.tolist().index(3 * 4 + 1)
    assert rows[spill].tolist() == [[6, 6], [2, 2]] and cols[spill].tolist() == [[2, 3], [2, 3]]
    without = moved_patch_pixels(rm, subtoken=True, composite=False)[0]
    assert sorted(without.tolist()) == [1 * 4 + 1, 2 * 4 + 1]        # row 2 is carried by no token


def test_map_keeps_the_region_at_latent_pixels_and_its_json_round_trips():
    """The map node keeps the drawn region on the latent-pixel grid (a latent pixel is in when any
    of its 8×8 image pixels is), rescaled when drawn on another size; to_dict / from_dict keep it."""
    from fluxdrag.core.reverse_mapping import ReverseMap
    from fluxdrag.pipelines.contextdrag import build_map

    drags = {"version": 1, "image_size": [128, 128],
             "drags": [{"handle": [40, 40], "target": [72, 40], "mode": "move"}],
             "mask": {"polygons": [[[33, 33], [47, 33], [47, 47], [33, 47]]]}}
    rm = build_map(drags, torch.zeros(1, 16, 16, 16))
    assert rm.fine_mask.shape == (16, 16)
    assert torch.nonzero(rm.fine_mask.any(0)).flatten().tolist() == [4, 5]
    assert torch.nonzero(rm.fine_mask.any(1)).flatten().tolist() == [4, 5]
    back = ReverseMap.from_dict(rm.to_dict())
    assert torch.equal(back.fine_mask, rm.fine_mask)
    big = build_map({**drags, "image_size": [64, 64],
                     "drags": [{"handle": [20, 20], "target": [36, 20], "mode": "move"}],
                     "mask": {"polygons": [[[16.5, 16.5], [23.5, 16.5], [23.5, 23.5], [16.5, 23.5]]]}},
                    torch.zeros(1, 16, 16, 16))
    assert torch.equal(big.fine_mask, rm.fine_mask)
    assert build_map({k: v for k, v in drags.items() if k != "mask"}, torch.zeros(1, 16, 16, 16)).fine_mask is None


def _pca(rm, **kw):
    from fluxdrag.attention_patches.contextdrag import PositionConsistentAttention

    args = dict(rewrite_ids=True, hide="vacated", hide_from="image", collision="mean", subtoken=True,
                composite=True, start=0.0, end=1.0, reference_index=0)
    return PositionConsistentAttention(rm, **{**args, **kw})


def test_edited_pixels_and_the_background_lock():
    """The lock holds every latent pixel but the region and where it lands (grown by lock_margin):
    there the velocity becomes (x − reference) / σ, which denoises to the reference in one step;
    elsewhere, outside the first ``background_lock`` fraction of the steps and with 0, the model's
    output is left alone."""
    from fluxdrag.attention_patches.router import ForwardContext
    from fluxdrag.core.reverse_landed import edited_pixels

    rm = build_reverse_map([[1.0, 1.0]], [[2.0, 1.0]], _region(4, 4, 1, 2, 1, 2), (4, 4), snap=True)
    rm.fine_mask = _fine(4, 4, [(2, 2)])
    assert torch.nonzero(edited_pixels(rm, subtoken=True)).tolist() == [[2, 2], [2, 4]]
    assert int(edited_pixels(rm.__class__(**{**rm.__dict__, "fine_mask": None}), subtoken=True).sum()) == 8
    x, ref, out = torch.randn(2, 16, 8, 8), torch.randn(1, 16, 8, 8), torch.randn(2, 16, 8, 8)
    sig = [1.0, 0.75, 0.5, 0.25, 0.0]

    def call(pca, step):
        ctx = ForwardContext(model=None, sigma=sig[step], step=step, sample_sigmas=sig, direction=-1, batch=2,
                             n_txt=0, n_img=16, grid=(4, 4), ref_grids=[(4, 4)], cond_or_uncond=[0, 1],
                             transformer_options={}, ref_latents=[ref], x=x)
        return pca.on_forward_end(ctx, out)

    new = call(_pca(rm, background_lock=0.5, lock_margin=0), 1)
    free = torch.zeros(8, 8, dtype=torch.bool)
    free[2, 2] = free[2, 4] = True
    assert torch.equal(new[..., free], out[..., free])
    assert torch.allclose(x[..., ~free] - sig[1] * new[..., ~free], ref.expand(2, -1, -1, -1)[..., ~free], atol=1e-5)
    assert call(_pca(rm, background_lock=0.5, lock_margin=0), 2) is None      # past the locked half
    assert call(_pca(rm, background_lock=0.0), 1) is None
    grown = call(_pca(rm, background_lock=1.0, lock_margin=1), 1)
    assert torch.equal(grown[..., 1:4, 1:6], out[..., 1:4, 1:6])


def test_hole_fill_slots_sit_on_the_holes_with_the_filled_reference():
    """A one-token region moved two tokens right: the reference token under the destination (no
    source) takes the hole's ids and is re-embedded from the reference with the region filled
    (harmonic: the mean of a constant surrounding is the constant)."""
    from fluxdrag.core.reverse_ids import hole_slots

    rm = build_reverse_map([[1.0, 1.0]], [[3.0, 1.0]], _region(4, 6, 1, 2, 1, 2), (4, 6), snap=True)
    slots, holes = hole_slots(rm)
    assert slots.tolist() == [1 * 6 + 3] and holes.tolist() == [1 * 6 + 1]
    base = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij"), -1).reshape(-1, 2)
    base = torch.cat([torch.ones(24, 1), base], 1)
    ids = _pca(rm, hole_fill="harmonic").intended_ids(base)
    assert ids[1 * 6 + 1, 1:].tolist() == [1.0, 3.0] and ids[1 * 6 + 3, 1:].tolist() == [1.0, 1.0]
    assert torch.equal(_pca(rm, hole_fill="none").intended_ids(base)[1 * 6 + 3], base[1 * 6 + 3])
    ref = torch.full((1, 16, 8, 12), 0.5)
    ref[..., 2:4, 2:4] = 9.0                                     # the object, in the hole token
    for fill in ("harmonic", "surroundings"):
        tok, patches = _pca(rm, hole_fill=fill).hole_patches(ref)
        assert tok.tolist() == [1 * 6 + 3] and torch.allclose(patches, torch.full_like(patches, 0.5))


def test_hole_fill_continued_continues_a_texture_into_the_hole():
    """``hole_fill`` continued (LazyDrag's ``continued_fill``): the hole token of a striped reference
    shows the stripes; harmonic (the membrane) flattens them. On a smooth ground both are the
    membrane (a plane stays a plane)."""
    import math

    from fluxdrag.core.reverse_depth import filled_reference

    xs = torch.arange(32, dtype=torch.float32)
    stripes = (0.8 * torch.sign(torch.sin(2 * math.pi * (xs + 0.5) / 4)))[None, None, :].expand(1, 16, 32, 32).clone()
    painted = torch.zeros(32, 32, dtype=torch.bool)
    painted[12:18, 10:20] = True
    filled = filled_reference(stripes, painted, method="continued", contrast=0.0)
    assert torch.allclose(filled, stripes, atol=1e-4)              # the stripes continue
    flat = filled_reference(stripes, painted, method="harmonic", contrast=0.0)
    assert float((flat - stripes)[..., painted].abs().max()) > 0.5  # the membrane flattens them
    ys = torch.arange(32, dtype=torch.float32)[:, None]
    ramp = (0.05 * ys + 0.02 * xs[None, :])[None, None].expand(1, 16, 32, 32).clone()
    assert torch.allclose(filled_reference(ramp, painted, method="continued", contrast=0.0), ramp, atol=1e-3)
    # through the PCA patch: the hole token (a region of 3 x 5 tokens moved right) gets the stripes
    rm = build_reverse_map([[7.0, 7.0]], [[12.0, 7.0]], _region(16, 16, 6, 9, 5, 10), (16, 16), snap=True)
    pca = _pca(rm, hole_fill="continued")
    slots, cont = pca.hole_patches(stripes)
    _, memb = _pca(rm, hole_fill="harmonic").hole_patches(stripes)
    assert slots.numel() and float((memb - cont).abs().max()) > 0.5
    _, holes = pca._slots                                          # the vacated tokens the slots show
    rows = (holes // 16)[:, None] * 2 + torch.arange(2)[None]
    cols = (holes % 16)[:, None] * 2 + torch.arange(2)[None]
    want = stripes[:, :, rows[:, :, None], cols[:, None, :]].permute(0, 2, 1, 3, 4).reshape(cont.shape)
    assert torch.allclose(cont, want, atol=1e-4)                   # exactly the stripes they hide


def test_hole_fill_continues_the_background_behind_an_object_in_front():
    """occluder_contrast (default 0.5): an unpainted object touching the painted region is filled
    over (the background continued behind it), so the hole takes the background, not the object's
    colour; 0 (the paper's reading of 'surroundings') spreads it into the hole."""
    rm = build_reverse_map([[1.0, 1.0]], [[3.0, 1.0]], _region(4, 6, 1, 2, 1, 2), (4, 6), snap=True)
    rm.fine_mask = _fine(4, 6, [(2, 2), (2, 3), (3, 2), (3, 3)])
    ref = torch.full((1, 16, 8, 12), 0.5)
    ref[..., 2:4, 2:4] = 9.0                                     # the painted object
    ref[..., 2:4, 1] = -7.0                                      # an object in front, touching it (1.33 x the edge
    #                         jump from the ground's mean; at -5.0, 1.04 x, it is within REPEAT_SLACK: ground)
    _, with_occ = _pca(rm, hole_fill="harmonic", occluder_contrast=0.5).hole_patches(ref)
    _, without = _pca(rm, hole_fill="harmonic", occluder_contrast=0.0).hole_patches(ref)
    assert torch.allclose(with_occ, torch.full_like(with_occ, 0.5), atol=1e-3)
    assert float((without - 0.5).abs().max()) > 0.5


def test_lock_leaves_the_shifted_content_free_without_composite():
    """With ``subtoken`` on the moved content is shifted, composite or not: the lock must leave
    those pixels to the model in both cases."""
    from fluxdrag.core.reverse_landed import edited_pixels

    rm = build_reverse_map([[1.0, 1.0]], [[2.5, 1.0]], _region(6, 6, 1, 3, 1, 3), (6, 6), snap=True)
    rm.fine_mask = _fine(6, 6, [(2, 2), (2, 3), (3, 2), (3, 3), (4, 4)])
    free = edited_pixels(rm, subtoken=True)
    assert (free & ~edited_pixels(rm, subtoken=False)).any(), "a fractional drag shifts some pixel"
    for composite in (True, False):
        assert not (_pca(rm, composite=composite, background_lock=1.0, lock_margin=0).locked & free).any()


def test_drag_groups_move_each_object_by_its_own_drag():
    """Two 3×3-token objects one token apart, dragged apart: the paper's one field mixes the two
    drags between them and two tokens get no destination; ``drag_groups="component"`` moves each
    object whole by its own drag, stores each token's continuous source, and its JSON round trip
    keeps it."""
    from fluxdrag.core.reverse_mapping import ReverseMap
    from fluxdrag.core.reverse_tokens import subtoken_shifts

    src = _region(16, 16, 5, 8, 2, 5) | _region(16, 16, 5, 8, 7, 10)
    h, t = [[3.0, 6.0], [8.0, 6.0]], [[1.0, 2.5], [11.0, 10.0]]

    def moves(rm):
        dst, s = injection_pairs(rm)
        return {(int(q % 16 - p % 16), int(q // 16 - p // 16)) for q, p in zip(dst, s)}

    grouped = build_reverse_map(h, t, src, (16, 16), snap=True, drag_groups="component")
    assert moves(grouped) == {(-2, -3), (3, 4)} and int(grouped.dst_mask.sum()) == 18
    assert grouped.back is not None and grouped.params["drag_groups"] == "component"
    s_idx, shift = subtoken_shifts(grouped)
    left = (s_idx % 16) < 6
    assert torch.equal(shift[left], torch.tensor([[0, 1]] * 9))   # 3.5 up: 3 tokens, content 1 px lower
    assert not shift[~left].any()
    back = ReverseMap.from_dict(grouped.to_dict())
    assert torch.equal(back.back, grouped.back) and torch.equal(back.dst_mask, grouped.dst_mask)
    one = build_reverse_map(h[:1], t[:1], _region(16, 16, 5, 8, 2, 5), (16, 16), snap=True,
                            drag_groups="component")
    assert one.back is None                                   # one group: the plain map
    assert int(build_reverse_map(h, t, src, (16, 16), snap=True, drag_groups="all").dst_mask.sum()) < 18


def test_hole_fill_under_a_hidden_overlap_is_a_clear_error_before_any_model_work():
    """hide overlap / vacated_overlap hides the tokens the hole fill moves onto the holes: refused,
    naming both settings and the fix; either fix (or no id rewrite: no slots) is accepted."""
    import pytest

    from fluxdrag.pipelines.common import FluxDragInputError
    from fluxdrag.pipelines.contextdrag import ContextDragSettings, apply_pca, check_hole_fill

    for hide in ("overlap", "vacated_overlap"):
        with pytest.raises(FluxDragInputError, match=r"'hide' is .*'hole_fill'.*Set hide to 'vacated'.*'none'"):
            apply_pca(None, None, hide=hide)               # model and map never looked at
        check_hole_fill(ContextDragSettings(hide=hide, hole_fill="none"))
        check_hole_fill(ContextDragSettings(hide=hide, rewrite_ids=False))
    for hide in ("vacated", "source", "none"):
        check_hole_fill(ContextDragSettings(hide=hide))


def test_pixel_warp_equals_the_token_shift_for_a_translation_and_follows_a_scaling():
    """warp='pixel' looks every latent pixel up through the reverse field: for a translation (any
    fraction of a token) it is the sub-token shift of 'token'. A scaled move (the drag's scale,
    expanded into point drags by affine_point_drags) makes a destination twice as wide, where the
    drag read as handle -> target alone moves nothing."""
    from fluxdrag.core.instructions import TokenDrags
    from fluxdrag.core.reverse_tokens import moved_patch_pixels
    from fluxdrag.pipelines.contextdrag import affine_point_drags

    src = _region(16, 16, 4, 8, 3, 7)
    fine = src.repeat_interleave(2, 0).repeat_interleave(2, 1)
    for target in ([5.5, 6.0], [7.25, 5.75], [9.0, 8.5]):
        rm = build_reverse_map([[5.0, 6.0]], [target], src, (16, 16), snap=True)
        rm.fine_mask = fine
        tok = moved_patch_pixels(rm, subtoken=True, composite=True, warp="token")
        pix = moved_patch_pixels(rm, subtoken=True, composite=True, warp="pixel")
        assert all(torch.equal(a, b) for a, b in zip(tok, pix)), target
    td = TokenDrags(handles=torch.tensor([[5.0, 5.5]], dtype=torch.float64),
                    targets=torch.tensor([[5.0, 5.5]], dtype=torch.float64), modes=["move"],
                    scales=torch.tensor([[2.0, 1.0]], dtype=torch.float64), mask=src, grid_hw=(16, 16),
                    image_hw=(256, 256))
    h, t = affine_point_drags(td, src)
    assert h.shape == (1 + int(src.sum()), 2)
    assert torch.allclose(t[1:, 0] - 5.0, 2 * (h[1:, 0] - 5.0)) and torch.equal(t[1:, 1], h[1:, 1])
    rm = build_reverse_map(h, t, src, (16, 16), snap=True)
    rm.fine_mask = fine
    assert int(rm.dst_mask.any(0).sum()) >= 2 * int(src.any(0).sum()) - 1   # twice as wide
    plain = build_reverse_map(td.handles, td.targets, src, (16, 16), snap=True)   # 'translate': nothing moves
    assert int(plain.dst_mask.any(0).sum()) == int(src.any(0).sum())
    assert affine_point_drags(TokenDrags(handles=td.handles, targets=td.targets + 2, modes=["move"],
                                         scales=torch.ones(1, 2, dtype=torch.float64), mask=src,
                                         grid_hw=(16, 16), image_hw=(256, 256)), src)[0].shape == (1, 2)


def test_move_affine_translate_drops_the_added_point_drags():
    """The map node adds the point drags of a scaled move; move_affine='translate' (the paper's
    reading) rebuilds the map from the instructions' own drags."""
    from fluxdrag.pipelines.contextdrag import build_map, map_for

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[64:128, 64:128] = True
    from fluxdrag.toyworld.latent import rle_encode
    drags = {"version": 1, "image_size": [256, 256], "mask": {"rle": rle_encode(px)},
             "drags": [{"handle": [96, 96], "target": [128, 96], "mode": "move", "scale": [1.5, 1.0]}]}
    rm = build_map(drags, torch.zeros(1, 16, 32, 32))
    assert len(rm.params["drags"]["handles"]) == 1 and rm.handles.shape[0] == 1 + int(rm.src_mask.sum())
    plain = map_for(rm, True, drag_groups="component", move_affine="translate", content_contrast=0.0,
                    rigid_tolerance=0.2, warp="pixel", swing=True)
    again = map_for(plain, True, drag_groups="component", move_affine="points", content_contrast=0.0,
                    rigid_tolerance=0.2, warp="pixel", swing=True)
    assert plain.params["move_affine"] == "translate" and again.handles.shape == rm.handles.shape
    assert plain.handles.shape[0] == 1 and plain.params["snap"] and plain.fine_mask is not None
    assert int(rm.dst_mask.sum()) > int(plain.dst_mask.sum()) == int(rm.src_mask.sum())
    assert map_for(rm, True, drag_groups="component", move_affine="points",
                   content_contrast=0.0, rigid_tolerance=0.2, warp="pixel", swing=True) is rm


def test_rigid_drags_become_one_rotation_and_content_contrast_leaves_the_shadow_behind():
    """Three drags round a part that fit a rotation are fused (rigid_tolerance) and rotate the
    region's tokens; with content_contrast the painted pixels that do not stand out from the
    region's fill (a shadow) are vacated and filled, not moved, while the whole painted region
    stays free of the lock."""
    import math

    from fluxdrag.core.reverse_landed import edited_pixels
    from fluxdrag.pipelines.contextdrag import build_map, map_for
    from fluxdrag.toyworld.latent import rle_encode

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[96:160, 80:176] = True
    c, r, th = (128.0, 128.0), 40.0, math.radians(60)
    drags = [{"handle": [c[0] + r * math.cos(a), c[1] + r * math.sin(a)],
              "target": [c[0] + r * math.cos(a + th), c[1] + r * math.sin(a + th)], "mode": "drag"}
             for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    doc = {"version": 1, "image_size": [256, 256], "mask": {"rle": rle_encode(px)}, "drags": drags}
    lat = torch.zeros(1, 16, 32, 32)
    lat[:, 0, 12:20, 12:20] = 2.0                 # content: the object; the rest of the paint is flat
    rm = build_map(doc, lat)
    assert rm.handles.shape[0] == 1 + int(rm.src_mask.sum())          # one fused drag + its point drags
    raw = map_for(rm, True, drag_groups="component", move_affine="points", content_contrast=0.0,
                  rigid_tolerance=0.0, warp="pixel", swing=True)
    assert raw.handles.shape[0] == 3                                  # the paper: the three drags as given
    moved = map_for(rm, True, drag_groups="component", move_affine="points", content_contrast=0.5,
                    rigid_tolerance=0.2, warp="pixel", swing=True)
    assert moved.fine_mask.sum() < moved.paint_mask.sum() and bool(moved.fine_mask[12:20, 12:20].all())
    assert torch.equal(map_for(rm, True, drag_groups="component", move_affine="points",
                                 content_contrast=0.0, rigid_tolerance=0.2, warp="pixel", swing=True).fine_mask,
                       rm.paint_mask)
    assert bool(edited_pixels(moved, subtoken=True)[moved.paint_mask].all())


def _carried_object_pixels(rm, warp: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(want, got) bool latent-pixel masks: where the drag's exact motion puts a moving pixel, and
    where the reference tokens (each at its first destination) show one."""
    from fluxdrag.core.correspondence_fields import move_inverse
    from fluxdrag.core.reverse_tokens import _first_per_source, _pair_pixels, injection_pairs

    fine = rm.fine_mask
    H, W = fine.shape
    w = rm.grid_hw[1]
    m = rm.params["motions"][0]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    p = move_inverse(torch.stack([(xs.reshape(-1) + 0.5) / 2 - 0.5, (ys.reshape(-1) + 0.5) / 2 - 0.5], 1),
                     m["handle"], m["target"], m["scale"], m["angle"])
    r, c = torch.floor((p[:, 1] + 0.5) * 2 - 0.5 + 0.5).long(), torch.floor((p[:, 0] + 0.5) * 2 - 0.5 + 0.5).long()
    ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    want = torch.zeros(H * W, dtype=torch.bool)
    want[ok] = fine[r[ok], c[ok]]
    d, s = injection_pairs(rm)
    rows, cols, _ = _pair_pixels(rm, d, s, 2, warp)
    got = torch.zeros_like(fine)
    for k in _first_per_source(s).tolist():
        qy, qx = int(d[k]) // w, int(d[k]) % w
        got[2 * qy:2 * qy + 2, 2 * qx:2 * qx + 2] |= fine[rows[k], cols[k]]
    return want.reshape(H, W), got


def test_motion_warp_carries_every_pixel_of_a_rotated_or_scaled_part():
    """warp='motion' rebuilds a rotated / scaled part's destinations from the drag's own motion:
    every source token carries one destination, every latent pixel the motion puts the object on
    shows it (nearest pixel of the exact inverse), where the reverse field's rounding ('pixel')
    shares sources between destinations and loses part of the object. A plain move has no motion:
    the same map either way."""
    from fluxdrag.core.reverse_tokens import injection_pairs
    from fluxdrag.pipelines.contextdrag import build_map, map_for
    from fluxdrag.toyworld.latent import rle_encode

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[80:112, 64:176] = True                                     # a bar, 2 x 7 tokens
    for drag, lost in (({"angle": 35.0}, 0.1), ({"scale": [1.6, 1.6]}, 0.1)):
        doc = {"version": 1, "image_size": [256, 256], "mask": {"rle": rle_encode(px)},
               "drags": [{"handle": [120, 96], "target": [128, 150], "mode": "move", **drag}]}
        rm = build_map(doc, torch.zeros(1, 16, 32, 32))
        kw = dict(drag_groups="component", move_affine="points", content_contrast=0.0, rigid_tolerance=0.2,
                  swing=True)
        motion, pixel = map_for(rm, True, warp="motion", **kw), map_for(rm, True, warp="pixel", **kw)
        d, s = injection_pairs(motion)
        assert torch.unique(s).numel() == s.numel(), drag      # one destination per reference token
        want, got = _carried_object_pixels(motion, "motion")
        assert bool(want.any()) and torch.equal(got & want, want), drag
        want_p, got_p = _carried_object_pixels(pixel, "pixel")
        assert int((want_p & ~got_p).sum()) > lost * int(want_p.sum()), drag   # the field's rounding loses some
    doc["drags"] = [{"handle": [120, 96], "target": [128, 150], "mode": "move"}]
    rm = build_map(doc, torch.zeros(1, 16, 32, 32))
    a, b = map_for(rm, True, warp="motion", **kw), map_for(rm, True, warp="pixel", **kw)
    assert torch.equal(a.src, b.src) and torch.equal(a.dst_mask, b.dst_mask)


def test_motion_warp_edge_follows_the_shape_not_the_nearest_pixel():
    """warp='motion': a destination pixel whose inverse image's nearest latent pixel is on the
    moving shape but lies off it (the mask read bilinearly there < 1/2: the rasterised edge passes
    between pixel centres) shows no moved content; the pixels well inside still do. Without the
    rule such edge pixels exist here and showed the old object (a bent limb's vacated joint side)."""
    from fluxdrag.core.correspondence_fields import move_inverse
    from fluxdrag.core.reverse_tokens import _first_per_source, injection_pairs, moved_patch_pixels
    from fluxdrag.pipelines.contextdrag import build_map, map_for
    from fluxdrag.toyworld.latent import rle_encode

    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    t = (((xx - 70) * 100 + (yy - 80) * 40) / (100 ** 2 + 40 ** 2)).clamp(0, 1)
    px = ((xx - 70 - 100 * t) ** 2 + (yy - 80 - 40 * t) ** 2) < 100   # a limb-like capsule, 20 px wide
    doc = {"version": 1, "image_size": [256, 256], "mask": {"rle": rle_encode(px)},
           "drags": [{"handle": [120, 96], "target": [128, 150], "mode": "move", "angle": 35.0}]}
    rm = map_for(build_map(doc, torch.zeros(1, 16, 32, 32)), True, drag_groups="component", move_affine="points",
                 content_contrast=0.0, rigid_tolerance=0.2, swing=True, warp="motion")
    fine, (H, W), w = rm.fine_mask, rm.fine_mask.shape, rm.grid_hw[1]
    m = rm.params["motions"][0]
    d, src = injection_pairs(rm)
    first = {int(src[k]): int(d[k]) for k in _first_per_source(src).tolist()}
    s, rows, cols = moved_patch_pixels(rm, subtoken=True, composite=True, warp="motion", fill_vacated=True)
    edge_n = inside_n = 0
    for k, tok in enumerate(s.tolist()):
        if tok not in first:
            continue
        qy, qx = divmod(first[tok], w)
        for i in range(2):
            for j in range(2):
                y, x = 2 * qy + i, 2 * qx + j
                p = move_inverse(torch.tensor([[(x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5]], dtype=torch.float64),
                                 m["handle"], m["target"], m["scale"], m["angle"])
                fy, fx = float(p[0, 1]) * 2 + 0.5, float(p[0, 0]) * 2 + 0.5     # latent-pixel coordinates
                cov = float(torch.nn.functional.grid_sample(
                    fine.double()[None, None], torch.tensor([[[[(fx + 0.5) / W * 2 - 1, (fy + 0.5) / H * 2 - 1]]]],
                                                            dtype=torch.float64),
                    mode="bilinear", padding_mode="zeros", align_corners=False))
                r, c = int(torch.floor((p[0, 1] + 0.5) * 2)), int(torch.floor((p[0, 0] + 0.5) * 2))
                nearest = 0 <= r < H and 0 <= c < W and bool(fine[r, c])
                shows = int(rows[k, i, j]) < H and bool(fine[rows[k, i, j], cols[k, i, j]])
                if nearest and cov < 0.5:
                    edge_n += 1
                    assert not shows, (y, x, cov)
                elif cov >= 0.75:
                    inside_n += 1
                    assert shows, (y, x, cov)
    assert edge_n > 0 and inside_n > 20, (edge_n, inside_n)


def test_swing_turns_a_lone_drag_into_a_rotation_about_the_far_end():
    """swing (default): a lone 'drag' drag on a painted part becomes a rotating move drag about
    the part's far end (a motion the warp follows); off (the paper) the drag is a point drag and
    the map has no motion."""
    from fluxdrag.pipelines.contextdrag import build_map, map_for
    from fluxdrag.toyworld.latent import rle_encode

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[120:136, 64:176] = True                                    # a horizontal bar; its far end at x = 64
    doc = {"version": 1, "image_size": [256, 256], "mask": {"rle": rle_encode(px)},
           "drags": [{"handle": [168, 128], "target": [148, 72]}]}
    rm = build_map(doc, torch.zeros(1, 16, 32, 32))
    [m] = rm.params["motions"]
    assert rm.params["swing"] and abs(m["angle"]) > 20 and m["handle"] == m["target"]
    assert m["handle"][0] < 5.5                                   # pivot near the far end (token x 3.5)
    kw = dict(drag_groups="component", move_affine="points", content_contrast=0.0, rigid_tolerance=0.2,
              warp="motion")
    assert not map_for(rm, True, swing=False, **kw).params["motions"]


def test_depth_groups_follow_each_drags_stated_intent():
    """A drag's stated depth sets its part's rule (behind = under, front = over); a part without one
    takes the setting, and so does a part whose drags state both (with a warning), as LazyDrag's and
    DragFlow's group_depth."""
    from fluxdrag.core.reverse_depth import depth_groups
    from fluxdrag.pipelines.contextdrag import build_map
    from fluxdrag.toyworld.latent import rle_encode

    px = torch.zeros(256, 256, dtype=torch.bool)
    px[32:64, 32:64] = True
    px[160:192, 160:192] = True
    doc = {"version": 1, "image_size": [256, 256], "mask": {"rle": rle_encode(px)},
           "drags": [{"handle": [48, 48], "target": [96, 48], "mode": "move", "depth": "behind"},
                     {"handle": [176, 176], "target": [208, 176], "mode": "move"}]}
    rm = build_map(doc, torch.zeros(1, 16, 32, 32))
    rules = sorted((int(torch.nonzero(part)[0, 0]), rule) for part, rule in depth_groups(rm, "auto"))
    assert [r for _, r in rules] == ["under", "auto"]
    doc["drags"][1]["depth"] = "front"
    rules = sorted((int(torch.nonzero(part)[0, 0]), rule)
                   for part, rule in depth_groups(build_map(doc, torch.zeros(1, 16, 32, 32)), "under"))
    assert [r for _, r in rules] == ["under", "over"]
    doc["drags"].append({"handle": [40, 56], "target": [88, 56], "mode": "move", "depth": "front"})
    rm = build_map(doc, torch.zeros(1, 16, 32, 32))
    with pytest.warns(UserWarning, match="state different depths"):
        rules = sorted((int(torch.nonzero(part)[0, 0]), rule) for part, rule in depth_groups(rm, "over"))
    assert [r for _, r in rules] == ["over", "over"]
    with pytest.warns(UserWarning, match="state different depths"):
        rules = sorted((int(torch.nonzero(part)[0, 0]), rule) for part, rule in depth_groups(rm, "auto"))
    assert [r for _, r in rules] == ["auto", "over"]


def test_a_stated_depth_without_its_means_warns():
    """A stated depth needs a painted mask and occluder_contrast > 0 (the objects in front are
    found from them): without, Position-Consistent Attention warns that it is ignored (before any
    model work: apply_pca calls this first)."""
    import warnings

    import pytest

    from fluxdrag.pipelines.contextdrag import ContextDragSettings, build_map, warn_unused_depth

    doc = {"version": 1, "image_size": [256, 256],
           "drags": [{"handle": [48, 48], "target": [96, 48], "mode": "move", "depth": "behind"}]}
    rm = build_map(doc, torch.zeros(1, 16, 32, 32))                # no mask: default discs
    with pytest.warns(UserWarning, match="state a depth.*ignored"):
        warn_unused_depth(rm, ContextDragSettings())
    doc["mask"] = {"polygons": [[[32, 32], [64, 32], [64, 64], [32, 64]]]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unused_depth(build_map(doc, torch.zeros(1, 16, 32, 32)), ContextDragSettings())
    with pytest.warns(UserWarning, match="occluder_contrast"):
        warn_unused_depth(build_map(doc, torch.zeros(1, 16, 32, 32)), ContextDragSettings(occluder_contrast=0.0))


def test_vacated_pixels_under_a_destination_show_the_filled_reference():
    """fill_vacated (with the hole fill): where a moved token's source pixel is no moving content
    and its destination pixel is painted (the part's own old place here; another part's in a
    multi-object edit), the token shows the reference filled there (its row offset into the filled
    copy), not the old painted pixel (or, where that is another part's content, the source's
    surroundings); moving content is carried as before."""
    from fluxdrag.core.reverse_tokens import moved_patch_pixels

    rm = build_reverse_map([[2.0, 1.0]], [[1.0, 1.0]], _region(4, 6, 1, 2, 1, 3), (4, 6), snap=True)
    rm.fine_mask = _fine(4, 6, [(2, 4), (3, 4)])                  # content: token (1, 2)'s left column
    rm.paint_mask = _region(8, 12, 2, 4, 2, 6)                     # painted: both tokens
    H = 8
    tok, rows, cols = moved_patch_pixels(rm, subtoken=True, composite=True, fill_vacated=True)
    plain = moved_patch_pixels(rm, subtoken=True, composite=True, fill_vacated=False)
    k = tok.tolist().index(1 * 6 + 2)                              # token (1, 2), now at (1, 1)
    assert bool((rows[k][:, 0] < H).all()) and cols[k][:, 0].tolist() == [4, 4]   # the content, carried
    assert bool((rows[k][:, 1] >= H).all()) and cols[k][:, 1].tolist() == [3, 3]  # painted there: filled
    kp = plain[0].tolist().index(1 * 6 + 2)
    assert not bool((plain[1][kp] >= H).any()) and plain[2][kp][:, 1].tolist() == [3, 3]   # before: the old paint


def test_hole_rim_holds_the_vacated_pixels_next_to_the_moved_content_to_the_fill():
    """``hole_rim`` [ours]: a 3 x 2 latent-pixel object moved two pixels right leaves its old
    pixels vacated; the column of them next to where it lands is held by the background lock to
    the filled reference ((x − fill) / σ, the membrane of a zero ground: 0), the rest of the hole
    stays the model's. With hole_rim 0 the whole hole is the model's. An object in front touching
    the paint at the source (its column next to the content carried with it, where the content's
    hidden part may show once dragged out) leaves that rim free, and so does a content pixel no
    destination shows, carried as its neighbours are."""
    from fluxdrag.attention_patches.router import ForwardContext
    from fluxdrag.core.reverse_depth import hole_rim_pixels

    reg = _region(5, 8, 1, 3, 2, 4)
    rm = build_reverse_map([[2.5, 1.5]], [[3.5, 1.5]], reg, (5, 8), snap=True)
    fine = torch.zeros(10, 16, dtype=torch.bool)
    fine[3:6, 5:7] = True
    rm.fine_mask = rm.paint_mask = fine
    ref = torch.zeros(1, 16, 10, 16)
    ref[..., 3:6, 5:7] = 3.0
    rim = hole_rim_pixels(rm, ref, rim=1, subtoken=True, warp="motion", contrast=0.5)
    assert torch.nonzero(rim).tolist() == [[3, 6], [4, 6], [5, 6]]
    front = ref.clone()
    front[..., 3:7, 2:5] = -3.0                       # an object in front, touching the paint on its left
    assert not hole_rim_pixels(rm, front, rim=1, subtoken=True, warp="motion", contrast=0.5).any()
    assert torch.equal(hole_rim_pixels(rm, front, rim=1, subtoken=True, warp="motion", contrast=0.0), rim)
    lost = build_reverse_map([[2.5, 1.5]], [[3.5, 1.5]], reg, (5, 8), snap=True)
    lost.fine_mask = fine.clone()
    lost.fine_mask[6, 6] = True                       # content below the region's tokens: no destination shows it
    lost.paint_mask = lost.fine_mask.clone()
    lost.paint_mask[6, 5:9] = True
    got = hole_rim_pixels(lost, ref, rim=1, subtoken=True, warp="motion", contrast=0.0)
    assert torch.nonzero(got).tolist() == [[3, 6], [4, 6], [5, 6], [6, 6], [6, 7]]   # not (6, 8): it may show there

    x, out = torch.randn(1, 16, 10, 16), torch.randn(1, 16, 10, 16)
    sig = [1.0, 0.5, 0.0]

    def call(pca, r):
        ctx = ForwardContext(model=None, sigma=sig[1], step=1, sample_sigmas=sig, direction=-1, batch=1,
                             n_txt=0, n_img=40, grid=(5, 8), ref_grids=[(5, 8)], cond_or_uncond=[0],
                             transformer_options={}, ref_latents=[r], x=x)
        return pca.on_forward_end(ctx, out)

    kw = dict(hole_fill="harmonic", background_lock=1.0, lock_margin=0, warp="motion", occluder_contrast=0.5)
    held = call(_pca(rm, hole_rim=1, **kw), ref)
    assert torch.allclose(held[..., rim], x[..., rim] / sig[1], atol=1e-5)     # denoises to the fill (0)
    hole = fine.clone()
    hole[:, 6] = False
    assert torch.equal(held[..., hole], out[..., hole])                       # the rest of the hole is free
    assert torch.equal(call(_pca(rm, hole_rim=0, **kw), ref)[..., rim], out[..., rim])
    assert torch.equal(call(_pca(rm, hole_rim=1, **kw), front)[..., rim], out[..., rim])
    assert torch.equal(call(_pca(rm, hole_rim=1, **{**kw, "hole_fill": "none"}), ref)[..., rim], out[..., rim])


def test_the_per_run_fill_follows_the_batch_and_the_reference():
    """Review: the filled reference and the rim are cached per run and reference, so a call that
    batches cond and uncond (2 rows) followed by one that does not (ComfyUI decides per step),
    or by one with another reference, holds the rim to that call's own fill."""
    from fluxdrag.attention_patches.router import RUN_KEY, ForwardContext, RunState

    rm = build_reverse_map([[2.5, 1.5]], [[3.5, 1.5]], _region(5, 8, 1, 3, 2, 4), (5, 8), snap=True)
    fine = torch.zeros(10, 16, dtype=torch.bool)
    fine[3:6, 5:7] = True
    rm.fine_mask = rm.paint_mask = fine
    sig = [1.0, 0.5, 0.0]
    pca = _pca(rm, hole_rim=1, hole_fill="harmonic", background_lock=1.0, lock_margin=0, warp="motion",
               occluder_contrast=0.5)
    run = RunState([pca], sig)
    run._states[id(pca)] = pca.start_run(sig)

    def call(x, out, ref):
        ctx = ForwardContext(model=None, sigma=sig[1], step=1, sample_sigmas=sig, direction=-1, batch=x.shape[0],
                             n_txt=0, n_img=40, grid=(5, 8), ref_grids=[(5, 8)], cond_or_uncond=[0] * x.shape[0],
                             transformer_options={RUN_KEY: run}, ref_latents=[ref], x=x)
        return pca.on_forward_end(ctx, out)

    ref = torch.zeros(2, 16, 10, 16)
    ref[..., 3:6, 5:7] = 3.0
    x, out = torch.randn(2, 16, 10, 16), torch.randn(2, 16, 10, 16)
    rim = torch.zeros(10, 16, dtype=torch.bool)
    rim[3:6, 6] = True
    assert torch.allclose(call(x, out, ref)[..., rim], x[..., rim] / sig[1], atol=1e-5)
    assert torch.allclose(call(x[:1], out[:1], ref[:1])[..., rim], x[:1][..., rim] / sig[1], atol=1e-5)
    other = ref[:1] + 1.0                                  # another ground: the fill is 1 on the rim
    assert torch.allclose(call(x[:1], out[:1], other)[..., rim], (x[:1][..., rim] - 1.0) / sig[1], atol=1e-5)


def test_fill_in_place_shows_the_fill_on_vacated_tokens_nothing_moves_from():
    """``fill_in_place`` [ours]: a vacated token that is no source (here the region's right token,
    whose destination falls off the grid) is re-embedded in place from the filled reference and is
    no longer hidden from the image queries; off, it stays hidden and keeps the reference."""
    rm = build_reverse_map([[1.0, 1.0]], [[4.0, 1.0]], _region(4, 5, 1, 2, 1, 3), (4, 5), snap=True)
    stay = 1 * 5 + 2
    assert bool((rm.vacated_mask & ~rm.used_source_mask).reshape(-1)[stay])
    ref = torch.full((1, 16, 8, 10), 0.5)
    ref[..., 2:4, 2:6] = 9.0                                    # the object over both region tokens
    on = _pca(rm, hole_fill="harmonic", fill_in_place=True)
    off = _pca(rm, hole_fill="harmonic", fill_in_place=False)
    assert stay in off.hidden.tolist() and stay not in on.hidden.tolist()
    base = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    base = torch.cat([torch.ones(20, 1), base], 1)
    assert torch.equal(on.intended_ids(base)[stay], base[stay])  # in place: its own ids
    tok, patches = on.hole_patches(ref)
    row = tok.tolist().index(stay)
    assert torch.allclose(patches[0, row], torch.full_like(patches[0, row], 0.5))   # the ground, filled
    assert stay not in off.hole_patches(ref)[0].tolist()


def test_a_lost_edge_row_spills_onto_a_vacated_token_shown_in_place():
    """A half-token move down loses the content's top pixel row: the token it lands in is painted
    (a shadow under the object), vacated and no source (its own destination is off the grid), so
    no destination carries the row and the spill only took tokens outside M_SRC. With the token
    shown in place (``fill_in_place``, ``spill_onto``) the row lands there, over the filled
    reference, and the edited / landed pixels know it."""
    from fluxdrag.core.reverse_landed import content_pairs, edited_pixels
    from fluxdrag.core.reverse_tokens import moved_patch_pixels

    rm = build_reverse_map([[2.0, 1.0]], [[2.0, 2.5]], _region(4, 6, 1, 3, 2, 3), (4, 6), snap=True)
    fine = torch.zeros(8, 12, dtype=torch.bool)
    fine[2:4, 4:6] = True                                          # the object: token (1, 2)
    paint = fine.clone()
    paint[4:6, 4:6] = True                                         # its shadow: token (2, 2)
    rm.fine_mask, rm.paint_mask = fine, paint
    off = content_pairs(rm, subtoken=True, warp="motion")
    assert sorted(map(tuple, off[1].tolist())) == [(3, 4), (3, 5)]   # the top row (2) is lost
    on = content_pairs(rm, subtoken=True, warp="motion", spill_onto=True)
    assert sorted(zip(map(tuple, on[0].tolist()), map(tuple, on[1].tolist()))) == [
        ((5, 4), (2, 4)), ((5, 5), (2, 5)), ((6, 4), (3, 4)), ((6, 5), (3, 5))]
    tok, rows, cols = moved_patch_pixels(rm, subtoken=True, composite=True, warp="motion", fill_vacated=True,
                                         spill_onto=True)
    k = tok.tolist().index(2 * 6 + 2)
    assert rows[k].tolist() == [[4 + 8, 4 + 8], [2, 2]] and cols[k].tolist() == [[4, 5], [4, 5]]   # fill, then the row
    assert 2 * 6 + 2 not in moved_patch_pixels(rm, subtoken=True, composite=True, warp="motion",
                                               fill_vacated=True)[0].tolist()
    assert bool(edited_pixels(rm, subtoken=True, warp="motion", spill_onto=True)[5, 4:6].all())
    pca = _pca(rm, hole_fill="harmonic", fill_in_place=True, warp="motion")
    assert 2 * 6 + 2 not in pca._slots[0].tolist() and 2 * 6 + 2 not in pca.hidden.tolist()   # the spill shows it


def test_a_lost_edge_row_landing_in_a_hole_shows_in_its_slot():
    """The same half-token move on a taller grid: the shadow token is now a source (its own
    destination is on the grid), so the lost top row lands in a *hole*, whose place a slot holds.
    With ``fill_in_place`` the slot shows that row over the filled reference, and the landed
    pixels know it."""
    from fluxdrag.core.reverse_ids import hole_slots
    from fluxdrag.core.reverse_landed import content_pairs

    rm = build_reverse_map([[2.0, 1.0]], [[2.0, 2.5]], _region(6, 6, 1, 3, 2, 3), (6, 6), snap=True)
    fine = torch.zeros(12, 12, dtype=torch.bool)
    fine[2:4, 4:6] = True
    paint = fine.clone()
    paint[4:6, 4:6] = True
    rm.fine_mask, rm.paint_mask = fine, paint
    slots, holes = hole_slots(rm)
    assert 2 * 6 + 2 in holes.tolist()                             # the shadow token: a hole with a slot
    assert (5, 4) not in map(tuple, content_pairs(rm, subtoken=True, warp="motion")[0].tolist())
    assert (5, 4) in map(tuple, content_pairs(rm, subtoken=True, warp="motion", spill_onto=True)[0].tolist())
    ref = torch.full((1, 16, 12, 12), 0.5)
    ref[..., 2:4, 4:6] = 9.0
    for on, row5 in ((True, 9.0), (False, 0.5)):
        tok, patches = _pca(rm, hole_fill="harmonic", fill_in_place=on, warp="motion").hole_patches(ref)
        k = tok.tolist().index(int(slots[holes.tolist().index(2 * 6 + 2)]))
        got = patches.reshape(1, -1, 16, 2, 2)[0, k, 0]
        assert torch.allclose(got[0], torch.full((2,), 0.5)) and torch.allclose(got[1], torch.full((2,), row5))


@pytest.mark.parametrize("warp", ["token", "pixel", "motion"])
def test_a_half_token_move_off_the_frame_edge_repeats_no_edge_row(warp):
    """Content on the image's bottom pixel row moved up by 1.5 tokens: the destination token over
    its lower half reads one pixel past the frame for its second row. That pixel shows no moved
    content (the destination's own background); the clamp to the latent repeated the edge row
    there (toy scene 202024: a fifth ring row below a ring; 11 of 416 tuning maps changed by the
    two frame-edge fixes)."""
    from fluxdrag.core.reverse_landed import content_pairs

    rm = build_reverse_map([[1.0, 3.0]], [[1.0, 1.5]], _region(4, 4, 3, 4, 1, 2), (4, 4), snap=True)
    rm.fine_mask = _fine(4, 4, [(y, x) for y in (6, 7) for x in (2, 3)])
    d, s = content_pairs(rm, subtoken=True, warp=warp, on_shape=True)
    assert sorted(zip(map(tuple, d.tolist()), map(tuple, s.tolist()))) == [
        ((3, 2), (6, 2)), ((3, 3), (6, 3)), ((4, 2), (7, 2)), ((4, 3), (7, 3))]


@pytest.mark.parametrize("warp", ["token", "pixel", "motion"])
@pytest.mark.parametrize("dx,col", [(1.5, 3), (1.5000005, 3), (1.7, 3), (1.25, 2)])
def test_a_fractional_move_from_the_frame_edge_keeps_the_edge_column(warp, dx, col):
    """Content on the image's left pixel column moved right by a fraction of a token: the
    destination that would carry that column has its source past the frame, so no token pair
    carries it and the spill dropped it (toy scene 202018: a ring lost its left column). The spill
    now reads, for a source past the frame by under a token, each latent pixel's own source
    pixel: round(2 · (x − dx)), the column on the latent shown where the translation puts it (review:
    a first snap to the edge token missed drags past half a token, and a tie's tolerance put the
    column one pixel early)."""
    from fluxdrag.core.reverse_landed import content_pairs

    rm = build_reverse_map([[0.0, 1.0]], [[dx, 1.0]], _region(4, 6, 1, 2, 0, 1), (4, 6), snap=True)
    rm.fine_mask = _fine(4, 6, [(y, x) for y in (2, 3) for x in (0, 1)])
    d, s = content_pairs(rm, subtoken=True, warp=warp, on_shape=True)
    assert sorted(zip(map(tuple, d.tolist()), map(tuple, s.tolist()))) == [
        ((2, col), (2, 0)), ((2, col + 1), (2, 1)), ((3, col), (3, 0)), ((3, col + 1), (3, 1))]
