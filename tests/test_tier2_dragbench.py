"""Tier 2, real server: DragBench as published runs end to end through ``scripts/dragbench_batch.py``
(issue 31). Samples are built here in DragBench's format (``meta_data.pkl`` + ``original_image.png``):
a 512×341 image, 6 drags with a fixed point (handle = target) and a 2 px drag, and a mask. Every
method runs them on the tiny stand-in weights at ``--size 256``."""
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

BATCH = "scripts.dragbench_batch"  # run as ``python -m`` from the repository root
METHODS = ("lazydrag", "dragflow", "contextdrag", "attentiondrag", "attentiondrag_sd15")
FAST = ["--set", "Invert (Uni-Inv).steps=3",                       # LazyDrag
        "--set", "AttentionDrag.steps=3",
        "--set", "DragFlow.steps=4", "--set", "DragFlow.skip_steps=1",
        "--set", "DragFlow.n_intensify=2",
        "--set", "Sample.steps=1"]                                  # ContextDrag's KSampler
SIZE = (512, 341)
# handle, target pairs in pixel indices of the 512×341 image
PAIRS_A = [((410, 60), (330, 60)),     # the sun, left
           ((100, 250), (100, 200)),   # up
           ((300, 300), (300, 300)),   # a fixed point (DragBench's anchor)
           ((200, 120), (202, 120)),   # 2 px: below every method's resolution
           ((60, 60), (120, 90)),
           ((450, 280), (400, 240))]
PAIRS_B = [((410, 60), (470, 150)),    # the same image, other drags
           ((100, 250), (180, 250)),
           ((300, 300), (300, 300)),
           ((200, 120), (202, 120)),
           ((60, 60), (60, 20)),
           ((450, 280), (450, 200))]


def make_sample(folder, pairs, size=SIZE, prompt="a house under the sun"):
    folder.mkdir(parents=True)
    Image.open(wt.EXAMPLE_INPUTS / "source.png").convert("RGB").resize(size).save(
        folder / "original_image.png")
    mask = np.zeros(size[::-1], np.uint8)
    mask[20:330, 30:500] = 255
    pts = [list(p) for pair in pairs for p in pair]
    with open(folder / "meta_data.pkl", "wb") as f:  # DragBench's format: numpy mask, lists
        pickle.dump({"prompt": prompt, "points": pts, "mask": mask}, f)
    return folder


