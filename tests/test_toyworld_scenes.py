"""Tier 1: toy-world scenes — determinism, exact ground truth, masks, detection, drag JSON."""
from __future__ import annotations

import math

import pytest
import torch

from bench.toybench.methods import copy_paste, ground_truth, no_edit
from bench.toybench.metrics import edit_metrics
from bench.toybench.sampling import sample_scene_latents, sample_small_latents
from fluxdrag.toyworld import scenes as S


def test_seeded_determinism():
    a = S.make_scene(5, "multi")
    b = S.make_scene(5, "multi")
    c = S.make_scene(6, "multi")
    assert torch.equal(a.latent, b.latent) and torch.equal(a.edited, b.edited)
    assert a.drags == b.drags and a.case == b.case
    assert not torch.equal(a.latent, c.latent)
    x1, f1 = sample_scene_latents(3, seed=11)
    x2, f2 = sample_scene_latents(3, seed=11)
    assert torch.equal(x1, x2) and torch.equal(f1, f2)
    assert x1.shape == (3, 16, 32, 32)


def test_basis_orthonormal_and_background_orthogonal_to_signatures():
    q = torch.cat([S.SIGNATURES, S.BG_BASIS])
    assert torch.allclose(q @ q.T, torch.eye(16), atol=1e-5)
    sc = S.make_scene(3, "textured_bg")
    corr = torch.einsum("chw,kc->khw", sc.background, S.SIGNATURES)
    assert corr.abs().max() < 1e-4


def test_disc_mask_hand_count():
    # centre on a latent-pixel centre (132 = 8*16 + 4), radius 20 px: offsets (8i, 8j) with
    # i² + j² ≤ 6.25 → 5 + 2·5 + 2·3 = 21 latent pixels
    obj = S.SceneObject("disc", 0, 132.0, 132.0, 20.0)
    m = S.object_mask(obj)
    assert int(m.sum()) == 21
    assert bool(m[16, 16]) and bool(m[16, 18]) and not bool(m[16, 19]) and bool(m[18, 17])


@pytest.mark.parametrize("family,seed", [("single", 1), ("multi", 2), ("textured_bg", 3)])
def test_move_ground_truth_is_exact_shift(family, seed):
    sc = S.make_scene(seed, family, "move")
    (i,) = sc.moved
    d = sc.drags["drags"][0]
    o, n = sc.objects[i], sc.objects_after[i]
    assert d["handle"] == [int(o.cx), int(o.cy)] and d["target"] == [int(n.cx), int(n.cy)]
    dx, dy = (d["target"][0] - d["handle"][0]) // 8, (d["target"][1] - d["handle"][1]) // 8
    assert (d["target"][0] - d["handle"][0]) % 8 == 0 and (d["target"][1] - d["handle"][1]) % 8 == 0
    rows, cols = torch.nonzero(sc.masks[i], as_tuple=True)
    assert torch.equal(sc.edited[:, rows + dy, cols + dx], sc.latent[:, rows, cols])
    assert torch.equal(sc.masks_after[i], torch.roll(sc.masks[i], (dy, dx), (0, 1)))
    assert int(sc.masks_after[i].sum()) == int(sc.masks[i].sum())
    # static objects are untouched
    for j in range(len(sc.objects)):
        if j != i:
            assert torch.equal(sc.masks[j], sc.masks_after[j])


@pytest.mark.parametrize("family,case,seed", [("single", "move", 4), ("multi", "multi_move", 5),
                                              ("textured_bg", "rotate", 6), ("single", "stretch", 7)])
def test_masks_and_vacated_area(family, case, seed):
    sc = S.make_scene(seed, family, case)
    before, after = sc.masks.any(0), sc.masks_after.any(0)
    # outside every object both latents are exactly the background
    assert torch.equal(sc.latent[:, ~before], sc.background[:, ~before])
    assert torch.equal(sc.edited[:, ~after], sc.background[:, ~after])
    # the vacated area shows the background in the ground truth and the object in the source
    vac = sc.vacated
    assert torch.equal(vac, sc.masks[sc.moved].any(0) & ~after)
    assert bool(vac.any())
    assert torch.equal(sc.edited[:, vac], sc.background[:, vac])
    assert not torch.equal(sc.latent[:, vac], sc.background[:, vac])
    # objects never overlap, before or after
    assert int(sc.masks.sum(0).max()) == 1 and int(sc.masks_after.sum(0).max()) == 1


def test_stretch_scales_area_and_rotate_keeps_area():
    sc = S.make_scene(8, "single", "stretch")
    sx, sy = sc.drags["drags"][0]["scale"]
    assert max(sx, sy) >= 1.3 and min(sx, sy) == 1.0
    ratio = float(sc.masks_after[0].sum()) / float(sc.masks[0].sum())
    assert abs(ratio - sx * sy) < 0.35
    sc = S.make_scene(9, "single", "rotate")
    ratio = float(sc.masks_after[0].sum()) / float(sc.masks[0].sum())
    assert 0.75 < ratio < 1.33
    assert not torch.equal(sc.masks[0], sc.masks_after[0])


