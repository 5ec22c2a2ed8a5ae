"""Tier 1: the toy-world edit metrics on hand-built edits with known values, the cut_paste
baseline, the new scene families and the benchmark's JSON shape."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from bench.toybench import metrics as M
from bench.toybench.methods import copy_paste, cut_paste, fill_from_surroundings, ground_truth, no_edit
from bench.toybench.run import FAMILY_CASES, aggregate, benchmark_scenes, json_report
from fluxdrag.toyworld import scenes as S


def _scene_with(objects, after, moved=(0,), case="move", seed=0):
    """A Scene built by hand on a ramp background (no drags needed by the metrics)."""
    bg = torch.linspace(-0.5, 0.5, 32)[None, None, :] * S.BG_BASIS[0][:, None, None]
    bg = bg.expand(16, 32, 32).clone()
    lat, masks = S.compose(bg, objects)
    ed, masks_after = S.compose(bg, after)
    return S.Scene(seed, "single", case, lat, ed, bg, list(objects), list(after), masks, masks_after,
                   list(moved), {})


SQUARE = S.SceneObject("square", 0, 68.0, 68.0, 20.0)       # centre on a latent-pixel centre


def test_iou_and_mask_helpers_hand_values():
    a = torch.zeros(4, 4, dtype=torch.bool)
    a[0:2, 0:2] = True                                        # 4 px
    b = torch.roll(a, 1, 1)                                   # shifted by one column: 2 shared
    assert M.iou(a, b) == pytest.approx(2 / 6)
    assert M.iou(a, a) == 1.0 and M.iou(a, ~a) == 0.0
    # gradient energy: a unit step along one column boundary of a 1-channel 3×3 image
    x = torch.zeros(1, 3, 3)
    x[0, :, 2] = 1.0
    full = torch.ones(3, 3, dtype=torch.bool)
    # 12 neighbour pairs (6 horizontal, 6 vertical), 3 of them cross the step with |Δ|² = 1
    assert M.gradient_energy(x, full) == pytest.approx(3 / 12)
    # scale error: 2 columns → 4 columns, same rows: σ_x of {0..3}·8 px = 8·√1.25 over σ_x of
    # {0, 1}·8 px = 4, σ_y unchanged → (2.236 − 1 + 0) / 2
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2:4, 2:4] = True
    m2 = torch.zeros(8, 8, dtype=torch.bool)
    m2[2:4, 1:5] = True
    assert M.scale_error(m2, m) == pytest.approx((8 * math.sqrt(1.25) / 4 - 1) / 2, rel=1e-5)
    assert M.scale_error(m, m) == 0


def test_ground_truth_scores_perfect_on_every_family():
    for fam in ("single", "multi", "parts", "border", "overlap", "large"):
        for case in FAMILY_CASES[fam]:
            sc = S.make_scene(40, fam, case)
            r = M.edit_metrics(sc, ground_truth(sc))
            assert r["md"] == 0 and r["iou"] == 1 and r["residue"] == 0 and r["seam"] == 0, (fam, case, r)
            assert r["bg_err"] == 0 and r["hole_err"] == 0 and r["id_err"] == 0
            assert (r["orientation_deg"] == 0) if case == "rotate" else r["orientation_deg"] is None
            assert (r["scale_err"] == 0) if case in ("stretch", "scale") else r["scale_err"] is None


def test_known_shift_gives_known_iou_md_and_residue():
    # a 5×5-pixel square moved 2 latent px right; the "edit" moves it only 1 px: overlap 5×4 of
    # union 5×6 → IoU 2/3, MD = 8 px = 0.5 token; the vacated area (2 columns × 5) keeps one
    # column of object → residue 1/2
    after = replace(SQUARE, cx=SQUARE.cx + 16)
    sc = _scene_with([SQUARE], [after])
    assert int(sc.masks[0].sum()) == 25 and int(sc.vacated.sum()) == 10
    half = S.compose(sc.background, [replace(SQUARE, cx=SQUARE.cx + 8)])[0]
    r = M.edit_metrics(sc, half)
    assert r["iou"] == pytest.approx(20 / 30)
    assert r["md"] == pytest.approx(0.5)
    assert r["residue"] == pytest.approx(0.5)
    assert r["seam"] == pytest.approx(0, abs=1e-6)    # the background band is untouched
    # not moved at all: IoU 3/7 (15 shared of 35), MD 1 token, all of the vacated area remains
    r0 = M.edit_metrics(sc, no_edit(sc))
    assert r0["iou"] == pytest.approx(15 / 35) and r0["md"] == pytest.approx(1.0)
    assert r0["residue"] == 1.0


def test_seam_sees_a_box_the_other_metrics_miss():
    sc = S.make_scene(41, "single", "move")
    box = ground_truth(sc)
    rows, cols = slice(2, 20), slice(3, 25)
    box[:, rows, cols] = box[:, rows, cols] + 0.8 * S.BG_BASIS[0][:, None, None]   # a darker rectangle
    r = M.edit_metrics(sc, box)
    assert r["md"] == 0 and r["iou"] == 1 and r["residue"] == 0
    assert r["seam"] > 0.2
    assert M.edit_metrics(sc, cut_paste(sc))["seam"] == pytest.approx(0, abs=1e-6)   # no box
    blur = ground_truth(sc)                                   # smoothing lowers the energy: negative
    blur = torch.nn.functional.avg_pool2d(blur[None], 3, 1, 1, count_include_pad=False)[0]
    assert M.edit_metrics(sc, blur)["seam"] < 0


def test_no_edit_on_a_rotation_scores_the_angle():
    # (family, seed, expected): the rotation angle, modulo the rendered object's symmetry
    for fam, seed, expect in (("single", 2, None), ("single", 11, None), ("parts", 5, None),
                              ("textured_bg", 5, 90.0)):
        sc = S.make_scene(seed, fam, "rotate")
        theta = abs(math.degrees(sc.objects_after[0].angle - sc.objects[0].angle))
        want = theta if expect is None else expect - theta      # a square: −70.8° ≡ +19.2°
        got = M.edit_metrics(sc, no_edit(sc))["orientation_deg"]
        assert abs(got - want) <= 3, (fam, seed, theta, got)   # 3°: the latent pixel grid
    # a shape rendered at the right angle but elsewhere: orientation 0, MD > 0
    sc = S.make_scene(11, "single", "rotate")
    moved = S.compose(sc.background, [replace(sc.objects_after[0], cx=sc.objects_after[0].cx + 16)])[0]
    r = M.edit_metrics(sc, moved)
    assert r["orientation_deg"] <= 2 and r["md"] == pytest.approx(1.0, abs=0.1)


def test_scale_error_of_no_edit_on_scale_matches_the_factor():
    sc = S.make_scene(3, "large", "scale")
    s = sc.drags["drags"][0]["scale"][0]
    r = M.edit_metrics(sc, no_edit(sc))
    # source spread / target spread ≈ 1/s on both axes (to the pixel grid)
    assert r["scale_err"] == pytest.approx(abs(1 / s - 1), abs=0.12)


def test_cut_paste_moves_and_fills_and_copy_paste_leaves_the_source():
    sc = S.make_scene(30, "single", "move")
    cp, cut = M.edit_metrics(sc, copy_paste(sc)), M.edit_metrics(sc, cut_paste(sc))
    assert cut["md"] == 0 and cut["iou"] == 1 and cut["residue"] == 0 and cut["id_err"] == 0
    assert cp["residue"] == 1 and cut["hole_err"] < 0.3 * cp["hole_err"]
    # rotation and scale are not done by either: a rotate scores like no_edit
    sc = S.make_scene(2, "single", "rotate")
    assert M.edit_metrics(sc, cut_paste(sc))["orientation_deg"] == M.edit_metrics(sc, no_edit(sc))["orientation_deg"]
    # the naive fill: a hole in a linear ramp is filled with values between its rim's
    x = torch.linspace(0, 1, 10)[None, None, :].repeat(1, 10, 1)
    hole = torch.zeros(10, 10, dtype=torch.bool)
    hole[3:7, 3:7] = True
    f = fill_from_surroundings(x, hole)
    assert torch.equal(f[:, ~hole], x[:, ~hole])
    assert float(f[0, hole].min()) >= float(x[0, 2, 2]) - 1e-6
    assert float(f[0, hole].max()) <= float(x[0, 7, 7]) + 1e-6


def test_new_families_hold_what_they_promise():
    for s in range(4):
        sc = S.make_scene(s, "large", "move")
        d = sc.drags["drags"][0]
        assert math.hypot(d["target"][0] - d["handle"][0], d["target"][1] - d["handle"][1]) >= 0.4 * 256
        sc = S.make_scene(s, "overlap", "move")       # the dragged object ends over the other one
        full_static = S.object_mask(sc.objects_after[1])
        assert bool((full_static & sc.masks_after[0]).any())
        assert not bool((sc.masks_after[1] & sc.masks_after[0]).any())   # visible masks
        sc = S.make_scene(s, "border", "move")        # touches a side before, cut by one after
        o, n = sc.objects[0], sc.objects_after[0]
        assert min(o.cx - o.radius, o.cy - o.radius, 256 - o.cx - o.radius, 256 - o.cy - o.radius) < 4
        assert min(n.cx, n.cy, 256 - n.cx, 256 - n.cy) < n.radius
        sc = S.make_scene(s, "parts")
        assert all(o.texture in S.PART_TEXTURES and o.tex_amp == 2.0 for o in sc.objects)
        sc = S.make_scene(s, "large", "scale")
        sx, sy = sc.drags["drags"][0]["scale"]
        assert sx == sy and (sx <= 0.75 or sx >= 1.3)
        assert abs(float(sc.masks_after[0].sum()) / float(sc.masks[0].sum()) - sx * sy) < 0.5


def test_json_rows_shape():
    scenes = benchmark_scenes(9, 4, ["single", "parts"])
    per = {m: [(sc, {**M.edit_metrics(sc, f(sc)), "time": 0.0}) for sc in scenes]
           for m, f in (("no_edit", no_edit), ("ground_truth", ground_truth))}
    rows = aggregate(per, judged={"single"})
    rep = json.loads(json.dumps(json_report(9, 4, rows)))
    assert rep["seed"] == 9 and rep["n"] == 4
    keys = {"method", "family", "case", "n", "md", "found", "iou", "orientation_deg", "scale_err",
            "residue", "seam", "bg", "hole", "id", "s_per_edit"}
    for r in rep["rows"]:
        assert keys <= set(r)
    combos = {(r["method"], r["family"], r["case"]) for r in rep["rows"]}
    for sc in scenes:
        assert ("no_edit", sc.family, sc.case) in combos and ("no_edit", sc.family, "all") in combos
    # the "all" rows cover the judged family only
    allall = [r for r in rep["rows"] if r["family"] == "all" and r["case"] == "all"]
    assert [r["n"] for r in allall] == [2, 2]
    rot = [r for r in rep["rows"] if r["case"] == "rotate"]
    assert rot and all(r["orientation_deg"] is not None for r in rot)
    assert all(r["orientation_deg"] is None for r in rep["rows"] if r["case"] == "move")


def test_run_refuses_zero_reconstruction_scenes_before_any_model_work(capsys):
    """``--recon-scenes 0`` divided by zero after loading the model; now it is an argument error
    naming the option and the fix."""
    from bench.toybench.run import main

    with pytest.raises(SystemExit) as e:
        main(["--recon-scenes", "0", "--n", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--recon-scenes 0" in err and "--no-model" in err
