"""Tier 2, real server: the shipped ContextDrag (FLUX Kontext) workflow over HTTP with tiny loaders.

The graph runs as shipped except the weight loaders (tiny stand-ins: ComfyUI 0.8.0 loads
FLUX.1 Kontext [dev] with the plain FLUX.1 config, so the tiny FLUX is a Kontext model once the
ReferenceLatent conditioning is there) and the step count. FluxKontextImageScale turns the
256² example into 1024², so the tiny model samples 64x64 image + 64x64 reference tokens.
"""
from __future__ import annotations

import pytest
import workflow_tools as wt

from tools.comfy_server import ServerError

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

API = wt.API_WORKFLOWS / "contextdrag_kontext_api.json"



def _prompt(steps: int = 2) -> dict:
    api = wt.swap_loaders(wt.load_api(API))
    return wt.set_input(api, "Sample", "steps", steps)


def test_contextdrag_workflow_runs_over_http(comfy_server):
    api = _prompt()
    assert wt.node_by_title(api, "Load FLUX Kontext model")[1]["inputs"]["unet_name"] == \
        "flux1-kontext-dev.safetensors"
    entry = comfy_server.run(api, timeout=300)
    ids = {t: wt.node_by_title(api, t)[0] for t in ("Save edited", "Save map preview")}
    for nid in ids.values():
        assert entry["outputs"][nid]["images"], entry["outputs"]
    by_node = {nid: comfy_server.output_files({"outputs": {nid: entry["outputs"][nid]}})[0]
               for nid in ids.values()}
    edited = wt.load_png(by_node[ids["Save edited"]])
    assert edited.shape == (1024, 1024, 3) and edited.std() > 1.0  # Kontext-scaled size
    prev = wt.load_png(by_node[ids["Save map preview"]])
    assert prev.shape == (1024, 1024, 3)
    # the sun (204, 46) moves to (124, 46) in the 256² drawing: x4 after FluxKontextImageScale
    green = (prev[..., 1] > prev[..., 0] + 40) & (prev[..., 1] > prev[..., 2] + 40)
    red = (prev[..., 0] > prev[..., 1] + 40) & (prev[..., 0] > prev[..., 2] + 40)
    assert green[100:130, 420:450].mean() > 0.9 and red[100:130, 850:880].mean() > 0.9


def test_contextdrag_without_reference_latent_fails_clearly(comfy_server):
    api = _prompt(steps=1)
    ref_id, ref = wt.node_by_title(api, "Reference latent")
    guidance = wt.node_by_title(api, "Guidance")[1]
    guidance["inputs"]["conditioning"] = ref["inputs"]["conditioning"]  # bypass ReferenceLatent
    del api[ref_id]
    with pytest.raises(ServerError, match="ReferenceLatent"):
        comfy_server.run(api, timeout=300)
