"""Tier 1: pure-torch preview drawing (region tint, arrows)."""
from __future__ import annotations

import pytest
import torch

from fluxdrag.core.correspondence import build_correspondence
from fluxdrag.core.instructions import to_token_space
from fluxdrag.core.preview import REGION_COLORS, draw_arrows, draw_map_preview


def test_arrow_pixels_on_segment_and_far_pixels_untouched():
    img = torch.zeros(64, 96, 3)
    out = draw_arrows(img, [[8, 32]], [[88, 32]], color=(0.0, 1.0, 0.0), width=2, numbers=False,
                      handle_color=None, target_color=None)
    # width 2 around y = 32: pixel rows 31 and 32 (centres 31.5, 32.5) on the shaft
    assert out[32, 40].tolist() == [0.0, 1.0, 0.0]
    assert out[31, 40].tolist() == [0.0, 1.0, 0.0]
    assert out[33, 40].tolist() == [0.0, 0.0, 0.0] and out[30, 40].tolist() == [0.0, 0.0, 0.0]
    # the head is wider than the shaft just before the tip
    assert out[33, 84].tolist() == [0.0, 1.0, 0.0]
    # far pixels are untouched, the input is not modified
    assert torch.equal(out[:20], img[:20]) and torch.equal(out[50:], img[50:])
    assert out[32, 2].tolist() == [0.0, 0.0, 0.0] and out[32, 94].tolist() == [0.0, 0.0, 0.0]
    assert float(img.abs().sum()) == 0.0


def test_diagonal_arrow_handle_dot_and_number():
    img = torch.ones(80, 80, 3)
    out = draw_arrows(img, [[10, 10]], [[70, 70]], color=(0.0, 0.0, 1.0), width=2,
                      handle_color=(1.0, 0.0, 0.0), target_color=None, numbers=True)
    assert out[40, 40].tolist() == [0.0, 0.0, 1.0]  # (40.5, 40.5) lies on y = x
    assert out[10, 10].tolist() == [1.0, 0.0, 0.0]  # handle dot
    assert out[70, 10].tolist() == [1.0, 1.0, 1.0]  # far corner untouched
    assert (out != 1.0).any(-1)[:6, 15:24].any()  # the digit "1" above-right of the handle


def test_batch_and_per_arrow_colours():
    img = torch.zeros(2, 32, 32, 3)
    out = draw_arrows(img, [[2, 8], [2, 24]], [[30, 8], [30, 24]],
                      color=[(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)], width=2, numbers=False,
                      handle_color=None, target_color=None)
    assert out.shape == (2, 32, 32, 3)
    assert out[1, 8, 12].tolist() == [1.0, 0.0, 0.0] and out[1, 24, 12].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="2 handles but 1 targets"):
        draw_arrows(img[0], [[1, 1], [2, 2]], [[3, 3]])


def _cmap():
    doc = {"version": 1, "image_size": [128, 96], "drags": [
        {"handle": [24, 24], "target": [88, 24], "mode": "move"}],
        "mask": {"polygons": [[[16, 16], [32, 16], [32, 32], [16, 32]]]}}
    return build_correspondence(to_token_space(doc, (96, 128)))  # grid 6 x 8


def test_map_preview_colours_regions():
    cm = _cmap()
    # token (1,1) -> (1,5): inpaint (1,1), destination (1,5), rings around both
    assert bool(cm.inpaint[1, 1]) and bool(cm.destination[1, 5]) and bool(cm.transition[0, 0])
    img = torch.full((96, 128, 3), 0.2)
    out = draw_map_preview(img, cm, (6, 8), (96, 128), arrows=False)
    a = 0.45

    def tint(c):
        return [0.55 * 0.2 + a * v for v in c]

    assert out[1 * 16 + 8, 5 * 16 + 8].tolist() == pytest.approx(tint(REGION_COLORS["destination"]))
    assert out[1 * 16 + 8, 1 * 16 + 8].tolist() == pytest.approx(tint(REGION_COLORS["inpaint"]))
    assert out[0 * 16 + 3, 0 * 16 + 3].tolist() == pytest.approx(tint(REGION_COLORS["transition"]))
    assert out[5 * 16 + 8, 7 * 16 + 8].tolist() == pytest.approx([0.2, 0.2, 0.2])  # background
    bg = cm.background.repeat_interleave(16, 0).repeat_interleave(16, 1)
    assert torch.equal(out[bg], img[bg])
    assert torch.equal(img, torch.full((96, 128, 3), 0.2))


def test_map_preview_without_image_draws_arrow():
    cm = _cmap()
    out = draw_map_preview(None, cm, arrows=True)
    assert out.shape == (96, 128, 3)
    plain = draw_map_preview(None, cm, arrows=False)
    # the arrow runs from token (1,1) centre (24, 24) to (1,5) centre (88, 24) in pixels
    assert not torch.equal(out[24, 56], plain[24, 56])
    assert torch.equal(out[80:], plain[80:])
    with pytest.raises(ValueError, match="grid_hw"):
        draw_map_preview(None, cm, (4, 4))
