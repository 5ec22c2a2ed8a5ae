"""Tier 2, browser: the pack's templates in the real ComfyUI frontend, in headless Chromium.

``tests/browser/templates_driver.mjs`` (playwright-core, system Chromium) opens every shipped
workflow from ComfyUI's template browser as a user would, records what the page shows, draws on
each Drag Editor straight away, and queues the toy LazyDrag template from the UI. The checks:
every template opens with no dialog, console error or failed request and shows its thumbnail;
its LoadImage shows the example picture; no node overlaps another; the editor shows its picture
before any run at >= 384 px on screen at 100 % zoom and takes a drag on the first try, also
through another node's text box lying over its canvas; the toy LazyDrag run finishes and its Save
Image nodes show pictures.

The screenshots (template list, editor before a run) are written to docs/ only when
FLUXDRAG_UPDATE_DOCS=1 (or when missing), so a normal run leaves the checkout untouched.

Needs Node.js, Chromium and ``npm ci --prefix tests/browser``; without them the test is skipped
with one line saying which is missing (under CI=true conftest turns that skip into a failure).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import workflow_tools as wt
from test_tier2_browser_editor import BROWSER_DIR, CHROMIUM, SETTINGS, _missing, run_driver

pytest_plugins = ["comfy_server"]
pytestmark = [pytest.mark.tier2,
              pytest.mark.skipif(_missing() is not None,
                                 reason=f"browser test skipped: {_missing()}")]

DRIVER = BROWSER_DIR / "templates_driver.mjs"
DOCS = wt.ROOT / "docs"
TOY = "toy_lazydrag"
EDITOR_SHOT_TEMPLATE = "lazydrag_flux"
# (hx, hy, tx, ty) as fractions of the picture: a first drag, then one through a text box
DRAG = [0.3, 0.3, 0.45, 0.35]
OVERLAP_DRAG = [0.5, 0.45, 0.55, 0.7]
MIN_SIDE = 384
EXAMPLE_INPUT_NAME = "fluxdrag_example.png"  # fluxdrag/nodes/editor.py installs it; test_tier2_server checks


def _ui(name: str) -> dict:
    return json.loads((wt.WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


TEMPLATES = sorted(p.stem for p in wt.WORKFLOWS.glob("*.json"))
EDITOR_TEMPLATES = [n for n in TEMPLATES
                    if any(x["type"] == "FluxDragDragEditor" for x in _ui(n)["nodes"])]


@pytest.fixture(scope="module")
def browser_templates(comfy_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser_templates")
    status, body = comfy_server.request("POST", "/settings", json.dumps(SETTINGS).encode())
    assert status == 200, body
    # a toy run from the UI is the only way to the toy graph's images: start with cold caches
    cfg = {"baseUrl": comfy_server.base_url, "chromium": CHROMIUM,
           "userDataDir": str(tmp / "chromium-profile"), "pack": comfy_server.pack_link,
           # the toy template last, so the one queued at the end is open already once
           "templates": {n: len(_ui(n)["nodes"]) for n in sorted(TEMPLATES, key=lambda n: n == TOY)},
           "toyTemplate": TOY, "editorShotTemplate": EDITOR_SHOT_TEMPLATE, "drag": DRAG,
           "overlapDrag": OVERLAP_DRAG, "shotsDir": str(tmp), "timeoutMs": 90000,
           "runTimeoutMs": 240000}
    result = run_driver(DRIVER, cfg, tmp, timeout=420)
    update = os.environ.get("FLUXDRAG_UPDATE_DOCS") == "1"
    for shot, doc in (("templates.png", "templates.png"), ("editor_template.png", "editor_template.png")):
        if (tmp / shot).is_file() and (update or not (DOCS / doc).is_file()):
            shutil.copyfile(tmp / shot, DOCS / doc)
    return result, tmp


def test_every_template_is_listed_and_has_its_thumbnail(browser_templates):
    result, _ = browser_templates
    assert set(result["templates"]) == set(TEMPLATES) and TOY in TEMPLATES
    from PIL import Image

    for name, entry in result["templates"].items():
        thumb = entry["thumb"]
        # the card asked for the .jpg next to the workflow, got it, and shows that picture
        assert thumb["response"] == [200, "image/jpeg"], (name, thumb)
        assert [thumb["width"], thumb["height"]] == list(Image.open(wt.WORKFLOWS / f"{name}.jpg").size), thumb


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_opens_cleanly(browser_templates, name):
    entry = browser_templates[0]["templates"][name]
    assert entry["dialogs"] == [], entry["dialogs"]
    assert entry["consoleErrors"] == [], entry["consoleErrors"]
    assert entry["failedRequests"] == [], entry["failedRequests"]
    assert [n["type"] for n in entry["nodes"]] == [n["type"] for n in _ui(name)["nodes"]]
    # widgets as saved: a seed stays fixed (the toy scene's, so a second run shows the same one)
    for node, saved in zip(entry["nodes"], _ui(name)["nodes"], strict=True):
        if "seed" in node["widgets"]:
            assert node["widgets"]["control_after_generate"] == "fixed", (name, node)
        if node["type"] == "FluxDragToyScene":
            assert [node["widgets"][k] for k in ("seed", "family", "case")] == [
                saved["widgets_values"][0], *saved["widgets_values"][2:]], (name, node)
    if entry["loadImage"] is not None:  # the example picture is there: the node shows it
        assert entry["loadImage"]["value"] == EXAMPLE_INPUT_NAME and entry["loadImage"]["shown"] == 256
    # no node lies over another (boxes as the frontend sizes them, title bar included)
    boxes = [(n["title"], n["box"]) for n in entry["nodes"]]
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            overlap = (min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]) > 0
                       and min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]) > 0)
            assert not overlap, f"{name}: {ta!r} {a} overlaps {tb!r} {b}"


@pytest.mark.parametrize("name", EDITOR_TEMPLATES)
def test_editor_takes_the_first_drag(browser_templates, name):
    entry = browser_templates[0]["templates"][name]
    ed = entry["editorCheck"]
    before, after = ed["before"], ed["after"]
    # the picture before any run, large and undistorted at 100 % zoom
    assert "fluxdrag_example.png" in before["imageSrc"] and before["natural"] == [256, 256]
    side = before["t"]["scale"] * 256 * before["rect"]["width"] / before["layout"][0]
    assert side >= MIN_SIDE, f"{name}: the picture is {side:.0f} px on screen"
    assert abs(before["t"]["width"] - before["t"]["height"]) < 1e-6
    # one press-move-release with no click on the node first: one drag, where it was drawn
    assert ed["selectedBefore"] == 0
    assert len(after["drags"]) == len(before["drags"]) + 1, (before["status"], after["status"])
    hx, hy, tx, ty = DRAG
    d = after["drags"][-1]
    assert abs(d["handle"][0] - hx * 256) <= 1.5 and abs(d["handle"][1] - hy * 256) <= 1.5, d
    assert abs(d["target"][0] - tx * 256) <= 1.5 and abs(d["target"][1] - ty * 256) <= 1.5, d


def test_editor_takes_a_drag_through_an_overlapping_text_box(browser_templates):
    checks = [e["overlapCheck"] for e in browser_templates[0]["templates"].values() if "overlapCheck" in e]
    assert len(checks) == 1
    [c] = checks
    assert c["covering"].startswith("textarea"), c  # the press really landed on the text box
    assert c["after"] == c["before"] + 1, c  # ... and the editor took it
    assert c["text"]["value"] == "" and not c["text"]["focused"]  # the text box did not
    assert c["editorLast"]  # the editor's node came to the front


def test_toy_lazydrag_queued_from_the_ui_shows_its_images(browser_templates):
    result, _ = browser_templates
    run = result["toy"]["run"]
    assert run["errors"] == [] and len(run["success"]) == 1, run
    saves = result["toy"]["saves"]
    assert set(saves) == {"Save source", "Save ground truth", "Save edit", "Save map preview"}
    for title, s in saves.items():
        assert s["width"] == 256 and re.search(r"toy_lazydrag_\w+_\d+_\.png", s["src"]), (title, s)


def test_editor_default_size_matches_the_layouts():
    """The size the frontend extension gives a new editor is the one the shipped layouts reserve."""
    js = (wt.ROOT / "js" / "fluxdrag_editor.js").read_text(encoding="utf-8")
    m = re.search(r"const DEFAULT_NODE_SIZE = \[(\d+), (\d+)\];", js)
    assert m, "DEFAULT_NODE_SIZE not found in js/fluxdrag_editor.js"
    assert wt.api_to_ui_module().NODE_SIZES["FluxDragDragEditor"] == [float(m[1]), float(m[2])]
    for name in EDITOR_TEMPLATES:
        [ed] = [n for n in _ui(name)["nodes"] if n["type"] == "FluxDragDragEditor"]
        assert ed["size"] == [float(m[1]), float(m[2])], name
