"""Tier 2, browser: an older UI workflow keeps its expert values (issue 25).

``tests/data/toy_attentiondrag_ui_before_issue25.json`` is the toy AttentionDrag workflow as the UI
saved it before the expert widgets moved to the Options nodes, with two of them changed (dilate 1,
inversion_guidance 2.5). Loaded into the real frontend (``tests/browser/legacy_driver.mjs``), the
main widgets keep their values, the two changed values land on an added "FluxDrag AttentionDrag
Options" node connected to the node's ``options`` input (the values still at today's defaults are
not copied), the console names the node and the values, and the prompt the Run button queues
carries them.
"""
from __future__ import annotations

import json

import pytest
import workflow_tools as wt
from test_tier2_browser_editor import BROWSER_DIR, CHROMIUM, SETTINGS, _missing, run_driver

pytest_plugins = ["comfy_server"]
pytestmark = [pytest.mark.tier2,
              pytest.mark.skipif(_missing() is not None, reason=f"browser test skipped: {_missing()}")]

DRIVER = BROWSER_DIR / "legacy_driver.mjs"
OLD_UI = wt.ROOT / "tests" / "data" / "toy_attentiondrag_ui_before_issue25.json"


def test_old_ui_workflow_puts_its_expert_values_on_an_options_node(comfy_server, tmp_path):
    status, body = comfy_server.request("POST", "/settings", json.dumps(SETTINGS).encode())
    assert status == 200, body
    cfg = {"baseUrl": comfy_server.base_url, "chromium": CHROMIUM, "userDataDir": str(tmp_path / "profile"),
           "workflow": str(OLD_UI), "node": "FluxDragAttentionDrag", "timeoutMs": 90000}
    r = run_driver(DRIVER, cfg, tmp_path, timeout=300)
    assert not r["consoleErrors"], r["consoleErrors"]
    # the main widgets as saved
    assert r["widgets"]["steps"] == 28 and r["widgets"]["strength"] == 0.7 and r["widgets"]["layer"] == "auto"
    assert r["widgets"]["tau"] == 2.0
    # the changed expert values on the added options node, connected; the unchanged ones at defaults
    opts = r["options"]
    assert opts and opts["type"] == "FluxDragAttentionDragOptions", opts
    assert opts["widgets"]["dilate"] == 1 and opts["widgets"]["inversion_guidance"] == 2.5, opts
    assert opts["widgets"]["preset"] == "custom"
    assert any("AttentionDrag" in w and "inversion_guidance = 2.5" in w and "dilate = 1" in w
               and "FluxDrag AttentionDrag Options" in w for w in r["warnings"]), r["warnings"]
    # what the Run button queues: the options node feeds the AttentionDrag node with those values
    prompt = r["prompt"]
    node = prompt[r["nodeId"]]
    src = prompt[node["inputs"]["options"][0]]
    assert src["class_type"] == "FluxDragAttentionDragOptions"
    assert src["inputs"]["dilate"] == 1 and src["inputs"]["inversion_guidance"] == 2.5
