"""Tier 1: DRAG_INSTRUCTIONS parsing, validation, masks and pixel -> token conversion."""
from __future__ import annotations

import json
import math

import pytest
import torch

from fluxdrag.core.instructions import (
    Drag,
    DragInstructions,
    from_mask_and_points,
    parse_instructions,
    pixel_mask_to_token_mask,
    pixel_to_token,
    rasterize_polygons,
    rescale,
    rle_decode,
    rle_encode,
    to_token_space,
    token_grid_shape,
    token_to_pixel,
)


def _doc(**over):
    d = {
        "version": 1,
        "image_size": [64, 48],
        "drags": [
            {"handle": [8, 8], "target": [40, 8]},
            {"handle": [20, 30], "target": [24, 40], "mode": "move", "scale": [1.5, 0.5]},
        ],
    }
    d.update(over)
    return d


# ---------------------------------------------------------------- parsing / round trip


def test_defaults_and_round_trip_with_polygon_mask_and_region():
    doc = _doc(
        mask={"polygons": [[[0, 0], [16, 0], [16, 16], [0, 16]]]},
        regions=[{
            "op": "rotate", "mask": {"polygons": [[[32, 16], [48, 16], [48, 32], [32, 32]]]},
            "begin": [40, 20], "target": [44, 24], "anchor": [40, 24],
        }],
    )
    ins = parse_instructions(json.dumps(doc))
    assert ins.image_size == (64, 48)
    assert ins.drags[0] == Drag((8.0, 8.0), (40.0, 8.0), "drag", (1.0, 1.0))
    assert ins.drags[1].mode == "move" and ins.drags[1].scale == (1.5, 0.5)
    assert ins.mask.shape == (48, 64) and int(ins.mask.sum()) == 256
    assert bool(ins.mask[:16, :16].all())
    assert ins.regions[0].op == "rotate" and ins.regions[0].anchor == (40.0, 24.0)
    assert int(ins.regions[0].mask.sum()) == 256 and bool(ins.regions[0].mask[16:32, 32:48].all())
    text = ins.to_json()
    again = parse_instructions(text)
    assert again == ins
    assert again.to_json() == text
    d = json.loads(text)
    assert d["drags"][0] == {"handle": [8, 8], "target": [40, 8], "mode": "drag", "scale": [1, 1]}
    assert "rle" in d["mask"]


def test_dict_input_and_passthrough():
    ins = parse_instructions(_doc())
    assert parse_instructions(ins) is ins
    assert ins.mask is None and ins.regions == []


def test_regions_only_is_valid():
    doc = _doc(drags=[], regions=[{
        "op": "relocate", "mask": {"rle": {"size": [48, 64], "counts": [100, 20, 48 * 64 - 120]}},
        "begin": [10, 2], "target": [30, 20], "anchor": None,
    }])
    ins = parse_instructions(doc)
    assert ins.drags == [] and len(ins.regions) == 1 and int(ins.regions[0].mask.sum()) == 20


# ---------------------------------------------------------------- validation errors


def _err(doc) -> str:
    with pytest.raises(ValueError) as ei:
        parse_instructions(doc)
    return str(ei.value)


def test_error_empty_drags():
    msg = _err(_doc(drags=[]))
    assert "no drags" in msg and '"handle"' in msg


def test_handle_equal_to_target_is_an_anchor():
    d = _doc()
    d["drags"][1] = {"handle": [10, 10], "target": [10, 10]}
    ins = parse_instructions(d)
    assert ins.drags[1].mode == "anchor" and ins.drags[1].target == (10.0, 10.0)
    assert ins.drags[0].mode != "anchor"
    assert parse_instructions(ins.to_json()) == ins  # written back as "mode": "anchor"
    assert json.loads(ins.to_json())["drags"][1]["mode"] == "anchor"


def test_explicit_anchor_needs_no_target_and_refuses_another_one():
    d = _doc()
    d["drags"].append({"handle": [20, 30], "mode": "anchor"})
    ins = parse_instructions(d)
    assert ins.drags[-1] == Drag((20.0, 30.0), (20.0, 30.0), "anchor")
    d["drags"][-1]["target"] = [25, 30]
    msg = _err(d)
    assert f"drags[{len(d['drags']) - 1}]" in msg and "anchor" in msg and "leave out" in msg


