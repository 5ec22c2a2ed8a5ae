"""Tier 1: the pure parts of ``scripts/dragbench_batch.py`` (issue 31): one scale for both sides,
pad / crop to multiples of 16, samples found through links, one-line CSV fields and errors,
stable output names, and a workflow with nowhere to put the drags refused."""
from __future__ import annotations

import csv
import importlib.util
import io
import os
import pickle
import sys

import numpy as np
import pytest
import workflow_tools as wt
from PIL import Image


def _batch():
    from scripts import dragbench_batch

    return dragbench_batch


db = _batch()


@pytest.mark.parametrize("size", [(512, 765), (512, 913), (512, 341), (765, 512), (100, 70)])
@pytest.mark.parametrize("long_side", [0, 256, 160])
def test_one_scale_keeps_the_aspect_within_a_pixel(size, long_side):
    w, h = size
    for fit in db.FITS:
        g = db.fit_geometry(w, h, long_side, fit)
        cw, ch = g.content
        assert abs(cw * h / w - ch) <= 0.5 + 1e-9 or abs(ch * w / h - cw) <= 0.5 + 1e-9
        assert g.work[0] % 16 == 0 and g.work[1] % 16 == 0
        assert abs(g.work[0] - cw) < 16 and abs(g.work[1] - ch) < 16  # within one token
        if long_side:
            assert max(cw, ch) == long_side
    # the cases: 512x765 -> 171x256 (was 160x240), 512x913 keeps its 0.56 aspect
    assert db.fit_geometry(512, 765, 256).work == (176, 256)
    assert db.fit_geometry(512, 913, 256).content == (144, 256)
    assert db.fit_geometry(512, 341, 256, "crop").work == (256, 160)


def test_crop_maps_points_by_the_offset():
    g = db.fit_geometry(512, 341, 256, "crop")
    assert g.content == (256, 171) and g.offset == (0, -5)
    # the image is resized to exactly 256x171, so each axis maps by its own content size
    assert db.Geometry.to_work(g, np.array([[0, 10]]))[0].tolist() == pytest.approx([0.25, 10.5 * 171 / 341 - 5])


def test_samples_found_through_links(tmp_path):
    real = tmp_path / "real" / "cat" / "s"
    real.mkdir(parents=True)
    for f in (db.IMAGE_FILE, db.META_FILE):
        (real / f).write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path / "real" / "cat", root / "cat")
    os.symlink(root, root / "cat_loop")  # a loop is walked once
    assert [p.relative_to(root).as_posix() for p in db.find_samples(root)] == ["cat/s"]
    assert db.select(db.find_samples(root), root, set(), {"cat"}) == [root / "cat" / "s"]
    assert db.select(db.find_samples(root), root, {"t"}, set()) == []


def test_csv_fields_and_errors_are_one_line(tmp_path):
    err = ("prompt 1 failed on http://x:\nnode 8 (FluxDragCorrespondenceMap): FluxDragInputError: "
           "FluxDrag Map: no drag\nis left\nTraceback (most recent call last):\n  File \"a.py\", line 1\n")
    assert db.short_error(err) == "FluxDragInputError: FluxDrag Map: no drag is left"
    path = tmp_path / "r.csv"
    db.write_csv(path, [{"sample": "a", "method": "m", "prompt": "two\nlines", "error": err}])
    text = path.read_text()
    assert len(text.splitlines()) == 2
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["prompt"] == "two | lines" and "\n" not in row["error"]


def test_stable_names_drop_the_counter(tmp_path):
    files = [tmp_path / "Save_edited_00007_.png", tmp_path / "Save_edited_00008_.png",
             tmp_path / "Save_map_preview_00003_.png"]
    for f in files:
        f.write_bytes(b"x")
    (tmp_path / "Save_edited.png").write_bytes(b"old")  # an earlier run's file is replaced
    names = [p.name for p in db.stable_names(files)]
    assert names == ["Save_edited.png", "Save_edited_2.png", "Save_map_preview.png"]
    assert (tmp_path / "Save_edited.png").read_bytes() == b"x"


def _sample(tmp_path, pairs):
    d = tmp_path / "c" / "s"
    d.mkdir(parents=True)
    Image.new("RGB", (100, 70), (90, 120, 200)).save(d / db.IMAGE_FILE)
    with open(d / db.META_FILE, "wb") as f:
        pickle.dump({"points": [list(p) for pr in pairs for p in pr], "prompt": "p\nq",
                     "mask": np.ones((70, 100), np.uint8)}, f)
    return db.load_sample(d, tmp_path, 0)


def test_fill_workflow_puts_drags_and_prompt_everywhere_or_refuses(tmp_path):
    s = _sample(tmp_path, [((10, 10), (40, 10)), ((60, 60), (60, 60))])
    assert s.n_anchors == 1
    img = tmp_path / "x.png"
    # DragFlow's workflow: the optimiser's drag_instructions come from a region node
    flow = db.fill_workflow(wt.load_api(wt.API_WORKFLOWS / "dragflow_flux_api.json"), s, img)
    [(nid, node)] = [(k, n) for k, n in flow.items() if n["class_type"] == "FluxDragInstructionsJSON"]
    opt = next(n for n in flow.values() if n["class_type"] == "FluxDragRegionAffineOptimise")
    assert opt["inputs"]["drag_instructions"] == [nid, 0] and node["inputs"]["drags_json"] == s.drags_json
    assert {n["inputs"]["text"] for n in flow.values() if n["class_type"] == "CLIPTextEncode"} == {"p\nq"}
    # CLIPTextEncodeFlux gets it too; a negative prompt does not
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": ""}},
          "2": {"class_type": "CLIPTextEncodeFlux", "inputs": {"clip_l": "", "t5xxl": "", "guidance": 3.5}},
          "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad"}, "_meta": {"title": "Negative"}}}
    with pytest.raises(db.qw.QueueError, match="nowhere to put the sample's drags"):
        db.fill_workflow(wf, s, img)
    out = db.fill_workflow(wf, s, img, needs_drags=False)
    assert out["2"]["inputs"]["clip_l"] == out["2"]["inputs"]["t5xxl"] == "p\nq"
    assert out["3"]["inputs"]["text"] == "bad"
