"""Tier 2, issue 18: LazyDrag's edit quality on toy-world scenes through the real nodes — no box,
no residue at the source, the shape kept, rotation followed, the background exact, identity
better than copy-paste, the hole better than cut-and-paste.

Scenes: the toy-world benchmark's own set (``benchmark_scenes``: families and cases cycled) for
the tests' seed 7, 14 scenes, the families the table judges (``textured_bg`` is not: the model
cannot reconstruct its edits) — 12 scenes: moves, rotations (two or three elastic drags round an
object, fused into one rotation) and scales. Metrics: the benchmark's, by their definitions in
``bench/toybench/metrics.py`` (residue counts every vacated pixel; seam is the relative excess of
gradient energy over the ground truth's). Targets are the issue's, on the means over the scenes
as the table reports them (orientation over the rotate scenes). Baselines: the table's
``copy_paste`` and ``cut_paste`` rows on the same scenes.
"""
from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.tier2

SEED = 7                      # the tests' own seed (tests/test_tier2_toyworld_regression.py)
JUDGED = ("single", "multi", "parts", "border", "overlap", "large")


@pytest.fixture(scope="module")
def results():
    from tools.comfy_env import import_comfy

    import_comfy()
    torch.set_num_threads(1)
    from bench.toybench import pack_methods
    from bench.toybench.methods import copy_paste, cut_paste
    from bench.toybench.metrics import edit_metrics
    from bench.toybench.run import V2_FAMILIES, benchmark_scenes
    from fluxdrag.toyworld.model import load_toy_model

    model, cond = load_toy_model()
    scenes = [sc for sc in benchmark_scenes(SEED, 14, V2_FAMILIES) if sc.family in JUDGED]
    rows = []
    with torch.inference_mode():
        for sc in scenes:
            r = edit_metrics(sc, pack_methods.lazydrag(sc, model, cond))
            r["case"] = sc.case
            r["copy_paste_id"] = edit_metrics(sc, copy_paste(sc))["id_err"]
            r["cut_paste_hole"] = edit_metrics(sc, cut_paste(sc))["hole_err"]
            rows.append(r)
        paper = edit_metrics(scenes[0], pack_methods.lazydrag_paper(scenes[0], model, cond))
    return rows, paper


def _mean(rows, key, case=None):
    v = [r[key] for r in rows if (case is None or r["case"] == case)
         and r[key] is not None and not math.isnan(r[key])]
    return sum(v) / len(v)


def test_object_lands_on_target_with_its_shape(results):
    rows, _ = results
    assert {r["case"] for r in rows} == {"move", "rotate", "scale"}
    assert _mean(rows, "found") == 1.0
    assert _mean(rows, "md") <= 0.5
    assert _mean(rows, "iou") >= 0.8


def test_rotation_followed(results):
    rows, _ = results
    assert _mean(rows, "orientation_deg", "rotate") <= 15.0


def test_no_box_no_residue_background_exact(results):
    rows, paper = results
    # seam energy within 10 % of the ground truth's (the metric is the relative excess)
    assert abs(_mean(rows, "seam")) <= 0.1
    # every vacated pixel counts, the outline where a rotated raster differs from the truth too
    assert _mean(rows, "residue") <= 0.1
    assert _mean(rows, "bg_err") <= 0.02
    # the metric sees the paper's box: the first scene with the paper's settings
    assert paper["seam"] > 0.2   # (0.77 when written; ours 0.00)


def test_beats_the_naive_baselines(results):
    rows, _ = results
    assert _mean(rows, "id_err") < _mean(rows, "copy_paste_id")
    assert _mean(rows, "hole_err") < _mean(rows, "cut_paste_hole")


def test_moves_are_exact(results):
    """A pure move maps latent pixels onto latent pixels: with the content and background locks
    the object arrives as an exact copy and the background is the source's."""
    rows, _ = results
    moves = [r for r in rows if r["case"] == "move"]
    assert moves
    assert max(r["id_err"] for r in moves) < 1e-3
    assert max(r["bg_err"] for r in moves) < 1e-3
    assert max(r["residue"] for r in moves) == 0.0
