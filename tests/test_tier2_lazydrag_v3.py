"""Tier 2, issue 26: LazyDrag on the toy world v3 (``fluxdrag/toyworld/toyflux_v3.safetensors``) — a
regression per family (lit, texture, occlusion, articulated) and the paper mode untouched by the
new settings.

Scenes: ``run.py``'s benchmark set of the test seed over the four v3 families (6 per family).
Bounds: ``bench/toybench/lazydrag_v3.py`` ``bounds()`` of one run on the calibration seed
(``CALIBRATION``; the mean ± 3 standard errors of a difference of two seeds' means ± 10 % ± 0.01,
joint angle ± 2°), copied below with the command that printed them. A newer v3 checkpoint: rerun
that command and replace ``BOUNDS``; never loosen a bound because the test seed failed.
``no_edit`` must break every family's bounds.
"""
from __future__ import annotations

import pytest
import torch
from comfy_fixtures import comfy  # noqa: F401

pytestmark = pytest.mark.tier2

SEED = 404            # the test seed (never the README's 0, nor the tuning seeds 101 / 202)
CALIBRATION = 303
N = 24
# python -m bench.toybench.lazydrag_v3 --seed 303 --n 24 --calibrate
# (recalibrated for content_piece "largest" / content_reference "texture", issue 26 second round; the
# occlusion row again when the bench adapter began to state "depth": "behind" on the drag of "hide"
# scenes: completion 0.321 -> 0.347, md 0.977 -> 0.669, bg_err 0.136 -> 0.048, the rest unchanged;
# texture and articulated for hole_fill "texture", swing_pivot "shaft" and swing_base "keep", and the
# articulated seam bounded, issue 26 third round: lit and occlusion came out the same; for cast_shadow
# "offset", issue 26 fourth round: lit shadow 0.226 -> 0.208, BG 0.035 -> 0.036, ID 0.495 -> 0.496, texture
# hole 0.508 -> 0.509, articulated ID 0.495 -> 0.501, seam 0.221 -> 0.222, the rest the same; for hole_rim 1,
# issue 26 fifth round: lit shadow 0.208 -> 0.175, md 0.142 -> 0.133, IoU 0.639 -> 0.638, ID 0.496 -> 0.491;
# texture hole 0.509 -> 0.503, md 0.174 -> 0.202, IoU 0.665 -> 0.711, ID 0.353 -> 0.328; occlusion and
# articulated the same; for FRAME_CONTACT and reveal_release 4, ninth session: occlusion completion 0.347 ->
# 0.645, md 0.669 -> 0.508, bg_err 0.048 -> 0.017, id_err 0.386 -> 0.372, hole 0.261 -> 0.084; the rest the same;
# for reveal_release 2 and the tenth session's FrontObjects / content / shadow rules: occlusion bg_err 0.017 ->
# 0.016, id_err 0.372 -> 0.379; the rest the same; for stay_continued, eleventh session: articulated IoU
# 0.598 -> 0.601, ID 0.501 -> 0.485, seam 0.222 -> 0.229 (recalibrated on 303, not for a failure: 404 passed
# both before and after); the rest the same; for the tip read from the joint (a latent pixel off the base) and
# the smoothed turned outline of the fine map (OUTLINE_SIGMA, OUTLINE_KEEP), thirteenth session, recalibrated on
# 303 for the changed metric and maps, not for a failure: lit IoU 0.638 -> 0.599, ID 0.491 -> 0.523, shading
# 0.427 -> 0.426; texture md 0.202 -> 0.212, IoU 0.711 -> 0.687, ID 0.328 -> 0.47; articulated joint 7.764 ->
# 8.992, tip 0.551 -> 0.66, IoU 0.601 -> 0.599, seam the same; the rest the same. The bounds follow the
# calibration run's per-scene spread (lit ID 0.279 -> 0.291, texture ID 0.102 -> 0.157 in the means).)
BOUNDS = {
    "lit": {"shading": ("max", 0.426), "shadow": ("max", 0.175), "md": ("max", 0.133), "iou": ("min", 0.599),
            "bg_err": ("max", 0.036), "id_err": ("max", 0.523)},
    "texture": {"hole_err": ("max", 0.503), "md": ("max", 0.212), "iou": ("min", 0.687), "bg_err": ("max", 0.028),
                "id_err": ("max", 0.47)},
    "occlusion": {"completion": ("min", 0.645), "md": ("max", 0.508), "bg_err": ("max", 0.016),
                  "id_err": ("max", 0.379), "hole_err": ("max", 0.084)},
    "articulated": {"joint_deg": ("max", 8.992), "tip": ("max", 0.66), "iou": ("min", 0.599),
                    "bg_err": ("max", 0.04), "id_err": ("max", 0.514), "seam": ("max", 0.229)},
}
# that run's means (seed 303, 6 scenes a family): lit shading 0.223 shadow 0.089 (0.109 before hole_rim, 0.115
# before cast_shadow) md 0.023 IoU 0.930 BG 0.008 ID 0.279; texture hole 0.244 (0.321 before hole_rim) md 0.046
# IoU 0.951 BG 0.004 ID 0.102; occlusion
# completion 0.952 md 0.093 BG 0.003 ID 0.116 (0.115 with reveal_release 4) hole 0.049
# (0.857 / 0.174 / 0.009 / 0.117 / 0.085 before
# FRAME_CONTACT and reveal_release; 0.612 / 0.611 / 0.059 / 0.117 / 0.084 before the stated depth);
# articulated joint 3.3° tip 0.180 IoU 0.844 BG 0.007 ID 0.269 seam 0.046 (IoU 0.827, ID 0.285,
# seam 0.045 before stay_continued). Thirteenth session's run: lit shading 0.223 shadow 0.089 md 0.023 IoU 0.919
# BG 0.008 ID 0.291; texture hole 0.244 md 0.051 IoU 0.931 BG 0.004 ID 0.157; occlusion as above; articulated
# joint 3.8° tip 0.240 IoU 0.846 BG 0.007 ID 0.275 seam 0.046

