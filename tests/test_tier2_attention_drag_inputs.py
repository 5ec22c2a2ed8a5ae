"""AttentionDrag's reading of DRAG_INSTRUCTIONS: what it cannot do is reported, not silently dropped."""
import warnings

import pytest
from comfy_fixtures import comfy  # noqa: F401

pytestmark = pytest.mark.tier2  # pipelines import ComfyUI-facing modules


@pytest.fixture
def read_drags(comfy):  # noqa: F811
    from fluxdrag.pipelines.attention_drag import read_drags
    return read_drags

DOC = {"version": 1, "image_size": [64, 64]}


def test_rotation_and_scale_of_a_move_are_reported_as_ignored(read_drags):
    doc = dict(DOC, drags=[{"handle": [10, 10], "target": [40, 40]},
                           {"handle": [20, 20], "target": [50, 30], "mode": "move", "angle": 30}])
    with pytest.warns(UserWarning, match=r"drag\(s\) 1 carry a rotation or scale.*LazyDrag"):
        handles, targets, mask, anchors = read_drags(doc, (64, 64))
    assert handles == [(10.0, 10.0), (20.0, 20.0)] and targets == [(40.0, 40.0), (50.0, 30.0)]
    assert anchors == []


def test_plain_drags_read_without_warning(read_drags):
    doc = dict(DOC, drags=[{"handle": [10, 10], "target": [40, 40], "mode": "move"}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_drags(doc, (64, 64))


def test_anchors_and_short_drags_hold_their_content(read_drags):
    doc = dict(DOC, drags=[{"handle": [10, 10], "target": [40, 40]},
                           {"handle": [30, 30], "target": [30, 30]},      # an anchor
                           {"handle": [50, 50], "target": [52, 51]}])     # 2.2 px: too short
    with pytest.warns(UserWarning, match=r"drag 2 \(\(50, 50\) -> \(52, 51\)\) moves only 2.2 px.*anchor"):
        handles, targets, mask, anchors = read_drags(doc, (64, 64))
    assert handles == [(10.0, 10.0)] and targets == [(40.0, 40.0)]
    assert anchors == [(30.0, 30.0), (50.0, 50.0)]
