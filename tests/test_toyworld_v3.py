"""Tier 1: toy world v3 — the old families' scenes unchanged, the v3 families' physics and exact
ground truth, the v3 metrics (0 on the ground truth), and the issue's acceptance on the
model-free baselines (cut_paste clearly wrong where it should be).

Acceptance thresholds are the issue's (#24): cut_paste on lit: shadow ≥ 0.1 and shading ≥ 0.1;
texture: hole ≥ 0.2; occlusion: completion ≤ 0.8; articulated: joint° ≥ 10. They were checked on
the calibration seed 7 (12 scenes per family, ``V3_N``: lit shadow 0.30, shading 0.14; texture
hole 0.70; occlusion completion 0.68; articulated joint 47°) and are tested here on seed 23,
neither the README table's seed (0) nor the calibration seed.
"""
from __future__ import annotations

import math

import pytest
import torch

from bench.toybench import metrics as M
from bench.toybench.methods import copy_paste, cut_paste, ground_truth, no_edit
from fluxdrag.toyworld import scenes as S
from fluxdrag.toyworld import scenes_v3 as V

CALIBRATION_SEED = 7
TEST_SEED = 23
V3_N = 12


# sums of the latent and the ground truth (and the first drag) of scenes of the earlier families,
# recorded with the code before toy world v3: the old families' seeds still give the same scenes
PINNED = {
    ("single", "move"): (1436.534, 1432.596, [112, 80], [184, 136]),
    ("multi", "multi_move"): (1835.357, 1791.333, [196, 104], [204, 176]),
    ("textured_bg", "rotate"): (-2057.796, -2057.196, [206, 191], [196, 193]),
    ("crowded", "stretch"): (1760.152, 1766.118, [64, 92], [80, 124]),
    ("parts", "scale"): (-541.805, -470.35, [188, 68], [132, 76]),
    ("border", "move"): (1545.864, 1541.022, [232, 228], [240, 132]),
    ("overlap", "move"): (-2151.412, -2151.497, [72, 224], [80, 152]),
    ("large", "move"): (-5509.13, -5532.99, [88, 108], [184, 196]),
    ("single", None): (-5126.292, -5200.718, [152, 184], [184, 144]),
}


@pytest.mark.parametrize("key", list(PINNED))
def test_old_families_give_the_same_scenes(key):
    fam, case = key
    sc = S.make_scene(4242, fam, case)
    lat, ed, h, t = PINNED[key]
    assert abs(float(sc.latent.double().sum()) - lat) < 1e-2
    assert abs(float(sc.edited.double().sum()) - ed) < 1e-2
    assert sc.drags["drags"][0]["handle"] == h and sc.drags["drags"][0]["target"] == t
    assert sc.light is None and sc.shadows is None


def test_v3_families_and_cases_are_registered():
    assert set(S.V3_FAMILIES) == {"lit", "texture", "occlusion", "articulated"}
    assert all(f in S.FAMILIES for f in S.V3_FAMILIES) and "bend" in S.CASES
    assert S.NEW_FAMILY_CASES["articulated"] == ("bend",)
    with pytest.raises(ValueError, match="bend"):
        S.make_scene(1, "single", "bend")
    with pytest.raises(ValueError, match="articulated"):
        S.make_scene(1, "articulated", "move")


@pytest.mark.parametrize("family", S.V3_FAMILIES)
def test_v3_scenes_are_seeded_and_lit(family):
    a, b = S.make_scene(3, family), S.make_scene(3, family)
    assert torch.equal(a.latent, b.latent) and torch.equal(a.edited, b.edited) and a.drags == b.drags
    assert a.light is not None and a.shadows.shape == (len(a.objects), 32, 32)
    # background, light and shadows stay orthogonal to every object signature
    sig = torch.einsum("chw,kc->khw", a.background, S.SIGNATURES)
    assert sig.abs().max() < 1e-4
    assert float((S.SIGNATURES @ V.LIGHT_DIR).abs().max()) < 1e-5
    # every object is found by its signature before and after, inside its visible mask
    for i, o in enumerate(a.objects):
        for lat, masks in ((a.latent, a.masks), (a.edited, a.masks_after)):
            d = S.detect_objects(lat, o.palette)
            assert d.centre is not None and not bool((d.mask & ~masks[i]).any())
    # the JSON's editable region holds the dragged object's pixels and its shadow
    region = S.rle_decode(a.drags["mask"]["rle"])[4::8, 4::8]
    assert bool(region.any())
    if family != "articulated":
        assert bool((region & a.masks[a.moved[0]]).sum() == (a.masks[a.moved[0]]).sum())
        shadow_only = (a.shadows[a.moved[0]] > V.SHADOW_THRESHOLD) & ~a.masks.any(0)
        assert bool((region & shadow_only).any())


