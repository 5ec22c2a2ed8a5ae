"""Tier 2, real server: the shipped toy workflows (bundled toy FLUX model, no download), one per
method, run over HTTP as shipped except for fewer steps; each saves the scene's source, its ground
truth, the result and (for the drag methods) the method's preview. Their UI twins keep the scene's
seed fixed, so a second run from the UI shows the same scene.

The result is measured against the scene's ground truth with the benchmark's own metrics
(``bench/toybench/metrics.py``, on the result's latent, saved by a SaveLatent the test adds): a
drag workflow must move the object (MD below ``MD_SHARE`` of the do-nothing edit's MD — the
regression tests' rule) without ruining the background (``BG_MAX``); the reconstruction must
leave the object where it is. A do-nothing result fails every drag workflow's check
(``test_do_nothing_fails_the_workflow_checks``).
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
    "toy_attentiondrag": [],   # as shipped (28 steps): at 4 the toy model loses the scene (bg 1.7)
    # 8 steps: at 4 (skip 1) DragFlow loses the object on 8 of 10 `single` moves (scene seeds 1-10, either hole
    # fill; seed 3, this workflow's, passed by luck until the continued hole fill); at 8 (skip 2) 9 of 10 land
    "toy_dragflow": [("DragFlow", "steps", 8), ("DragFlow", "skip_steps", 2),
                     ("DragFlow options", "n_transport", 2), ("DragFlow options", "n_intensify", 1)],
    "toy_contextdrag": [("Sample", "steps", 4)],   # the toy Kontext through ComfyUI's ReferenceLatent
}
SAVES = {"source", "truth", "edit", "preview"}
MD_SHARE = 0.6    # as in test_tier2_toyworld_regression.py: an edit must beat no_edit's MD by this
BG_MAX = 0.3      # RMS (model-space latent units; objects are 2.0): no_edit's is 0, a ruined one ~1
RECON_MD = 0.5    # tokens the reconstruction may move the object


def _scene_of(api: dict):
    from fluxdrag.toyworld.scenes import make_scene
    [inp] = [n["inputs"] for n in api.values() if n["class_type"] == "FluxDragToyScene"]
    return make_scene(inp["seed"], inp["family"], inp["case"])


def _with_latent_save(api: dict, name: str) -> dict:
    """``api`` plus a SaveLatent of the latent the "edit" picture is decoded from."""
    [edit] = [n for n in api.values() if n["class_type"] == "SaveImage"
              and n["inputs"]["filename_prefix"].endswith("_edit")]
    decoder = api[edit["inputs"]["images"][0]]
    assert decoder["class_type"] == "FluxDragToyLatentToImage"
    api = dict(api)
    api["990"] = {"class_type": "SaveLatent",
                  "inputs": {"samples": decoder["inputs"]["latent"], "filename_prefix": f"{name}_latent"}}
    return api


def check_result(name: str, r: dict, base: dict) -> list[str]:
    """What the result's metrics ``r`` miss, given the do-nothing edit's ``base`` on the scene."""
    if name == "toy_invert_reconstruct":   # the source comes back: the object stays
        return [] if abs(r["md"] - base["md"]) < RECON_MD and r["bg_err"] < BG_MAX else \
            [f"reconstruction moved the object: md {r['md']:.2f} vs the source's {base['md']:.2f}, "
             f"bg {r['bg_err']:.3f}"]
    misses = []
    if not r["md"] < MD_SHARE * base["md"]:
        misses.append(f"md {r['md']:.2f} not < {MD_SHARE} x no_edit's {base['md']:.2f}")
    if not r["bg_err"] < BG_MAX:
        misses.append(f"bg_err {r['bg_err']:.3f} not < {BG_MAX}")
    return misses


@pytest.mark.parametrize("name", sorted(set(FAST) - {"toy_invert_reconstruct"}))
def test_do_nothing_fails_the_workflow_checks(name):
    from bench.toybench.metrics import edit_metrics
    scene = _scene_of(wt.load_api(wt.API_WORKFLOWS / f"{name}_api.json"))
    base = edit_metrics(scene, scene.latent)
    assert check_result(name, base, base)
    assert not check_result(name, edit_metrics(scene, scene.edited), base)   # the ground truth passes


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
    entry = comfy_server.run(_with_latent_save(api, name), timeout=600)
    files = {p.name.split("_")[-3]: p for p in comfy_server.output_files(entry)}
    expected = SAVES - ({"preview"} if name == "toy_invert_reconstruct" else set())
    assert set(files) == expected, files
    imgs = {k: wt.load_png(p) for k, p in files.items()}
    assert all(i.shape == (256, 256, 3) for i in imgs.values())
    assert np.abs(imgs["source"] - imgs["truth"]).mean() > 0.5  # the scene asks for an edit
    from safetensors.torch import load_file

    from bench.toybench.metrics import edit_metrics
    from fluxdrag.toyworld.model import comfy_to_scene_latent
    [lat] = comfy_server.output_files(entry, kind="latents")
    scene = _scene_of(api)
    r = edit_metrics(scene, comfy_to_scene_latent(load_file(str(lat))["latent_tensor"])[0].float())
    base = edit_metrics(scene, scene.latent)
    print(name, {k: v for k, v in r.items() if isinstance(v, float)})
    assert not check_result(name, r, base), check_result(name, r, base)
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
