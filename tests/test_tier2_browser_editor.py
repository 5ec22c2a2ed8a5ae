"""Tier 2, browser: the Drag Editor in the real ComfyUI frontend, driven in headless Chromium.

A real server (tests/comfy_server.py) serves the frontend with the pack; ``tests/browser/
editor_driver.mjs`` (playwright-core, system Chromium) builds LoadImage -> Drag Editor -> Preview
Image, waits for the uploaded image on the canvas (before any queue), draws two drags with the
mouse (picking "goes behind" for the first in the toolbar's depth select), queues, and reports
what the page and the server saw. On success the screenshot is copied to ``docs/editor.png``
(only when its pixels changed, so the committed file stays put).

Needs Node.js, Chromium (``apt-get install -y chromium``) and ``npm ci --prefix tests/browser``;
without them the test is skipped with one line saying which is missing.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import workflow_tools as wt
from comfy_fixtures import comfy  # noqa: F401
from PIL import Image

ROOT = wt.ROOT
BROWSER_DIR = ROOT / "tests" / "browser"
DRIVER = BROWSER_DIR / "editor_driver.mjs"
DOCS_SHOT = ROOT / "docs" / "editor.png"
CHROMIUM = os.environ.get("FLUXDRAG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# (hx, hy, tx, ty) in image pixels of the 256x256 example: the sun to the left, the door upwards
DRAGS = [[204, 46, 140, 46], [70, 150, 70, 110]]
ANCHORS = [[200, 200]]  # a click with no drag: a fixed point
DEPTHS = ["behind", None]  # picked in the toolbar's depth select right after each drag is drawn
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
            "Comfy.Graph.CanvasInfo": False}


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "Node.js not installed"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "tests/browser/node_modules missing (npm ci --prefix tests/browser)"
    return None


pytest_plugins = ["comfy_server"]
pytestmark = [pytest.mark.tier2,
              pytest.mark.skipif(_missing() is not None,
                                 reason=f"browser test skipped: {_missing()}")]


def _png(path) -> np.ndarray:
    return wt.load_png(path, np.int16)


def _view(server, ref: dict) -> np.ndarray:
    """An image the server lists ({filename, subfolder, type}), fetched through /view."""
    q = urllib.parse.urlencode({k: ref.get(k, "") for k in ("filename", "subfolder", "type")})
    status, body = server.request("GET", f"/view?{q}")
    assert status == 200, (ref, status)
    return _png(io.BytesIO(body))


def _near(rgb: np.ndarray, color: tuple[int, int, int], tol: int = 30) -> np.ndarray:
    return (np.abs(rgb - np.array(color)) <= tol).all(axis=-1)


def run_driver(driver: Path, cfg: dict, tmp: Path, timeout: float) -> dict:
    """Run a browser driver (``tests/browser/*.mjs``) on ``cfg``; its JSON result, asserted ok."""
    (tmp / "config.json").write_text(json.dumps(cfg))
    r = subprocess.run(["node", str(driver), str(tmp / "config.json")], capture_output=True,
                       text=True, timeout=timeout, cwd=BROWSER_DIR)
    lines = r.stdout.strip().splitlines()
    assert lines, f"driver printed nothing (exit {r.returncode}):\n{r.stderr[-4000:]}"
    result = json.loads(lines[-1])
    assert r.returncode == 0 and result["ok"], (result.get("error"), r.stderr[-4000:])
    print("browser timings (s since launch):", result["timings"])
    return result


@pytest.fixture(scope="module")
def browser_run(comfy_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    status, body = comfy_server.request("POST", "/settings", json.dumps(SETTINGS).encode())
    assert status == 200, body
    name = comfy_server.upload_image(wt.EXAMPLE_INPUTS / "source.png")
    cfg = {"baseUrl": comfy_server.base_url, "chromium": CHROMIUM,
           "userDataDir": str(tmp / "chromium-profile"), "imageName": name, "drags": DRAGS,
           "anchors": ANCHORS, "depths": DEPTHS,
           "screenshot": str(tmp / "editor.png"), "timeoutMs": 90000}
    return run_driver(DRIVER, cfg, tmp, timeout=240), tmp


def test_canvas_drawing_reaches_the_server(browser_run, comfy_server, comfy):  # noqa: F811
    from fluxdrag.core.instructions import parse_instructions
    from fluxdrag.nodes.editor import EMPTY_DOC

    result, _ = browser_run
    assert result["initialWidget"] == EMPTY_DOC
    # the image was on the canvas before any queue, at its own size
    assert result["canvas"]["natural"] == [256, 256]
    assert result["canvas"]["imageSize"] == [256, 256]
    drawn = json.loads(result["widgetAfterDraw"])
    assert drawn["image_size"] == [256, 256] and len(drawn["drags"]) == 3
    # the click with no drag placed an anchor (a fixed point: handle = target)
    anchor = drawn["drags"][2]
    assert anchor["mode"] == "anchor" and anchor["handle"] == anchor["target"]
    assert np.allclose(anchor["handle"], ANCHORS[0], atol=1.0), anchor
    for d, (hx, hy, tx, ty) in zip(drawn["drags"][:2], DRAGS, strict=True):
        # mouse positions are whole client pixels, 1.5 client px per image px here
        assert np.allclose(d["handle"], [hx, hy], atol=1.0), d
        assert np.allclose(d["target"], [tx, ty], atol=1.0), d
        assert d["mode"] == "drag"
    # the depth picked for the first drag is stored in the JSON; the second states none
    assert drawn["drags"][0]["depth"] == "behind" and "depth" not in drawn["drags"][1]
    assert result["statusAfterDraw"].startswith("3 drag(s)")

    # what reached the server: the prompt as queued, and its execution
    entry = result["history"]
    assert entry["status"]["status_str"] == "success"
    ed = str(result["editorId"])
    node = entry["prompt"][2][ed]
    assert node["class_type"] == "FluxDragDragEditor"
    assert node["inputs"]["drags"] == result["widgetAfterDraw"]
    ins = parse_instructions(node["inputs"]["drags"])
    assert [d.depth for d in ins.drags] == ["behind", "auto", "auto"]
    assert [(d.handle, d.target) for d in ins.drags] == [
        (tuple(map(float, d["handle"])), tuple(map(float, d["target"]))) for d in drawn["drags"]]
    # the node returned the source image for the canvas, and the canvas reloaded it
    [ref] = entry["outputs"][ed]["fluxdrag_image"]
    assert ref["type"] == "temp" and "fluxdrag_editor_src" in ref["filename"]
    assert ref["filename"] in result["final"]["imageSrc"]
    assert np.array_equal(_view(comfy_server, ref), _png(wt.EXAMPLE_INPUTS / "source.png"))
    assert result["final"]["doc"]["drags"] == drawn["drags"]  # the drawing survived the run
    assert not [e for e in result["consoleErrors"] if "fluxdrag" in e.lower()]


def test_server_preview_has_the_arrows(browser_run, comfy_server):
    result, _ = browser_run
    outputs = result["history"]["outputs"]
    [prev] = [o["images"][0] for k, o in outputs.items() if k != str(result["editorId"])]
    preview = _view(comfy_server, prev)
    source = _png(wt.EXAMPLE_INPUTS / "source.png")
    drawn = json.loads(result["widgetAfterDraw"])["drags"]
    for d in drawn[:2]:  # the shaft's midpoint is painted in the arrow colour (fluxdrag/core/preview.py)
        x, y = (int(round((d["handle"][i] + d["target"][i]) / 2)) for i in range(2))
        assert _near(preview[y, x], (255, 89, 0), 8), (x, y, preview[y, x])
    assert np.abs(preview[230, 20] - source[230, 20]).max() == 0  # far from any arrow


def test_screenshot_shows_the_node_with_two_arrows(browser_run):
    result, tmp = browser_run
    shot = _png(tmp / "editor.png")
    assert shot.shape == (600, 1216, 3)
    # inside the editor canvas: yellow shafts (#ffd84d), red handles (#ff4d4d), blue targets
    g = result["canvas"]
    x0, y0 = int(g["rect"]["left"]) - 64, int(g["rect"]["top"]) - 148
    w, h = int(g["rect"]["width"]), int(g["rect"]["height"])
    canvas = shot[y0:y0 + h, x0:x0 + w]
    assert _near(canvas, (255, 216, 77), 25).sum() > 100
    assert _near(canvas, (255, 77, 77), 25).sum() > 40
    assert _near(canvas, (61, 139, 255), 25).sum() > 40
    # the picture itself (sky blue, grass green) fills the canvas
    assert _near(canvas, (86, 130, 70), 40).sum() > 0.2 * w * h
    # docs/editor.png is committed: rewrite it only when the picture changed
    if not (DOCS_SHOT.is_file() and np.array_equal(_png(DOCS_SHOT), shot)):
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp / "editor.png", DOCS_SHOT)