def test_lit_reshades_and_moves_the_shadow():
    sc = S.make_scene(5, "lit", "move")
    o, n = sc.objects[0], sc.objects_after[0]
    dx, dy = int(n.cx - o.cx) // 8, int(n.cy - o.cy) // 8
    rows, cols = torch.nonzero(sc.masks[0], as_tuple=True)
    # same object, new light: not a copy of the source pixels
    assert not torch.allclose(sc.edited[:, rows + dy, cols + dx], sc.latent[:, rows, cols], atol=0.05)
    val, _ = V._value(n, 32, 32)
    shade = V.intensity(n, sc.light, 32, 32)
    assert torch.allclose(sc.edited[:, sc.masks_after[0]], (val * shade[None])[:, sc.masks_after[0]])
    # the shadow moved with the object; the old shadow's area shows lit background
    old = (sc.shadows[0] > 0.5) & ~sc.masks.any(0) & ~sc.masks_after.any(0) & (sc.shadows_after[0] < 0.01)
    assert bool(old.any())
    lit_bg = sc.background + (V.ground_light(sc.light, 32, 32)[None] * V.LIGHT_DIR[:, None, None])
    assert torch.allclose(sc.edited[:, old], lit_bg[:, old], atol=1e-5)
    darker = torch.einsum("cn,c->n", lit_bg[:, old] - sc.latent[:, old], V.LIGHT_DIR)
    assert float(darker.min()) > 0.1                  # it was in shadow: darker along the light
    assert not torch.equal(sc.shadows[0] > 0.5, sc.shadows_after[0] > 0.5)


def test_lit_rotation_reshades_by_orientation():
    sc = S.make_scene(6, "lit", "rotate")
    o, n = sc.objects[0], sc.objects_after[0]
    assert o.tilt != 0 and abs(n.angle - o.angle) >= math.radians(45) - 1e-6
    i0 = V.intensity(o, sc.light, 32, 32)
    i1 = V.intensity(n, sc.light, 32, 32)
    both = sc.masks[0] & sc.masks_after[0]
    assert float((i0 - i1)[both].abs().mean()) > 0.02


def test_texture_continues_under_the_vacated_area():
    kinds = {S.make_scene(s, "texture").extra["kind"] for s in range(30)}
    assert kinds == set(V.BG_TEXTURES)
    sc = S.make_scene(2, "texture", "move")
    vac = sc.vacated & (sc.shadows_after.amax(0) < 1e-3)
    lit_bg = sc.background + (V.ground_light(sc.light, 32, 32)[None] * V.LIGHT_DIR[:, None, None])
    assert torch.allclose(sc.edited[:, vac], lit_bg[:, vac], atol=1e-5)
    # the background is textured: far from smooth (its gradient energy dwarfs a smooth one's)
    smooth = S.make_scene(2, "single").background
    full = torch.ones(32, 32, dtype=torch.bool)
    assert M.gradient_energy(sc.background, full) > 4 * M.gradient_energy(smooth, full)


def test_occlusion_reveals_and_hides():
    seen = set()
    for s in range(12):
        sc = S.make_scene(s, "occlusion")
        kind = sc.extra["kind"]
        seen.add(kind)
        full_after = S.object_mask(sc.objects_after[0])
        full_before = S.object_mask(sc.objects[0])
        if kind == "reveal":      # hidden part before, whole object after
            hidden = 1 - sc.masks[0].sum() / full_before.sum()
            assert 0.2 <= float(hidden) <= 0.6
            assert torch.equal(sc.masks_after[0], full_after)
        else:                     # whole before, partly hidden behind the other object after
            assert torch.equal(sc.masks[0], full_before)
            hidden = 1 - sc.masks_after[0].sum() / full_after.sum()
            assert 0.2 <= float(hidden) <= 0.6
    assert seen == {"reveal", "hide"}


def test_articulated_bends_about_the_joint_and_the_rest_stays():
    sc = S.make_scene(4, "articulated", "bend")
    limb, bent = sc.objects[0], sc.objects_after[0]
    assert isinstance(limb, V.Limb) and limb.joint == bent.joint and (limb.x0, limb.y0) == (bent.x0, bent.y0)
    assert 35 <= abs(sc.extra["bend_deg"]) <= 75
    assert math.isclose(math.degrees(bent.bend - limb.bend), sc.extra["bend_deg"], abs_tol=1e-6)
    d = sc.drags["drags"]
    assert len(d) == 1 and d[0]["mode"] == "drag"
    assert math.dist(d[0]["handle"], limb.tip) < 1 and math.dist(d[0]["target"], bent.tip) < 1
    # the base segment's pixels are the same before and after (away from the joint)
    base = V.Limb(limb.palette, limb.x0, limb.y0, limb.len1 - limb.width - 8, 0.0, limb.angle, 0.0,
                  limb.width)
    bm = V.mask_at(base, *S.pixel_grid(32, 32)) & sc.masks[0] & sc.masks_after[0]
    assert bool(bm.any())
    assert torch.allclose(sc.edited[:, bm], sc.latent[:, bm])


