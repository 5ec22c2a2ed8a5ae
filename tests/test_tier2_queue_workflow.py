"""Tier 2, real server: ``scripts/queue_workflow.py`` and ``scripts/dragbench_batch.py`` drive the
shipped workflows over HTTP + websocket (weights swapped for the tiny test loaders)."""
from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import workflow_tools as wt
from PIL import Image

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

SCRIPT = "scripts.queue_workflow"  # run as ``python -m`` (the repository root on PYTHONPATH)
BATCH = "scripts.dragbench_batch"
# the sun (204, 46) moved left, as in the shipped LazyDrag workflow, plus a second drag
DRAGS = {"version": 1, "image_size": [256, 256],
         "drags": [{"handle": [204, 46], "target": [140, 46], "mode": "drag", "scale": [1, 1]},
                   {"handle": [80, 150], "target": [80, 120], "mode": "drag", "scale": [1, 1]}],
         "mask": None, "regions": []}


def _script(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(wt.ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or wt.ROOT, env=env)



def test_lazydrag_queued_through_the_script(comfy_server, tmp_path):
    (tmp_path / "drags.json").write_text(json.dumps(DRAGS))
    out = tmp_path / "out"
    r = _script(SCRIPT, "lazydrag_flux", "--server", comfy_server.base_url, "--swap-test-loaders",
                "--set", f"Drag Editor.drags=@{tmp_path / 'drags.json'}",
                "--set", "Invert (Uni-Inv).steps=6", "--out", out)
    assert r.returncode == 0, r.stderr[-4000:]
    # followed over the websocket, with per-step progress of the sampler nodes
    assert "following via websocket" in r.stderr
    assert "node 9 (Invert (Uni-Inv)) 6/6" in r.stderr
    files = sorted(out.iterdir())
    names = [f.name for f in files]
    assert any(n.startswith("Save_edited_") for n in names), names
    assert any(n.startswith("Save_map_preview_") for n in names), names
    assert [str(f) for f in files] == sorted(r.stdout.split())  # stdout lists the files
    edited = wt.load_png(next(f for f in files if f.name.startswith("Save_edited_")))
    assert edited.shape == (256, 256, 3) and edited.std() > 1.0
    # the queued prompt carried our drags (the server's history keeps the prompt)
    [job_line] = [ln for ln in r.stderr.splitlines() if ln.startswith("[job 0] queued ")]
    prompt_id = job_line.split()[3]
    prompt = comfy_server.get_json(f"/history/{prompt_id}")[prompt_id]["prompt"][2]
    nid, _ = wt.node_by_title(prompt, "Drag Editor")
    assert json.loads(prompt[nid]["inputs"]["drags"]) == DRAGS


def test_validation_refusal_exits_2_with_the_servers_message(comfy_server, tmp_path):
    r = _script(SCRIPT, "invert_reconstruct", "--server", comfy_server.base_url,
                "--swap-test-loaders", "--set", "Invert.steps=0", "--out", tmp_path)
    assert r.returncode == 2, r.stderr
    assert "refused the prompt (HTTP 400)" in r.stderr
    assert "node 7 (FluxDragInvert 'Invert'): Value 0 smaller than min of 1" in r.stderr
    # bad command lines fail before anything is queued
    r = _script(SCRIPT, "invert_reconstruct", "--server", comfy_server.base_url,
                "--set", "Invert.steps=six")
    assert r.returncode == 1 and "expects a int, got 'six'" in r.stderr
    r = _script(SCRIPT, "no_such_workflow")
    assert r.returncode == 1 and "lazydrag_flux" in r.stderr  # lists the shipped names


def _editor_workflow(image_value: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_value},
              "_meta": {"title": "Source image"}},
        "2": {"class_type": "FluxDragDragEditor",
              "inputs": {"image": ["1", 0], "drags": ""}, "_meta": {"title": "Drag Editor"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 2], "filename_prefix": "ed"},
              "_meta": {"title": "Save preview"}},
    }


