"""Tier 2, real server: the shipped toy workflows (bundled toy FLUX model, no download), one per
method, run over HTTP as shipped except for fewer steps; each saves the scene's source, its ground
truth, the result and (for the drag methods) the method's preview. Their UI twins keep the scene's
seed fixed, so a second run from the UI shows the same scene.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import workflow_tools as wt

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

# workflow -> (node title, input, value) that shorten the run; everything else as shipped
FAST = {
    "toy_invert_reconstruct": [],  # the toy model reconstructs well only with many steps (28)
    "toy_lazydrag": [("Invert (Uni-Inv, caches for the map)", "steps", 4)],
    "toy_attentiondrag": [("AttentionDrag", "steps", 4)],
    "toy_dragflow": [("DragFlow", "steps", 4), ("DragFlow", "skip_steps", 1),
                     ("DragFlow options", "n_transport", 2), ("DragFlow options", "n_intensify", 1)],
    "toy_contextdrag": [("Sample", "steps", 4)],   # the toy Kontext through ComfyUI's ReferenceLatent
}
SAVES = {"source", "truth", "edit", "preview"}


def test_one_toy_workflow_per_method():
    shipped = {p.name[:-len("_api.json")] for p in wt.api_workflows() if p.name.startswith("toy_")}
    assert shipped == set(FAST)


@pytest.mark.parametrize("name", sorted(FAST))
def test_toy_workflow_runs(comfy_server, name):
    api = wt.load_api(wt.API_WORKFLOWS / f"{name}_api.json")
    assert "FluxDragToyModelLoader" in wt.node_types(api)
    if name == "toy_contextdrag":  # stock Kontext plumbing around the pack's three nodes
        assert {"ReferenceLatent", "FluxDragReverseMapping", "FluxDragContextTokenInjection",
                "FluxDragPositionConsistentAttention"} <= wt.node_types(api)
    assert not wt.node_types(api) & set(wt.LOADER_SWAP)  # nothing to download
    for title, inp, value in FAST[name]:
        api = wt.set_input(api, title, inp, value)
    entry = comfy_server.run(api, timeout=600)
    files = {p.name.split("_")[-3]: p for p in comfy_server.output_files(entry)}
    expected = SAVES - ({"preview"} if name == "toy_invert_reconstruct" else set())
    assert set(files) == expected, files
    imgs = {k: wt.load_png(p) for k, p in files.items()}
    assert all(i.shape == (256, 256, 3) and i.std() > 1.0 for i in imgs.values())
    assert np.abs(imgs["source"] - imgs["truth"]).mean() > 0.5  # the scene asks for an edit
    if name == "toy_invert_reconstruct":  # no edit: the source comes back
        # measured: 2.0/255 at the toy model's guidance, 3.2 at the node default 1.0, ~45 at
        # 8 steps; the edit the other workflows aim at changes the picture by 3.8
        assert np.abs(imgs["edit"] - imgs["source"]).mean() < 2.6
    else:
        assert np.abs(imgs["preview"] - imgs["source"]).mean() > 0.5  # something drawn on it


@pytest.mark.parametrize("name", sorted(FAST))
def test_toy_ui_twin_has_fixed_seeds(name):
    ui = json.loads(wt.ui_twin(wt.API_WORKFLOWS / f"{name}_api.json").read_text())
    [scene] = [n for n in ui["nodes"] if n["type"] == "FluxDragToyScene"]
    seed, control, *_ = scene["widgets_values"]
    api_scene = next(n for n in wt.load_api(wt.API_WORKFLOWS / f"{name}_api.json").values()
                     if n["class_type"] == "FluxDragToyScene")
    assert seed == api_scene["inputs"]["seed"] and control == "fixed"
    for n in ui["nodes"]:  # any other seed widget (Correspondence Map's) is fixed too
        if n["type"] == "FluxDragCorrespondenceMap":
            assert "fixed" in n["widgets_values"] and "randomize" not in n["widgets_values"]
