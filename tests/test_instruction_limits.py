"""Limits on one DRAG_INSTRUCTIONS document: refused with a message naming the limit, before any
image-sized allocation (a 1e30 image side, 10 000 drags, runaway nesting, huge polygons)."""
import json
import tracemalloc

import pytest

from fluxdrag.core import instructions as I

DRAG = {"handle": [10, 10], "target": [20, 20]}


def doc(**kw):
    d = {"version": 1, "image_size": [64, 64], "drags": [DRAG]}
    d.update(kw)
    return d


@pytest.mark.parametrize("size", [[I.MAX_IMAGE_SIDE + 16, 64], [64, 100000], [1e30, 64]])
def test_image_side_limit(size):
    with pytest.raises(ValueError, match=f"limit of {I.MAX_IMAGE_SIDE} px per side"):
        I.parse_instructions(json.dumps(doc(image_size=size)))


def test_largest_allowed_side_parses():
    ins = I.parse_instructions(doc(image_size=[I.MAX_IMAGE_SIDE, 32]))
    assert ins.image_size == (I.MAX_IMAGE_SIDE, 32)


def test_drag_and_region_count_limits():
    with pytest.raises(ValueError, match=f"10000 drags, over the limit of {I.MAX_DRAGS}"):
        I.parse_instructions(doc(drags=[DRAG] * 10000))
    I.parse_instructions(doc(drags=[DRAG] * I.MAX_DRAGS))
    region = {"op": "relocate", "mask": {"polygons": [[[0, 0], [9, 0], [9, 9]]]},
              "begin": [3, 3], "target": [30, 30]}
    with pytest.raises(ValueError, match=f"over the limit of {I.MAX_REGIONS}"):
        I.parse_instructions(doc(regions=[region] * (I.MAX_REGIONS + 1)))


def test_count_limits_hold_for_instructions_built_in_python():
    # the same limits for a DragInstructions built directly (scripts, other nodes), not only JSON
    drag = I.Drag(handle=(10.0, 10.0), target=(20.0, 20.0))
    with pytest.raises(ValueError, match=f"{I.MAX_DRAGS + 1} drags, over the limit of {I.MAX_DRAGS}"):
        I.DragInstructions(image_size=(64, 64), drags=[drag] * (I.MAX_DRAGS + 1))
    assert len(I.DragInstructions(image_size=(64, 64), drags=[drag] * I.MAX_DRAGS).drags) == I.MAX_DRAGS


def test_counts_checked_before_masks_are_rasterised():
    # a too-large region list is refused before its (large) masks are decoded
    region = {"op": "relocate", "mask": {"rle": {"size": [4096, 4096], "counts": [4096 * 4096]}},
              "begin": [3, 3], "target": [30, 30]}
    tracemalloc.start()
    with pytest.raises(ValueError, match="regions, over the limit"):
        I.parse_instructions(doc(image_size=[4096, 4096], regions=[region] * (I.MAX_REGIONS + 1)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2 ** 20


def test_polygon_point_limit():
    poly = [[i % 60, (i * 7) % 60] for i in range(I.MAX_POLYGON_POINTS + 1)]
    with pytest.raises(ValueError, match="mask.polygons have 10,001 points, over the limit"):
        I.parse_instructions(doc(mask={"polygons": [poly]}))


def test_json_size_and_depth_limits():
    with pytest.raises(ValueError, match="characters, over the limit"):
        I.parse_instructions(" " * (I.MAX_JSON_CHARS + 1) + json.dumps(doc()))
    deep = "[" * 100000 + "]" * 100000
    with pytest.raises(ValueError, match=f"nested deeper than {I.MAX_JSON_DEPTH}"):
        I.parse_instructions(json.dumps(doc(extra=None))[:-1] + ', "x": ' + deep + "}")
    nested = []
    for _ in range(200):
        nested = [nested]
    with pytest.raises(ValueError, match="nested deeper"):
        I.parse_instructions(doc(ui_state=nested))
    # brackets inside strings do not count
    I.parse_instructions(json.dumps(doc(note="[" * 1000)))


def test_rle_size_limit_and_order():
    with pytest.raises(ValueError, match=r"mask.rle.size \[H, W\] = \[100000, 100000\] is over the limit"):
        I.parse_instructions(doc(mask={"rle": {"size": [100000, 100000], "counts": [10 ** 10]}}))