@pytest.fixture(scope="module")
def v3(comfy):  # noqa: F811  (the fixture of comfy_fixtures)
    torch.set_num_threads(1)
    from bench.toybench.lazydrag_v3 import load, scenes

    model, cond = load()
    return model, cond, scenes(SEED, N)


@pytest.fixture(scope="module")
def measured(v3):
    from bench.toybench.lazydrag_v3 import measure

    model, cond, sc = v3
    return measure(model, cond, sc, ["lazydrag", "no_edit", "copy_paste"])


@pytest.mark.parametrize("family", ["lit", "texture", "occlusion", "articulated"])
def test_lazydrag_v3_regression(measured, family):
    from bench.toybench.lazydrag_v3 import violations

    bounds = {k: tuple(v) for k, v in BOUNDS[family].items()}
    got = measured[family]
    assert not violations(got["lazydrag"], bounds), (family, violations(got["lazydrag"], bounds))
    assert violations(got["no_edit"], bounds), f"{family}: a do-nothing edit passes the bounds"
    assert got["lazydrag"]["id_err"] <= got["copy_paste"]["id_err"] + 1e-6, family


def test_paper_settings_reproduce_the_paper_mode(v3, monkeypatch):
    """``content_lock`` 0 with the paper's settings (every departure at its paper value, the new
    ``content_contrast`` 0, ``swing`` off, ``occluder_contrast`` 0, ``depth`` "over",
    ``content_piece`` "all", ``content_reference`` and ``hole_fill`` "membrane", ``cast_shadow`` "off" among
    them): the new rules never
    run, the map is the one the paper's reading builds (an elastic drag stays elastic), and the edit
    is the paper mode's, bit for bit, whether the new fields are given or left to PAPER."""
    import fluxdrag.core.correspondence as corr
    import fluxdrag.pipelines.lazydrag as ld
    from bench.toybench import pack_methods
    from fluxdrag.core.instructions import parse_instructions, pixel_mask_to_token_mask, to_token_space
    from fluxdrag.pipelines.settings import departures
    from fluxdrag.toyworld.scenes import make_scene

    paper_values = departures(ld.LazyDragSettings)
    assert ld.PAPER.content_lock == 0.0 and ld.PAPER.content_contrast == 0.0 and ld.PAPER.swing is False
    assert ld.PAPER.occluder_contrast == 0.0 and ld.PAPER.depth == "over"
    assert ld.PAPER.content_piece == "all" and ld.PAPER.content_reference == "membrane"
    assert ld.PAPER.hole_fill == "membrane" and ld.PAPER.hole_lock == 0.0
    assert ld.PAPER.cast_shadow == "off"
    model, cond, _ = v3
    bend = make_scene(1000 * SEED + 999, "articulated", "bend")
    lit = make_scene(1000 * SEED + 998, "lit", "move")
    plan = ld.build_plan(bend.drags, bend.latent[None], settings=ld.PAPER)
    ins = parse_instructions(bend.drags)
    td = to_token_space(ins, (bend.latent.shape[-2] * 8, bend.latent.shape[-1] * 8))
    ref = corr.build_correspondence(td, td.grid_hw, region_mask=pixel_mask_to_token_mask(ins.mask),
                                    transition_width=1)
    assert plan.cmap.drags.modes == ["drag"] and plan.cmap.fine is None
    for name in ("matching", "weight", "destination", "inpaint", "transition", "background"):
        assert torch.equal(getattr(plan.cmap, name), getattr(ref, name)), name

    def refuse(*a, **k):
        raise AssertionError("a new rule ran in the paper mode")

    paper = [pack_methods.lazydrag_paper(sc, model, cond) for sc in (bend, lit)]
    monkeypatch.setattr(ld, "content_pixels", refuse)
    monkeypatch.setattr(corr, "swing_lone_drags", refuse)
    monkeypatch.setattr(ld, "FrontObjects", refuse)
    monkeypatch.setattr(ld, "behind_objects", refuse)
    monkeypatch.setattr(corr, "behind_pivots", refuse)
    monkeypatch.setattr(ld, "with_shadow", refuse)
    # the texture hole fill and the carried shadow's ground test: the Patch's only texture entry
    monkeypatch.setattr("fluxdrag.attention_patches.lazydrag.continued_texture", refuse)
    again = [pack_methods.lazydrag(sc, model, cond, **{**paper_values, "content_lock": 0.0})
             for sc in (bend, lit)]
    for a, b in zip(paper, again):
        assert torch.isfinite(a).all() and torch.equal(a, b)
