"""Tier 1: the pure helpers of the ContextDrag attention patches (no ComfyUI needed)."""
import math

import pytest
import torch

from fluxdrag.attention_patches.contextdrag import (
    ContextTokenInjection,
    PositionConsistentAttention,
    combine_masks,
    extras_mask,
    key_hiding_mask,
    pad_keys,
    parse_block_list,
    step_active,
)
from fluxdrag.core.reverse_mapping import build_reverse_map

INF = -math.inf


def test_parse_block_list():
    assert parse_block_list("all") is None and parse_block_list(None) is None
    assert parse_block_list("none") == frozenset() and parse_block_list(" ") == frozenset()
    assert parse_block_list("0-3, 7;9", 10) == frozenset({0, 1, 2, 3, 7, 9})
    assert parse_block_list([2, 2, 5]) == frozenset({2, 5})
    with pytest.raises(ValueError, match=r"single_blocks: indices \[38\] are outside 0..37"):
        parse_block_list("0, 38", 38, "single_blocks")
    for bad in ("a", "3-1", "-2", "1-"):
        with pytest.raises(ValueError, match="not an index or a range"):
            parse_block_list(bad)


def test_step_window():
    sig = [1.0, 0.75, 0.5, 0.25, 0.0]  # T = 4 steps
    on = [i for i in range(4) if step_active(float(i), sig, 0.25, 0.75)]
    assert on == [1, 2]
    assert step_active(1.5, sig, 0.25, 0.75) and not step_active(0.5, sig, 0.25, 0.75)
    assert [step_active(float(i), sig, 0.0, 1.0) for i in range(4)] == [True] * 4
    assert not any(step_active(float(i), sig, 1.0, 1.0) for i in range(4))
    # a call off the schedule (step None) is active only for the full window
    assert step_active(None, sig, 0.0, 1.0) and not step_active(None, sig, 0.0, 0.5)


def test_key_hiding_mask_exact_pairs():
    m = key_hiding_mask(6, 7, [slice(1, 3), slice(5, 6)], torch.tensor([4, 6]), torch.float32, "cpu")
    assert m.shape == (1, 1, 6, 7)
    expect = torch.zeros(6, 7)
    for r in (1, 2, 5):
        for c in (4, 6):
            expect[r, c] = INF
    assert torch.equal(m[0, 0], expect)


def test_extras_mask_and_combination():
    # 5 queries, 4 keys, 2 extras visible to rows 1..2
    m = extras_mask(5, 4, 2, [slice(1, 3)], torch.float32, "cpu")
    assert m.shape == (1, 1, 5, 6)
    assert torch.equal(m[0, 0, :, :4], torch.zeros(5, 4))
    assert torch.equal(m[0, 0, :, 4:], torch.tensor([[INF, INF], [0, 0], [0, 0], [INF, INF], [INF, INF]]))
    # destination pairs: extra j only for query pairs[j]
    p = extras_mask(5, 4, 2, None, torch.float32, "cpu", pairs=torch.tensor([3, 0]))
    assert torch.equal(p[0, 0, :, 4:], torch.tensor([[INF, 0], [INF, INF], [INF, INF], [0, INF], [INF, INF]]))
    assert extras_mask(5, 4, 2, None, torch.float32, "cpu") is None
    # widening keeps old columns and opens new ones; bool masks mean "True = attend"
    b = torch.tensor([[True, False, True, True]] * 5)
    w = pad_keys(b, 6, torch.float32)
    assert w.shape == (1, 1, 5, 6) and torch.equal(w[0, 0, 0], torch.tensor([0, INF, 0, 0, 0, 0]))
    c = combine_masks(b, m)  # either order, same sum
    assert torch.equal(c, combine_masks(m, b))
    assert torch.equal(c[0, 0, 1], torch.tensor([0, INF, 0, 0, 0, 0]))
    assert torch.equal(c[0, 0, 0], torch.tensor([0, INF, 0, 0, INF, INF]))
    assert combine_masks(None, None) is None and combine_masks(b, None) is b


def _square_shift():
    """A 2x2 square at tokens x 2..3, y 2..3 dragged by (+3, +1) on an 8x8 grid."""
    src = torch.zeros(8, 8, dtype=torch.bool)
    src[2:4, 2:4] = True
    return build_reverse_map([[2.5, 2.5]], [[5.5, 3.5]], src, (8, 8))


def _defaults(fields: tuple) -> dict:
    """The controllers take their settings by keyword, with no defaults: these are the
    ContextDragSettings defaults (``fluxdrag/pipelines/contextdrag.py``)."""
    from fluxdrag.pipelines.contextdrag import ContextDragSettings
    from fluxdrag.pipelines.settings import pick

    return pick(ContextDragSettings(), fields + ("start", "end", "reference_index"))


def _cti(rmap, **kw):
    return ContextTokenInjection(rmap, **{**_defaults(("mode", "visible_to")), **kw})


def _pca(rmap, **kw):
    return PositionConsistentAttention(rmap, **{**_defaults(("rewrite_ids", "hide", "hide_from", "collision")),
                                                **kw})


def test_pca_hidden_sets_follow_the_id_rewrite():
    rmap = _square_shift()
    src = {(y, x) for y in (2, 3) for x in (2, 3)}
    dst = {(y + 1, x + 3) for y, x in src}
    vacated = sorted(y * 8 + x for y, x in src - dst)
    # ids kept: the whole vacated area is hidden; ids rewritten: its tokens sit at the
    # destination, so none of them is hidden, and the overlap set is the destination's own tokens
    assert _pca(rmap, rewrite_ids=False, hide="vacated").hidden.tolist() == vacated
    assert _pca(rmap, hide="vacated").hidden.tolist() == []
    ov = _pca(rmap, hide="vacated_overlap").hidden.tolist()
    assert ov == sorted(y * 8 + x for y, x in dst - src)
    assert _pca(rmap).hidden.tolist() == []  # the default (vacated, issue 28): no mask for a rigid move
    with pytest.raises(ValueError, match="hide must be one of"):
        _pca(rmap, hide="all")


def test_controller_arguments_checked():
    rmap = _square_shift()
    with pytest.raises(ValueError, match="mode must be one of"):
        _cti(rmap, mode="blend")
    with pytest.raises(ValueError, match="start <= end"):
        _cti(rmap, start=0.8, end=0.2)
    with pytest.raises(TypeError, match="ReverseMap"):
        _cti({"pairs": []})
    c = _cti(rmap, double_blocks=[0], single_blocks=[])
    assert c.block_indices == {"double": frozenset({0}), "single": frozenset()}
    d, s = c.pairs("cpu")
    # (y, x) -> (y + 1, x + 3), row-major destinations
    assert d.tolist() == [3 * 8 + 5, 3 * 8 + 6, 4 * 8 + 5, 4 * 8 + 6]
    assert s.tolist() == [2 * 8 + 2, 2 * 8 + 3, 3 * 8 + 2, 3 * 8 + 3]