def test_editor_round_robin_upload_and_execution_error(comfy_server, tmp_path):
    src = tmp_path / "my source.png"  # a local file: uploaded by the script
    src.write_bytes((wt.EXAMPLE_INPUTS / "source.png").read_bytes())
    wf = tmp_path / "editor_api.json"
    wf.write_text(json.dumps(_editor_workflow("placeholder.png")))
    (tmp_path / "drags.json").write_text(json.dumps(DRAGS))
    out = tmp_path / "out"
    r = _script(SCRIPT, wf, "--server", comfy_server.base_url, "--server", comfy_server.base_url,
                "--set", "Drag Editor.drags=@drags.json", "--set", f"Source image.image={src}",
                "--repeat", "2", "--temp", "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    for job in ("job_000", "job_001"):
        names = sorted(p.name for p in (out / job).iterdir())
        # the preview (output) and the source image the node returns for the canvas (temp)
        assert [n.split("_")[0] for n in names] == ["Drag", "Save"], names
        canvas = wt.load_png(next((out / job).glob("Drag_Editor_*")))
        assert np.array_equal(canvas, wt.load_png(wt.EXAMPLE_INPUTS / "source.png"))
        preview = wt.load_png(next((out / job).glob("Save_preview_*")))
        # arrows are drawn server-side: the preview differs from the source along the drags
        assert np.abs(preview - canvas).max() > 100
    assert (comfy_server.input_dir / "my source.png").is_file()
    # an empty drawing fails at execution: exit 1 with the node's message
    r = _script(SCRIPT, wf, "--server", comfy_server.base_url,
                "--set", f"Source image.image={src}", "--out", tmp_path / "o2")
    assert r.returncode == 1
    assert "FluxDragInputError: FluxDrag Drag Editor: input 'drags': no drags drawn yet" in r.stderr


def _dragbench_sample(root, category, name, points, size=(320, 200)):
    d = root / category / name
    d.mkdir(parents=True)
    Image.open(wt.EXAMPLE_INPUTS / "source.png").convert("RGB").resize(size).save(
        d / "original_image.png")
    mask = np.zeros(size[::-1], np.uint8)
    mask[10:90, 150:300] = 255
    with open(d / "meta_data.pkl", "wb") as f:
        pickle.dump({"prompt": "a house and the sun", "points": points, "mask": mask}, f)
    return d


def test_dragbench_batch_runs_both_methods(comfy_server, tmp_path):
    data = tmp_path / "bench"
    _dragbench_sample(data, "art_work", "sun", [[255, 36], [175, 36]])
    _dragbench_sample(data, "art_work", "broken", [[10, 10]])  # odd number of points
    out = tmp_path / "results"
    r = _script(BATCH, data, "--method", "lazydrag", "--method", "invert_reconstruct",
                "--server", comfy_server.base_url, "--swap-test-loaders",
                "--set", "Invert (Uni-Inv).steps=4", "--set", "Invert.steps=4", "--size", "160",
                "--out", out,
                timeout=600)
    assert r.returncode == 1, r.stderr[-4000:]  # one sample is broken
    rows = list(csv.DictReader(open(out / "results.csv", newline="")))
    by = {(row["sample"], row["method"]): row for row in rows}
    assert set(by) == {(s, m) for s in ("art_work/sun", "art_work/broken")
                       for m in ("lazydrag", "invert_reconstruct")}
    for m in ("lazydrag", "invert_reconstruct"):
        row = by[("art_work/sun", m)]
        assert row["status"] == "ok", row
        # long side 320 -> 160, so 200 -> 100 (one scale), padded to 112, a multiple of 16
        assert (row["width"], row["height"], row["orig_height"]) == ("160", "112", "200")
        assert (row["content_width"], row["content_height"]) == ("160", "100")
        edited = wt.load_png(out / row["output"])
        assert edited.shape == (112, 160, 3) and edited.std() > 1.0
        assert wt.load_png(out / row["output_orig"]).shape == (200, 320, 3)
        broken = by[("art_work/broken", m)]
        assert broken["status"] == "error" and "odd number of points" in broken["error"]
    # the drags queued: pixel index -> centre (+0.5), scaled by 160/320 on both axes
    doc = json.loads((out / "lazydrag" / "art_work" / "sun" / "drags.json").read_text())
    assert doc["image_size"] == [160, 112] and doc["mask"]["rle"]["size"] == [112, 160]
    [d] = doc["drags"]
    assert d["handle"] == pytest.approx([127.75, 18.25])
    assert d["target"] == pytest.approx([87.75, 18.25])
