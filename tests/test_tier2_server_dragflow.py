"""Tier 2, real server: the shipped DragFlow workflow over HTTP with tiny loaders.

The graph runs as shipped except the weight loaders (tiny stand-ins) and the iteration/step
counts. This is where autograd meets the server: nodes execute under ``torch.inference_mode()``
and the tiny loader builds its weights there, so the optimisation only runs if the pack handles
inference tensors and ComfyUI's in-place FLUX blocks (fluxdrag/attention_patches/dragflow.py).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import workflow_tools as wt
from comfy_server import ServerError

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

API = wt.API_WORKFLOWS / "dragflow_flux_api.json"



def _prompt() -> dict:
    api = wt.swap_loaders(wt.load_api(API))
    for name, value in (("steps", 6), ("skip_steps", 2)):
        wt.set_input(api, "DragFlow", name, value)
    for name, value in (("n_transport", 3), ("n_intensify", 2)):
        wt.set_input(api, "DragFlow options", name, value)
    return api


def test_dragflow_workflow_runs_over_http(comfy_server):
    api = _prompt()
    entry = comfy_server.run(api, timeout=300)
    ids = {t: wt.node_by_title(api, t)[0] for t in ("Save edited", "Save region preview")}
    files = {}
    for title, nid in ids.items():
        assert entry["outputs"][nid]["images"], entry["outputs"]
        files[title] = comfy_server.output_files({"outputs": {nid: entry["outputs"][nid]}})[0]
    edited = wt.load_png(files["Save edited"])
    assert edited.shape == (256, 256, 3) and edited.std() > 1.0
    prev = wt.load_png(files["Save region preview"])
    assert prev.shape == (256, 256, 3)
    # the sun's box (176..232, 18..74) is tinted orange; its moved copy around (96, 40) is
    # tinted (green over the sky); the grass, outside the editable mask, is the source image
    src = wt.load_png(wt.EXAMPLE_INPUTS / "source.png")
    orange = (prev[..., 0] > prev[..., 2] + 60) & (prev[..., 0] > 150)
    assert orange[25:70, 185:225].mean() > 0.5
    moved = prev[20:60, 75:115] - src[20:60, 75:115]
    assert moved[..., 1].mean() > 20 and moved[..., 0].mean() < 0
    assert np.abs(prev[200:, :] - src[200:, :]).max() <= 1.0
    log = comfy_server.log()
    assert "DragFlow: 5 iterations, loss" in log


def test_dragflow_empty_region_mask_fails_clearly(comfy_server):
    api = copy.deepcopy(_prompt())
    wt.set_input(api, "Sun box", "value", 0.0)  # the region mask becomes all zero
    with pytest.raises(ServerError, match="input 'mask' is empty"):
        comfy_server.run(api, timeout=120)