def test_families_object_counts():
    for s in range(6):
        assert len(S.make_scene(s, "single").objects) == 1
        assert 2 <= len(S.make_scene(s, "multi").objects) <= 3
        assert 1 <= len(S.make_scene(s, "textured_bg").objects) <= 3
        assert 4 <= len(S.make_scene(s, "crowded").objects) <= 5
    assert S.make_scene(0, "multi", "multi_move").moved == [0, 1]
    with pytest.raises(ValueError, match="multi_move"):
        S.make_scene(0, "single", "multi_move")


def test_detection_finds_objects_by_signature():
    for fam, seed in [("single", 10), ("multi", 11), ("textured_bg", 12), ("crowded", 13)]:
        sc = S.make_scene(seed, fam)
        found = S.detect_all(sc.latent)
        assert set(found) == {o.palette for o in sc.objects}
        for i, o in enumerate(sc.objects):
            d = found[o.palette]
            assert torch.equal(d.mask, sc.masks[i])
            assert math.hypot(d.centre[0] - o.cx, d.centre[1] - o.cy) < 8.0
            assert 0.8 < d.score < 1.2
    # pure noise is not a scene: scattered above-threshold pixels, no compact object
    noise = torch.randn(16, 32, 32, generator=torch.Generator().manual_seed(0))
    assert S.detect_all(noise) == {}


def test_rle_hand_example_and_roundtrip():
    m = torch.tensor([[0, 1, 1], [0, 0, 1]], dtype=torch.bool)
    assert S.rle_encode(m) == {"size": [2, 3], "counts": [1, 2, 2, 1]}
    m2 = torch.tensor([[1, 1], [0, 1]], dtype=torch.bool)
    assert S.rle_encode(m2)["counts"] == [0, 2, 1, 1]
    assert torch.equal(S.rle_decode(S.rle_encode(m2)), m2)


@pytest.mark.parametrize("family,case,seed", [("single", "move", 20), ("multi", "rotate", 21),
                                              ("textured_bg", "stretch", 22), ("multi", "multi_move", 23)])
def test_drag_json_valid(family, case, seed):
    sc = S.make_scene(seed, family, case)
    doc = sc.drags
    assert doc["version"] == 1 and doc["image_size"] == [256, 256]
    assert len(doc["drags"]) >= 1
    for d in doc["drags"]:
        assert set(d) == {"handle", "target", "mode", "scale"}
        for p in (d["handle"], d["target"]):
            assert len(p) == 2 and all(isinstance(v, int) and 0 <= v < 256 for v in p)
        assert d["handle"] != d["target"]
        assert d["mode"] in ("move", "drag")
        assert len(d["scale"]) == 2 and all(v > 0 for v in d["scale"])
    rle = doc["mask"]["rle"]
    assert rle["size"] == [256, 256] and sum(rle["counts"]) == 256 * 256
    px = S.rle_decode(rle)
    assert torch.equal(px, S.latent_mask_to_pixels(sc.masks[sc.moved].any(0)))
    for d in doc["drags"]:   # every handle lies within a dragged object's extent
        assert any(math.hypot(d["handle"][0] - sc.objects[i].cx, d["handle"][1] - sc.objects[i].cy)
                   <= sc.objects[i].radius for i in sc.moved)
    if case == "rotate":
        o = sc.objects[sc.moved[0]]
        for d in doc["drags"]:
            rh = math.hypot(d["handle"][0] - o.cx, d["handle"][1] - o.cy)
            rt = math.hypot(d["target"][0] - o.cx, d["target"][1] - o.cy)
            assert abs(rh - rt) < 1.5 and d["mode"] == "drag"
    else:
        assert all(d["mode"] == "move" for d in doc["drags"])
        assert [(sc.objects_after[i].cx, sc.objects_after[i].cy) for i in sc.moved] == [
            tuple(float(v) for v in d["target"]) for d in doc["drags"]]


def test_to_rgb_shapes_and_range():
    sc = S.make_scene(1, "single")
    rgb = S.to_rgb(sc.latent)
    assert rgb.shape == (3, 256, 256) and float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    assert torch.equal(rgb[:, :8, :8], rgb[:, :1, :1].expand(3, 8, 8))
    assert S.to_rgb(sc.latent[None].repeat(2, 1, 1, 1)).shape == (2, 3, 256, 256)


def test_baseline_metrics():
    sc = S.make_scene(30, "single", "move")
    m_gt = edit_metrics(sc, ground_truth(sc))
    assert m_gt["md"] == 0 and m_gt["bg_err"] == 0 and m_gt["hole_err"] == 0 and m_gt["id_err"] == 0
    m_no = edit_metrics(sc, no_edit(sc))
    d = sc.drags["drags"][0]
    dist = math.hypot(d["target"][0] - d["handle"][0], d["target"][1] - d["handle"][1]) / 16
    assert abs(m_no["md"] - dist) < 1e-6
    assert m_no["bg_err"] == 0 and m_no["hole_err"] > 0.5
    m_cp = edit_metrics(sc, copy_paste(sc))   # exact paste at the target, hole left as is
    assert m_cp["id_err"] == 0 and m_cp["bg_err"] == 0 and m_cp["hole_err"] == m_no["hole_err"]


def test_small_training_scenes():
    x = sample_small_latents(6, seed=3)
    assert x.shape == (6, 16, 16, 16)
    assert torch.equal(x, sample_small_latents(6, seed=3))
    for s in x:
        found = S.detect_all(s)
        assert 1 <= len(found) <= 2 and all(d.area >= 6 for d in found.values())