def run_batch(*args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", BATCH, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=wt.ROOT)


def read_rows(path):
    text = path.read_text(encoding="utf-8")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # one line per row: a spreadsheet sees exactly the rows a csv reader sees
    assert len(text.splitlines()) == len(rows) + 1, text[:3000]
    return rows


@pytest.fixture(scope="module")
def bench(tmp_path_factory, comfy_server):
    tmp = tmp_path_factory.mktemp("dragbench")
    data = tmp / "data"
    make_sample(data / "interior_design" / "pinned", PAIRS_A)
    elsewhere = make_sample(tmp / "elsewhere" / "other_drags", PAIRS_B)
    (data / "linked").mkdir()
    os.symlink(elsewhere, data / "linked" / "other_drags")  # found through the link
    out = tmp / "out"
    r = run_batch(data, *[a for m in METHODS for a in ("--method", m)], "--server",
                  comfy_server.base_url, "--swap-test-loaders", "--size", 256, *FAST, "--out", out)
    return data, out, r


def test_every_method_runs_every_sample_with_anchors_and_short_drags(bench):
    data, out, r = bench
    assert r.returncode == 0, r.stderr[-6000:]
    rows = read_rows(out / "results.csv")
    samples = ("interior_design/pinned", "linked/other_drags")
    assert sorted((row["sample"], row["method"]) for row in rows) == sorted(
        (s, m) for s in samples for m in METHODS)
    for row in rows:
        assert row["status"] == "ok", row
        assert row["n_drags"] == "6" and row["n_anchors"] == "1", row
        # the 2 px drag (1 px at 256) is kept as an anchor, with a warning naming it and its length
        assert "drag 3" in row["warnings"] and "1.0 px" in row["warnings"], (row["method"], row["warnings"])
        assert "anchor" in row["warnings"]
    # the warnings also reach the console, and a progress line per job says k/N, ok/failed, s/job
    assert "warning: " in r.stderr and "drag 3" in r.stderr
    n = 2 * len(METHODS)
    assert f"[{n}/{n}]" in r.stderr and f"{n} ok, 0 failed" in r.stderr and "s/job" in r.stderr


def test_aspect_kept_and_outputs_written_back_at_the_original_size(bench):
    _, out, _ = bench
    for row in read_rows(out / "results.csv"):
        W0, H0 = int(row["orig_width"]), int(row["orig_height"])
        W, H = int(row["width"]), int(row["height"])
        cw, ch = int(row["content_width"]), int(row["content_height"])
        assert (W0, H0) == SIZE and W % 16 == 0 and H % 16 == 0
        assert (cw, ch) == (256, 171) and (W, H) == (256, 176) and row["fit"].startswith("pad")
        # one scale for both sides: the content's aspect matches within a pixel (far below a token)
        assert abs(cw * H0 / W0 - ch) <= 1 and abs(ch * W0 / H0 - cw) <= 1
        orig = out / row["output_orig"]
        assert orig.name == row["sample"].split("/")[-1] + ".png"
        assert orig.parent == out / row["method"] / row["sample"].rsplit("/", 1)[0]
        img = wt.load_png(orig)
        assert img.shape == (H0, W0, 3) and img.std() > 1.0
        drags = json.loads((out / row["drags_orig"]).read_text())
        assert drags["image_size"] == list(SIZE) and drags["anchors"] == [[300, 300]]
        assert len(drags["handles"]) == 6
        # stable names: no ComfyUI counter
        for f in row["files"].split(";"):
            assert "_0000" not in f, f


def test_dragflow_uses_the_samples_drags(bench, comfy_server, tmp_path):
    _, out, _ = bench
    by = {(r["sample"], r["method"]): r for r in read_rows(out / "results.csv")}
    a = wt.load_png(out / by[("interior_design/pinned", "dragflow")]["output"]).astype(float)
    b = wt.load_png(out / by[("linked/other_drags", "dragflow")]["output"]).astype(float)
    assert a.shape == b.shape
    # same image, other drags: another edit (the workflow's own region is not what ran) ...
    assert np.abs(a - b).mean() > 1.0
    # ... while the same image with the same drags gives the same edit (the run is deterministic)
    make_sample(tmp_path / "data" / "c" / "again", PAIRS_A)
    r = run_batch(tmp_path / "data", "--method", "dragflow", "--server", comfy_server.base_url,
                  "--swap-test-loaders", "--size", 256, *FAST[4:10], "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr[-4000:]
    [row] = read_rows(tmp_path / "out" / "results.csv")
    again = wt.load_png(tmp_path / "out" / row["output"]).astype(float)
    assert np.abs(a - again).mean() < 0.01 * np.abs(a - b).mean()
    doc = json.loads((out / "dragflow" / "interior_design" / "pinned" / "drags.json").read_text())
    assert [d["mode"] for d in doc["drags"]].count("anchor") == 1


def test_results_merge_across_runs_resume_and_filters(bench, comfy_server):
    data, out, _ = bench
    before = {(r["sample"], r["method"]): r for r in read_rows(out / "results.csv")}
    r = run_batch(data, "--method", "lazydrag", "--method", "invert_reconstruct", "--server",
                  comfy_server.base_url, "--swap-test-loaders", "--size", 256, "--resume",
                  "--samples", "pinned", "--set", "Invert.steps=2", "--out", out)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "1 sample/method pair(s) already ok, skipped" in r.stderr
    rows = {(row["sample"], row["method"]): row for row in read_rows(out / "results.csv")}
    assert set(rows) == set(before) | {("interior_design/pinned", "invert_reconstruct")}
    assert rows[("linked/other_drags", "dragflow")] == before[("linked/other_drags", "dragflow")]
    r = run_batch(data, "--method", "lazydrag", "--categories", "nothing_here", "--out", out)
    assert r.returncode == 1 and "matching --samples/--categories" in r.stderr


def test_failures_are_one_line_with_the_traceback_in_the_log(tmp_path, comfy_server):
    data = tmp_path / "data"
    # loads (one 2 px drag and an anchor), but no method has anything left to move
    make_sample(data / "c" / "nothing_moves", [((100, 100), (102, 100)), ((300, 300), (300, 300))])
    out = tmp_path / "out"
    wf = tmp_path / "nodrags_api.json"  # a workflow with nowhere to put the drags
    wf.write_text((wt.API_WORKFLOWS / "invert_reconstruct_api.json").read_text())
    r = run_batch(data, "--method", "lazydrag", "--method", str(wf), "--server",
                  comfy_server.base_url, "--swap-test-loaders", "--size", 128,
                  "--set", "Invert (Uni-Inv).steps=3", "--set", "Invert.steps=2", "--out", out)
    assert r.returncode == 1
    rows = {row["method"]: row for row in read_rows(out / "results.csv")}
    lazy = rows["lazydrag"]
    assert lazy["status"] == "error" and lazy["error"].startswith("fluxdrag.FluxDragInputError: ")
    assert "no drag is left to move" in lazy["error"] and "Traceback" not in lazy["error"]
    assert rows["nodrags"]["status"] == "error" and "nowhere to put" in rows["nodrags"]["error"]
    log = (out / "results.log").read_text()
    assert 'fluxdrag/pipelines/lazydrag.py", line' in log and "no drag is left to move" in log  # the traceback
