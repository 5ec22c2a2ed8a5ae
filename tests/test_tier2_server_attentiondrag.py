"""Tier 2, real server: the shipped AttentionDrag workflows (SD1.5 and FLUX) over HTTP.

Weights are swapped for the test-only loaders (tests/comfy_test_nodes): UNETLoader /
DualCLIPLoader / VAELoader for FLUX, CheckpointLoaderSimple → a tiny SD1.x UNet + text stand-in +
4-channel VAE for SD1.5. Everything else runs as shipped, under the server's inference mode.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import workflow_tools as wt

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

WORKFLOWS = {"attentiondrag_sd15": "CheckpointLoaderSimple", "attentiondrag_flux": "UNETLoader"}



@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_attentiondrag_workflow_runs_over_http(comfy_server, name):
    shipped = wt.load_api(wt.API_WORKFLOWS / f"{name}_api.json")
    assert WORKFLOWS[name] in wt.node_types(shipped)
    api = wt.swap_loaders(shipped)
    assert WORKFLOWS[name] not in wt.node_types(api)
    api = wt.set_input(api, "AttentionDrag", "steps", 6)  # strength 0.7 → 4 steps each way
    entry = comfy_server.run(api, timeout=300)
    ids = {t: wt.node_by_title(api, t)[0] for t in ("Save edited", "Save attention preview")}
    for nid in ids.values():
        assert entry["outputs"][nid]["images"], entry["outputs"]
    edited_item = entry["outputs"][ids["Save edited"]]["images"][0]
    preview_item = entry["outputs"][ids["Save attention preview"]]["images"][0]
    edited = wt.load_png(comfy_server.output_dir / edited_item.get("subfolder", "") / edited_item["filename"])
    preview = wt.load_png(comfy_server.output_dir / preview_item.get("subfolder", "") / preview_item["filename"])
    assert edited.shape == (256, 256, 3) and edited.std() > 1.0
    assert preview.shape == (256, 256, 3)
    # the preview draws the mask outline in cyan somewhere near the sun (handle at (204, 46))
    cyan = (preview[..., 0] < 40) & (preview[..., 1] > 215) & (preview[..., 2] > 215)
    ys, xs = np.nonzero(cyan)
    assert len(xs) and np.abs(xs - 204).min() < 24 and np.abs(ys - 46).min() < 24


def test_attentiondrag_zero_length_drag_is_reported(comfy_server):
    api = wt.swap_loaders(wt.load_api(wt.API_WORKFLOWS / "attentiondrag_sd15_api.json"))
    api = wt.set_input(api, "AttentionDrag", "steps", 3)
    still = ('{"version": 1, "image_size": [256, 256], "drags": [{"handle": [204, 46], '
             '"target": [204, 46], "mode": "move", "scale": [1.5, 1.5]}]}')
    api = wt.set_input(copy.deepcopy(api), "Drag instructions", "drags_json", still)
    with pytest.raises(AssertionError) as e:  # ServerError is an AssertionError carrying the message
        comfy_server.run(api, timeout=120)
    msg = str(e.value)
    assert "FluxDragAttentionDrag" in msg or "FluxDrag AttentionDrag" in msg
    assert "drag_instructions" in msg and "zero length" in msg
