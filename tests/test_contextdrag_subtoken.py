"""ContextDrag's sub-token precision (issue 28): the map's consistent rounding (``snap``) and
Position-Consistent Attention's content shift below the token grid (``subtoken_shifts``)."""
from __future__ import annotations

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
