"""Tier 2 (ComfyUI in-process): the Drag Editor node parses the canvas JSON, rescales with a
warning, unites masks, and names the bad drag in its errors."""
import json
import logging

import pytest
import torch
from comfy_fixtures import comfy  # noqa: F401

pytestmark = pytest.mark.tier2


def _doc(size=(64, 32), drags=(((8, 8), (40, 8)),), mask=None):
    return json.dumps({"version": 1, "image_size": list(size),
                       "drags": [{"handle": list(h), "target": list(t)} for h, t in drags],
                       "mask": mask, "regions": []})


def _image(h=32, w=64):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(0))


def _run(image, drags, mask=None):
    from fluxdrag.nodes.editor import DragEditor

    return DragEditor.execute(image, drags, mask=mask)


def test_schema_matches_the_js_contract(comfy):  # noqa: F811
    from fluxdrag.nodes.editor import EMPTY_DOC, DragEditor

    s = DragEditor.define_schema()
    assert s.node_id == "FluxDragDragEditor"  # js/fluxdrag_editor.js NODE_ID
    names = {i.id: i for i in s.inputs}
    assert set(names) == {"image", "drags", "mask"}
    assert names["mask"].optional and not names["image"].optional
    assert names["drags"].default == EMPTY_DOC
    assert all(i.tooltip for i in s.inputs)
    assert [o.io_type for o in s.outputs] == ["DRAG_INSTRUCTIONS", "MASK", "IMAGE"]
    assert s.is_output_node  # its ui (the canvas image) is re-sent for cached runs too


def test_outputs_instructions_mask_preview_and_source_ui(comfy, tmp_path, monkeypatch):  # noqa: F811
    import folder_paths

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path))
    img = _image()
    poly = {"polygons": [[[0, 0], [16, 0], [16, 16], [0, 16]]]}
    out = _run(img, _doc(mask=poly))
    ins, mask, preview = out.args
    assert ins.image_size == (64, 32)
    assert [(d.handle, d.target) for d in ins.drags] == [((8.0, 8.0), (40.0, 8.0))]
    assert mask.shape == (1, 32, 64) and mask.dtype == torch.float32
    assert mask[0, :16, :16].all() and mask.sum() == 256  # the 16x16 square only
    assert preview.shape == (1, 32, 64, 3)
    assert not torch.equal(preview, img)  # arrows / mask tint drawn
    [ref] = out.ui["fluxdrag_image"]
    assert ref["type"] == "temp" and (tmp_path / ref["subfolder"] / ref["filename"]).is_file()


def test_no_mask_means_whole_image_and_mask_input_is_united(comfy, tmp_path, monkeypatch):  # noqa: F811
    import folder_paths

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path))
    _, mask, _ = _run(_image(), _doc()).args
    assert torch.equal(mask, torch.ones(1, 32, 64))
    m_in = torch.zeros(1, 32, 64)
    m_in[0, 20:, 50:] = 1.0
    poly = {"polygons": [[[0, 0], [16, 0], [16, 16], [0, 16]]]}
    ins, mask, _ = _run(_image(), _doc(mask=poly), mask=m_in).args
    assert mask.sum() == 256 + 12 * 14 and mask[0, 25, 55] == 1 and mask[0, 5, 5] == 1
    with pytest.raises(ValueError, match=r"input 'mask' is 10x10 but the image is 64x32"):
        _run(_image(), _doc(), mask=torch.ones(1, 10, 10))


def test_size_change_rescales_with_a_warning(comfy, tmp_path, monkeypatch, caplog):  # noqa: F811
    import folder_paths

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="FluxDrag"):
        ins, _, _ = _run(_image(64, 128), _doc(size=(64, 32))).args
    assert ins.image_size == (128, 64)
    assert [(d.handle, d.target) for d in ins.drags] == [((16.0, 16.0), (80.0, 16.0))]
    text = caplog.text
    assert "drawn on a 64x32 image but the image input is 128x64" in text
    assert "x*2, y*2" in text and "aspect ratio" not in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="FluxDrag"):
        _run(_image(32, 128), _doc(size=(64, 32)))
    assert "aspect ratio changed" in caplog.text


def test_errors_name_the_input_and_the_drag(comfy):  # noqa: F811
    from fluxdrag.nodes.common import FluxDragInputError
    from fluxdrag.nodes.editor import EMPTY_DOC

    for blank in (EMPTY_DOC, "", "{}"):
        with pytest.raises(FluxDragInputError, match=r"input 'drags': no drags drawn yet"):
            _run(_image(), blank)
    with pytest.raises(FluxDragInputError, match=r"input 'drags'.*drags\[1\]\.target .*outside"):
        _run(_image(), _doc(drags=(((8, 8), (40, 8)), ((8, 20), (99, 20)))))
    with pytest.raises(FluxDragInputError, match=r"not valid JSON"):
        _run(_image(), '{"version": 1,')