@pytest.mark.parametrize("family", S.V3_FAMILIES)
def test_ground_truth_scores_zero_on_every_v3_metric(family):
    cases = S.NEW_FAMILY_CASES[family]
    for j in range(4):
        sc = S.make_scene(300 + j, family, cases[j % len(cases)])
        m = M.edit_metrics(sc, ground_truth(sc))
        assert m["md"] == 0 and m["iou"] == 1 and m["found"] == 1
        for k in ("bg_err", "hole_err", "id_err", "shadow", "shading"):
            assert m[k] == 0 or (isinstance(m[k], float) and math.isnan(m[k])), k
        assert m["completion"] == (1.0 if family == "occlusion" else None)
        if family == "articulated":
            assert m["joint_deg"] == 0 and m["tip"] == 0
        else:
            assert m["joint_deg"] is None and m["tip"] is None


def test_old_families_report_no_v3_metrics():
    sc = S.make_scene(30, "single", "move")
    m = M.edit_metrics(sc, no_edit(sc))
    assert all(m[k] is None for k in ("shadow", "shading", "completion", "joint_deg", "tip"))


def test_scale_error_survives_a_zero_spread_axis():
    line = torch.zeros(32, 32, dtype=torch.bool)
    line[10, 5:15] = True                                  # one latent pixel tall: σ_y = 0
    assert M.scale_error(line, line) == 0
    wide = line.clone()
    wide[11, 5:15] = True                                  # two pixels tall: σ_y = 4 px
    e = M.scale_error(wide, line)
    assert math.isfinite(e) and abs(e - (4.0 / M.MIN_SPREAD - 1) / 2) < 1e-6


def test_no_edit_bend_scores_the_bend_angle():
    sc = S.make_scene(8, "articulated", "bend")
    m = M.edit_metrics(sc, no_edit(sc))
    assert abs(m["joint_deg"] - abs(sc.extra["bend_deg"])) < 2.0
    assert m["tip"] > 1.0


def _means(seed: int, family: str, method) -> dict:
    cases = S.NEW_FAMILY_CASES[family]
    rows = [M.edit_metrics(sc, method(sc)) for sc in
            (S.make_scene(1000 * seed + i, family, cases[i % len(cases)]) for i in range(V3_N))]
    return M.mean_metrics(rows)


def test_acceptance_cut_paste_is_clearly_wrong_on_v3():
    """Issue #24's acceptance on a seed never used to calibrate (module doc)."""
    lit = _means(TEST_SEED, "lit", cut_paste)
    assert lit["shadow"] >= 0.1 and lit["shading"] >= 0.1
    assert _means(TEST_SEED, "texture", cut_paste)["hole_err"] >= 0.2
    assert _means(TEST_SEED, "occlusion", cut_paste)["completion"] <= 0.8
    assert _means(TEST_SEED, "articulated", cut_paste)["joint_deg"] >= 10


def test_copy_paste_leaves_the_old_shadow():
    sc = S.make_scene(9, "lit", "move")
    m_cp, m_cut = M.edit_metrics(sc, copy_paste(sc)), M.edit_metrics(sc, cut_paste(sc))
    assert m_cp["shadow"] > 0.1 and m_cut["shadow"] > 0.05



def test_tip_reads_the_free_end_past_a_right_angle():
    """A bend past about 100° brings the free end nearer the base end than the joint's outer edge:
    the four mask pixels farthest from the base end were read as the free end, 0.6–2.0 tokens off
    the limb's tip on 11 of these 100 ground truths (tuning seed 153), so an edit one pixel from the
    truth could score a tip of 1.5. ``free_end`` reads from the joint, off the base segment."""
    far = 0
    for seed in range(153000, 153100):
        sc = S.make_scene(seed, "articulated", "bend")
        limb, bent = sc.objects[sc.moved[0]], sc.objects_after[sc.moved[0]]
        gt = S.detect_objects(sc.edited, limb.palette).mask
        assert math.dist(M.free_end(gt, limb), bent.tip) < 0.4 * M.TOKEN_PX, seed
        far += abs(math.degrees(bent.bend)) > 105
    assert far >= 5                          # the scenes that misled the old reading are there
