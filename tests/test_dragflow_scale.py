"""DragFlow's scaled relocate [ours]: a region relocated and scaled about its begin point (the paper's
three ops do not scale, so its toy-world scale / stretch scenes scored IoU 0.45 / 0.61), and a warped
mask that keeps its area (a one-pixel ring shrunk by 0.75 vanished)."""
import pytest
import torch

from fluxdrag.core.affine import Region, apply_affine, region_affine, warp_mask, warp_region
from fluxdrag.core.instructions import parse_instructions, rle_encode


def _doc(region: dict) -> dict:
    m = torch.zeros(64, 64, dtype=torch.bool)
    m[20:30, 20:30] = True
    return {"version": 1, "image_size": [64, 64], "drags": [],
            "regions": [{"op": "relocate", "mask": {"rle": rle_encode(m)}, "begin": [25, 25],
                         "target": [40, 40], **region}]}


def test_a_scaled_relocate_maps_begin_to_target_and_scales_about_begin():
    A = region_affine("relocate", (10, 10), (20, 30), scale=(0.5, 2.0))
    pts = apply_affine(A, torch.tensor([[10.0, 10.0], [12.0, 11.0]], dtype=torch.float64))
    assert torch.allclose(pts, torch.tensor([[20.0, 30.0], [21.0, 32.0]], dtype=torch.float64))
    half = region_affine("relocate", (10, 10), (20, 30), scale=(0.5, 2.0), progress=0.5)
    assert torch.allclose(half[:, :2], torch.tensor([[0.75, 0.0], [0.0, 1.5]], dtype=torch.float64))
    assert torch.equal(region_affine("relocate", (10, 10), (20, 30)), region_affine("relocate", (10, 10), (20, 30),
                                                                                   scale=(1.0, 1.0)))


def test_region_scale_round_trips_and_is_validated():
    ins = parse_instructions(_doc({"scale": [0.5, 0.75]}))
    assert tuple(ins.regions[0].scale) == (0.5, 0.75)
    assert ins.to_dict()["regions"][0]["scale"] == [0.5, 0.75]
    assert "scale" not in parse_instructions(_doc({})).to_dict()["regions"][0]
    with pytest.raises(ValueError, match=r"regions\[0\]\.scale"):
        parse_instructions(_doc({"scale": [0.0, 1.0]}))
    with pytest.raises(ValueError, match="cannot scale"):
        parse_instructions(_doc({"op": "rotate", "anchor": [10, 10], "scale": [0.5, 0.5]}))
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4:8, 4:8] = True
    with pytest.raises(ValueError, match="cannot scale"):
        Region(m, "rotate", target=(10, 6), begin=(6, 6), anchor=(5, 5), scale=(0.5, 0.5))


def test_a_move_drag_with_a_scale_becomes_a_scaled_relocate():
    from fluxdrag.core.drag_sets import regions_from_drags, split_drags

    doc = {"version": 1, "image_size": [64, 64],
           "drags": [{"handle": [20, 20], "target": [40, 30], "mode": "move", "scale": [0.6, 0.6]}]}
    regions = regions_from_drags(split_drags(parse_instructions(doc), 8.0, "DragFlow"))
    assert tuple(regions[0].scale) == (0.6, 0.6) and regions[0].op == "relocate"


def test_a_shrunk_one_pixel_ring_keeps_its_area():
    ring = torch.zeros(32, 32, dtype=torch.bool)
    ring[8:12, 17:21] = True
    ring[9:11, 18:20] = False                                        # a 4x4 ring, one pixel wide
    A = region_affine("relocate", (19.0, 10.0), (5.0, 12.0), scale=(0.747, 0.747))
    dst = warp_mask(ring, A)
    assert 4 <= int(dst.sum()) <= 12                                 # 12 × 0.56 ≈ 6.7 pixels wanted
    assert not bool(warp_mask(ring, A, threshold=0.5 + 1e-9).any())  # the plain ½ test: none
    z = torch.zeros(1, 2, 32, 32)
    z[0, 0][ring] = 3.0
    got, moved = warp_region(z, ring, A)
    assert torch.equal(got, dst) and bool((moved[0, 0][dst] > 2.9).all())   # ring content, no ground


def test_the_paper_preset_drops_the_scale():
    from fluxdrag.pipelines.dragflow_inputs import PAPER, DragFlowSettings, regions_for_latent

    assert DragFlowSettings().region_scale and not PAPER.region_scale
    doc = _doc({"scale": [0.5, 0.5]})
    assert regions_for_latent(doc, 64, 64)[1][0].scale == (0.5, 0.5)
    assert regions_for_latent(doc, 64, 64, scale=False)[1][0].scale == (1.0, 1.0)
