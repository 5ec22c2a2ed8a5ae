"""Anchors (handle = target) and drags too short for a method: split once in fluxdrag/core/drag_sets.py,
held by each method's map (LazyDrag, ContextDrag), regions (DragFlow) and latent (AttentionDrag)."""
from __future__ import annotations

import warnings

import pytest
import torch

from fluxdrag.core.correspondence import build_correspondence
from fluxdrag.core.drag_sets import hold_anchors, regions_from_drags, split_drags
from fluxdrag.core.instructions import parse_instructions, to_token_space
from fluxdrag.core.reverse_mapping import build_reverse_map

DOC = {"version": 1, "image_size": [128, 128],
       "drags": [{"handle": [40, 40], "target": [88, 40]},      # moves 48 px
                 {"handle": [40, 100], "target": [40, 100]},    # an anchor (DragBench's form)
                 {"handle": [100, 100], "target": [101, 101]}]}  # 1.4 px: shorter than any grid


def _split(min_px=4.0, short="anchor"):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = split_drags(parse_instructions(DOC), min_px, "Method", "half a cell", short=short)
    return s, [str(x.message) for x in w]


def test_short_drag_becomes_an_anchor_with_a_warning_naming_it():
    s, msgs = _split()
    assert s.moving == [0] and s.anchors == [1, 2]
    assert [d.mode for d in s.instructions.drags] == ["drag", "anchor", "anchor"]
    assert s.instructions.drags[2].target == (100.0, 100.0)
    assert s.short == [(2, pytest.approx(2 ** 0.5))]
    [msg] = msgs
    assert "Method: drag 2" in msg and "1.4 px" in msg and "half a cell" in msg and "anchor" in msg


def test_short_drag_dropped_on_request_and_all_short_refused():
    s, msgs = _split(short="drop")
    assert len(s.instructions.drags) == 2 and "left out" in msgs[0]
    with pytest.raises(ValueError, match="no drag is left to move.*1 anchor.*2 shorter than 60 px"):
        _split(min_px=60)


def test_lazydrag_anchor_keeps_its_content_in_place():
    td = to_token_space(_split()[0].instructions, (128, 128))
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[1:8, 1:4] = True  # the moving drag's column and the anchor below it
    cm = build_correspondence(td, region_mask=region)
    # the anchor token (x 2, y 5.75 -> row 6) maps to itself: zero displacement
    assert cm.destination[6, 2] and cm.matching[6, 2].tolist() == [6, 2]
    # the moved drag's handle token (row 2, col 2) lands 3 tokens right
    assert cm.matching[2, 5].tolist() == [2, 2]
    # without the anchor the lower part of the region would follow the drag
    only = parse_instructions({**DOC, "drags": DOC["drags"][:1]})
    cm2 = build_correspondence(to_token_space(only, (128, 128)), region_mask=region)
    assert cm2.matching[6, 2].tolist() != [6, 2]


def test_contextdrag_anchor_is_a_point_mapped_to_itself():
    td = to_token_space(_split()[0].instructions, (128, 128))
    rmap = build_reverse_map(td.handles, td.targets, None, td.grid_hw)
    y, x = 6, 2  # the anchor's token
    assert rmap.dst_mask[y, x] and rmap.src[y, x].tolist() == [x, y]
    # the moved drag still moves: its handle token (2, 2) is the source 3 tokens right
    assert rmap.src[2, 5].tolist() == [2, 2]


def test_dragflow_regions_from_mask_and_points():
    doc = {**DOC, "mask": {"polygons": [[[20, 20], [70, 20], [70, 70], [20, 70]]]}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = split_drags(parse_instructions(doc), 4.0, "DragFlow")
    regions = regions_from_drags(s)
    assert [r.op for r in regions] == ["relocate"] * 3
    move, *held = regions
    assert move.begin == (40.0, 40.0) and move.target == (88.0, 40.0)
    assert torch.equal(move.mask, s.instructions.mask)  # the one drag owns the whole mask
    for r, p in zip(held, [(40.0, 100.0), (100.0, 100.0)], strict=True):
        assert r.begin == r.target == p and r.mask[int(p[1]), int(p[0])]
        assert not (r.mask & move.mask).any()


def test_hold_anchors_restores_the_cells_around_each_anchor():
    old, new = torch.zeros(1, 4, 16, 16), torch.ones(1, 4, 16, 16)
    out = hold_anchors(new, old, [(40.0, 100.0)], radius_px=8)
    assert out[0, 0, 12, 5] == 0 and out[0, 0, 0, 0] == 1
    assert int((out[0, 0] == 0).sum()) <= 9