def test_only_anchors_is_refused():
    d = _doc()
    d["drags"] = [{"handle": [10, 10], "target": [10, 10]}, {"handle": [5, 5], "mode": "anchor"}]
    msg = _err(d)
    assert "only anchors" in msg and "2 fixed point" in msg and "drag at least one" in msg


def test_scale_in_place_move_is_allowed():
    d = _doc()
    d["drags"][1] = {"handle": [10, 10], "target": [10, 10], "mode": "move", "scale": [2, 2]}
    assert parse_instructions(d).drags[1].scale == (2.0, 2.0)


@pytest.mark.parametrize("point", [[65, 8], [-1, 8], [8, 48.5]])
def test_error_point_outside_image(point):
    d = _doc()
    d["drags"][1]["target"] = point
    msg = _err(d)
    assert "drags[1].target" in msg and "outside the 64x48 image" in msg and "move the point" in msg


def test_points_on_the_border_are_inside():
    d = _doc()
    d["drags"][0]["target"] = [64, 48]
    assert parse_instructions(d).drags[0].target == (64.0, 48.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_error_nan_inf(bad):
    d = _doc()
    d["drags"][0]["handle"] = [bad, 3]
    msg = _err(d)
    assert "drags[0].handle" in msg and "NaN or infinity" in msg


def test_error_nan_in_json_text():
    text = (
        '{"version": 1, "image_size": [64, 48], '
        '"drags": [{"handle": [NaN, 1], "target": [2, 2]}]}'
    )
    assert "drags[0].handle" in _err(text)


def test_error_mask_size():
    rle = {"size": [32, 64], "counts": [32 * 64]}
    msg = _err(_doc(mask={"rle": rle}))
    assert "mask is 64x32" in msg and "image_size is 64x48" in msg


def test_error_unknown_mode():
    d = _doc()
    d["drags"][1]["mode"] = "rotate"
    msg = _err(d)
    assert "drags[1]" in msg and "'rotate'" in msg and '"drag"' in msg and '"move"' in msg


def test_error_version_missing_and_unsupported():
    d = _doc()
    del d["version"]
    assert 'no "version"' in _err(d) and '"version": 1' in _err(d)
    assert "version 2 is not supported" in _err(_doc(version=2))


@pytest.mark.parametrize("scale", [[0, 1], [1, -2]])
def test_error_scale_not_positive(scale):
    d = _doc()
    d["drags"][1]["scale"] = scale
    msg = _err(d)
    assert "drags[1].scale" in msg and "positive" in msg and "[1, 1]" in msg


def test_error_bad_json_and_missing_fields():
    assert "not valid JSON" in _err("{nope")
    d = _doc()
    del d["drags"][0]["target"]
    assert 'drags[0] has no "target"' in _err(d)
    assert '"image_size"' in _err({"version": 1, "drags": []})


def test_error_bad_rle_counts():
    msg = _err(_doc(mask={"rle": {"size": [48, 64], "counts": [5, 5]}}))
    assert "sum to 10" in msg


def test_error_region_unknown_op():
    doc = _doc(regions=[{"op": "shear", "mask": {"rle": {"size": [48, 64], "counts": [3072]}},
                         "begin": [1, 1], "target": [2, 2]}])
    msg = _err(doc)
    assert "regions[0]" in msg and "'shear'" in msg


# ---------------------------------------------------------------- masks


def test_rasterize_polygons_even_odd_at_pixel_centres():
    # triangle (0,0) (4,0) (0,4): pixel (i, j) centre (j+.5, i+.5) inside iff x + y < 4
    tri = rasterize_polygons([[[0, 0], [4, 0], [0, 4]]], 5, 5)
    expect = torch.tensor([[(j + 0.5) + (i + 0.5) < 4 for j in range(5)] for i in range(5)])
    assert torch.equal(tri, expect)
    assert int(tri.sum()) == 6
    # a self-overlapping ring drawn twice cancels under even-odd; two polygons are united
    square = [[1, 1], [3, 1], [3, 3], [1, 3]]
    twice = rasterize_polygons([square + square], 4, 4)
    assert int(twice.sum()) == 0
    union = rasterize_polygons([square, [[0, 0], [2, 0], [2, 2], [0, 2]]], 4, 4)
    assert int(union.sum()) == 4 + 4 - 1


def test_rle_round_trip_and_layout():
    m = torch.tensor([[1, 1, 0], [0, 1, 1]], dtype=torch.bool)
    rle = rle_encode(m)
    assert rle == {"size": [2, 3], "counts": [0, 2, 2, 2]}  # starts with an empty 0-run
    assert torch.equal(rle_decode(rle), m)
    m2 = torch.rand(17, 23, generator=torch.Generator().manual_seed(0)) > 0.5
    assert torch.equal(rle_decode(rle_encode(m2)), m2)
    assert rle_encode(torch.zeros(2, 2, dtype=torch.bool))["counts"] == [4]


def test_from_mask_and_points():
    mask = torch.zeros(1, 48, 64)
    mask[0, 10:20, 5:30] = 1.0
    ins = from_mask_and_points(
        mask, [[8, 12], [20, 15]], [[30, 12], [20, 40]], mode=["drag", "move"]
    )
    assert ins.image_size == (64, 48)
    assert ins.mask.dtype == torch.bool and int(ins.mask.sum()) == 250
    assert [d.mode for d in ins.drags] == ["drag", "move"]
    assert parse_instructions(ins.to_json()) == ins
    with pytest.raises(ValueError, match="2 handles but 1 targets"):
        from_mask_and_points(None, [[1, 1], [2, 2]], [[3, 3]], (64, 48))
    with pytest.raises(ValueError, match="only anchors"):
        from_mask_and_points(None, [[1, 1]], [[1, 1]], (64, 48))
    both = from_mask_and_points(None, [[1, 1], [5, 5]], [[1, 1], [9, 9]], (64, 48))
    assert [d.mode for d in both.drags] == ["anchor", "drag"]


def test_rescale_proportional():
    ins = parse_instructions(_doc(mask={"polygons": [[[0, 0], [32, 0], [32, 24], [0, 24]]]}))
    big = rescale(ins, (128, 96))
    assert big is not ins and big.image_size == (128, 96)
    assert big.drags[0].handle == (16.0, 16.0) and big.drags[0].target == (80.0, 16.0)
    assert big.drags[1].scale == (1.5, 0.5)  # relative factor unchanged
    assert int(big.mask.sum()) == 4 * int(ins.mask.sum())
    assert bool(big.mask[:48, :64].all()) and not bool(big.mask[48:].any())
    assert ins.image_size == (64, 48)  # original untouched


# ---------------------------------------------------------------- pixel -> token


def test_token_grid_shapes():
    assert token_grid_shape(512, 512) == (32, 32)
    assert token_grid_shape(768, 512) == (32, 48)  # (h_tok, w_tok)
    assert token_grid_shape(528, 400) == (25, 33)  # odd token counts are fine


@pytest.mark.parametrize("size", [(520, 400), (512, 500)])
def test_not_multiple_of_16_is_refused(size):
    with pytest.raises(ValueError) as ei:
        token_grid_shape(*size)
    msg = str(ei.value)
    assert f"{size[0]}x{size[1]}" in msg and "multiple of 16" in msg
    assert "Crop to" in msg and "resize to" in msg
    with pytest.raises(ValueError, match="multiple of 16"):
        pixel_to_token([8, 8], size)


def test_pixel_to_token_values():
    assert pixel_to_token([8, 8], (512, 512)).tolist() == [0.0, 0.0]
    assert pixel_to_token([0, 0], (512, 512)).tolist() == [-0.5, -0.5]
    assert pixel_to_token([[256, 100], [512, 512]], (512, 512)).tolist() == [
        [15.5, 5.75], [31.5, 31.5]
    ]
    # x uses the width axis, y the height axis on non-square images
    assert pixel_to_token([760, 504], (768, 512)).tolist() == [47.0, 31.0]
    assert pixel_to_token([520, 392], (528, 400)).tolist() == [32.0, 24.0]
    assert token_to_pixel([32.0, 24.0]).tolist() == [520.0, 392.0]


def test_pixel_mask_to_token_mask():
    m = torch.zeros(32, 48, dtype=torch.bool)
    m[0, 0] = True  # one pixel of token (0, 0)
    m[16:32, 16:25] = True  # 9 columns of token (1, 1): 144 px > 128
    m[16:32, 32:40] = True  # 8 columns of token (1, 2): exactly half
    anyv = pixel_mask_to_token_mask(m, "any")
    maj = pixel_mask_to_token_mask(m, "majority")
    assert anyv.shape == (2, 3)
    assert anyv.tolist() == [[True, False, False], [False, True, True]]
    assert maj.tolist() == [[False, False, False], [False, True, False]]


def test_to_token_space_rectangular():
    doc = {"version": 1, "image_size": [768, 512], "drags": [
        {"handle": [24, 40], "target": [760, 504], "mode": "move", "scale": [2, 1]}],
        "mask": {"polygons": [[[16, 32], [48, 32], [48, 48], [16, 48]]]}}
    td = to_token_space(doc, (512, 768))
    assert td.grid_hw == (32, 48) and td.image_hw == (512, 768)
    assert td.handles.tolist() == [[1.0, 2.0]] and td.targets.tolist() == [[47.0, 31.0]]
    assert td.modes == ["move"] and td.scales.tolist() == [[2.0, 1.0]]
    assert td.mask.shape == (32, 48)
    assert torch.nonzero(td.mask).tolist() == [[2, 1], [2, 2]]  # (row, col)


def test_to_token_space_size_mismatch():
    doc = {"version": 1, "image_size": [384, 256],
           "drags": [{"handle": [12, 20], "target": [380, 252]}]}
    with pytest.warns(UserWarning, match="rescaling"):
        td = to_token_space(doc, (512, 768))
    assert td.handles.tolist() == [[1.0, 2.0]] and td.targets.tolist() == [[47.0, 31.0]]
    with pytest.raises(ValueError, match="drawn on a 384x256 image"):
        to_token_space(doc, (512, 768), on_size_mismatch="error")
    with pytest.raises(ValueError, match="520x512"):
        to_token_space(doc, (512, 520))


def test_to_token_space_snap():
    doc = {"version": 1, "image_size": [64, 64], "drags": [{"handle": [13, 3], "target": [40, 40]}]}
    td = to_token_space(doc, (64, 64), snap=True)
    assert td.handles.tolist() == [[0.0, 0.0]]  # 13/16-.5 = .3125 -> 0, 3/16-.5 -> 0
    assert td.targets.tolist() == [[2.0, 2.0]]  # 2.0 exactly
    assert math.isclose(to_token_space(doc, (64, 64)).handles[0, 0].item(), 0.3125)


def test_dataclass_validates_directly():
    with pytest.raises(ValueError, match=r"drags\[0\]"):
        DragInstructions((64, 64), [Drag((1, 1), (100, 1))])
    with pytest.raises(ValueError, match="only anchors"):
        DragInstructions((64, 64), [Drag((1, 1), (1, 1))])


def test_angle_on_move_drag_round_trips_and_is_validated():
    from fluxdrag.core.instructions import parse_instructions, to_token_space
    doc = {"version": 1, "image_size": [64, 64],
           "drags": [{"handle": [20, 20], "target": [40, 20], "mode": "move", "angle": 30},
                     {"handle": [10, 10], "target": [12, 10]}]}
    ins = parse_instructions(doc)
    assert ins.drags[0].angle == 30.0 and ins.drags[1].angle == 0.0
    out = ins.to_dict()
    assert out["drags"][0]["angle"] == 30 and "angle" not in out["drags"][1]
    assert parse_instructions(ins.to_json()) == ins
    assert to_token_space(ins, (64, 64)).angles.tolist() == [30.0, 0.0]
    # rotation in place is an edit; an angle on an elastic drag is refused
    parse_instructions({"version": 1, "image_size": [64, 64],
                        "drags": [{"handle": [20, 20], "target": [20, 20], "mode": "move", "angle": 90}]})
    with pytest.raises(ValueError, match="needs \"mode\": \"move\""):
        parse_instructions({"version": 1, "image_size": [64, 64],
                            "drags": [{"handle": [20, 20], "target": [30, 20], "angle": 10}]})
    with pytest.raises(ValueError, match="angle"):
        parse_instructions({"version": 1, "image_size": [64, 64],
                            "drags": [{"handle": [20, 20], "target": [30, 20], "mode": "move", "angle": "x"}]})


def test_depth_per_drag_and_region_round_trips_and_is_validated():
    """The per-drag depth intent (auto | front | behind): parsed, written only when not "auto",
    kept by rescale and by to_token_space, carried onto regions built from drags; a bad value is
    refused with the drag's index, the value and the allowed values; an anchor refuses it."""
    from fluxdrag.core.drag_sets import regions_from_drags, split_drags

    mask = {"polygons": [[[4, 4], [28, 4], [28, 28], [4, 28]]]}
    doc = {"version": 1, "image_size": [64, 64], "mask": mask,
           "drags": [{"handle": [10, 10], "target": [40, 10], "mode": "move", "depth": "behind"},
                     {"handle": [20, 20], "target": [30, 40], "depth": "front"},
                     {"handle": [5, 50], "target": [9, 50], "depth": "auto"}],
           "regions": [{"op": "relocate", "mask": mask, "begin": [10, 10], "target": [40, 10],
                        "depth": "behind"},
                       {"op": "relocate", "mask": mask, "begin": [10, 10], "target": [40, 30]}]}
    ins = parse_instructions(doc)
    assert [d.depth for d in ins.drags] == ["behind", "front", "auto"]
    assert [r.depth for r in ins.regions] == ["behind", "auto"]
    out = ins.to_dict()
    assert [d.get("depth") for d in out["drags"]] == ["behind", "front", None]
    assert [r.get("depth") for r in out["regions"]] == ["behind", None]
    back = parse_instructions(ins.to_json())
    assert back == ins and [d.depth for d in back.drags] == ["behind", "front", "auto"]
    assert back != parse_instructions({**doc, "regions": doc["regions"][1:] * 2})
    assert [d.depth for d in rescale(ins, (128, 128)).drags] == ["behind", "front", "auto"]
    assert to_token_space(ins, (64, 64)).depths == ["behind", "front", "auto"]
    pts = parse_instructions({**doc, "regions": []})
    regs = regions_from_drags(split_drags(pts, 4.0, "DragFlow"))
    assert [r.depth for r in regs] == ["behind", "front", "auto"]
    # a document without depth reads and writes as before
    plain = parse_instructions(_doc())
    assert all(d.depth == "auto" for d in plain.drags)
    assert all("depth" not in d for d in json.loads(plain.to_json())["drags"])
    for bad in ("under", "BEHIND", 1, True, ["behind"]):
        with pytest.raises(ValueError, match=r"drags\[1\]\.depth .*'auto', 'front', 'behind'") as e:
            parse_instructions({**doc, "drags": [doc["drags"][0], {**doc["drags"][1], "depth": bad}]})
        assert repr(bad) in str(e.value)
    with pytest.raises(ValueError, match=r"regions\[0\]\.depth is 'over'"):
        parse_instructions({**doc, "regions": [{**doc["regions"][0], "depth": "over"}]})
    with pytest.raises(ValueError, match=r"drags\[0\]\.depth"):
        DragInstructions((64, 64), [Drag((1, 1), (30, 1), depth="under")])
    with pytest.raises(ValueError, match=r"drags\[1\]: an anchor does not move"):
        parse_instructions({**doc, "drags": [doc["drags"][0], {"handle": [5, 5], "mode": "anchor",
                                                               "depth": "behind"}]})
    # a handle on its target is an anchor: the depth has nothing to place and goes with the move
    pinned = parse_instructions({**doc, "drags": [doc["drags"][0], {"handle": [5, 5], "target": [5, 5],
                                                                    "depth": "behind"}]})
    assert pinned.drags[1].mode == "anchor" and pinned.drags[1].depth == "auto"
