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
        handles, targets, mask = read_drags(doc, (64, 64))
    assert handles == [(10.0, 10.0), (20.0, 20.0)] and targets == [(40.0, 40.0), (50.0, 30.0)]


def test_plain_drags_read_without_warning(read_drags):
    doc = dict(DOC, drags=[{"handle": [10, 10], "target": [40, 40], "mode": "move"}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_drags(doc, (64, 64))
