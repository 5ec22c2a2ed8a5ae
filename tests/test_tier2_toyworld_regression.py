"""Tier 2: per-method regression tests on the toy world (issues 16, 25).

On the tests' own seed (``SEED``), each pack method runs through its real nodes on the six
move-type scenes of ``bench/toybench/regression.py``; every metric of every method must stay
within a bound computed from ONE run on another seed (``CALIBRATION_SEED``),

    python -m bench.toybench.regression --seed 4242      (shipped weights, 1 thread)

by one rule for all methods and metrics, fixed before the test seed was run (issue 25):

- an error (md, residue, seam, bg_err, hole_err, id_err) may grow to max(1.5 × v, v + 0.1):
  1.5× for values well above 0, + 0.1 of residue for values near 0 (six scenes per seed vary
  that much);
- a score (found, iou) may fall to v / 2.

A bound is never moved because the test seed failed it: a metric that six scenes cannot pin is
marked here as an expected failure with its numbers (``KNOWN_MISSES``), so that it stays visible
and a fix turns it into an error (strict). The do-nothing edit (``no_edit``) must violate every
method's bounds — on the test seed (``test_no_edit_fails_every_method``) and on the calibration
run itself (``test_no_edit_fails_every_method_on_the_calibration_run``).

The tests' seed was 7 until issue 25; some bounds had been loosened or dropped after failing on
seed 7 (LazyDrag hole 0.047 → 0.13, AttentionDrag's residue dropped) and DragFlow's were older
than its fix (bg < 0.13, hole < 1.27: ``no_edit`` passed them). Issue 25 recalibrated every method
on seed 4242 with today's code and weights and moved the test seed to 2718, never used before.
Issue 27 recalibrated DragFlow's row on seed 4242 by the same rule (its new start latent; before:
md 0.242, iou 0.841, hole 0.027, id 0.342), and again for its content/shadow proposal
(``content_contrast``; before: md 0.113, iou 0.921, hole 0.026, id 0.115).
"""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.tier2

SEED = 2718              # the tests' own seed
CALIBRATION_SEED = 4242  # the seed the bounds come from (never 0: the README table's seed)

ERRORS = ("md", "residue", "seam", "bg_err", "hole_err", "id_err")
SCORES = ("found", "iou")

# seed-4242 means, today's code and shipped weights (issue 25):
# method:          md     found  iou    residue seam   bg     hole   id
CALIBRATION = {
    "no_edit":        (7.151, 1.00, 0.000, 1.000, 0.000, 0.000, 0.939, 0.932),
    "cut_paste":      (0.000, 1.00, 1.000, 0.000, 0.000, 0.000, 0.041, 0.000),
    "lazydrag":       (0.000, 1.00, 1.000, 0.000, 0.000, 0.000, 0.031, 0.000),
    "lazydrag_paper": (2.274, 0.75, 0.257, 0.000, 1.298, 0.799, 1.244, 1.047),
    "attentiondrag":  (0.226, 1.00, 0.837, 0.000, 0.000, 0.000, 0.071, 0.155),  # issue 29's code
    "dragflow":       (0.000, 1.00, 1.000, 0.000, 0.000, 0.000, 0.023, 0.010),  # issue 27's code
}
COLUMNS = ("md", "found", "iou", "residue", "seam", "bg_err", "hole_err", "id_err")
METHODS_UNDER_TEST = ("lazydrag", "lazydrag_paper", "attentiondrag", "dragflow")

# (method, metric): what the test seed measured against the bound. AttentionDrag's residue miss
# (seed 2718: 0.260 vs 0.156 before issue 29) is gone: issue 29's code was recalibrated on seed
# 4242 by the same rule and moves objects whole; its hole is the one metric six scenes do not pin.
KNOWN_MISSES = {
    ("attentiondrag", "hole_err"): "seed 2718 measured 0.183 vs bound 0.171 (calibration 0.071)",
}


def bound(metric: str, v: float) -> tuple[str, float]:
    """(op, bound) of ``metric`` for calibration value ``v`` (the rule in the module doc)."""
    if metric in SCORES:
        return ">", v / 2.0
    return "<", max(1.5 * v, v + 0.1)


def thresholds(method: str) -> dict[str, tuple[str, float]]:
    return {m: bound(m, v) for m, v in zip(COLUMNS, CALIBRATION[method])}


def violations(r: dict, method: str) -> list[str]:
    """The bounds of ``method`` that the metrics ``r`` do not meet."""
    out = []
    for key, (op, b) in thresholds(method).items():
        ok = r[key] <= b if op == "<" else r[key] >= b
        if not ok:
            out.append(f"{key} {r[key]:.3f} not {op} {b:.3f}")
    return out


def test_rule_gives_meaningful_bounds():
    """The bounds as the rule computes them (pinned, so a change of rule is a visible diff)."""
    assert thresholds("dragflow")["bg_err"] == ("<", 0.1)
    assert thresholds("dragflow")["hole_err"] == pytest.approx(("<", 0.123))
    assert thresholds("lazydrag")["hole_err"] == pytest.approx(("<", 0.131))
    assert thresholds("attentiondrag")["md"] == pytest.approx(("<", 0.339))
    assert thresholds("lazydrag_paper")["iou"] == pytest.approx((">", 0.1285))


@pytest.mark.parametrize("method", METHODS_UNDER_TEST)
def test_no_edit_fails_every_method_on_the_calibration_run(method):
    r = dict(zip(COLUMNS, CALIBRATION["no_edit"]))
    assert violations(r, method), f"no_edit meets every bound of {method}"


@pytest.fixture(scope="module")
def results():
    from tools.comfy_env import import_comfy

    import_comfy()
    torch.set_num_threads(1)
    from bench.toybench.regression import METHODS, run_methods
    from fluxdrag.toyworld.model import load_toy_model

    model, cond = load_toy_model()
    return run_methods(SEED, METHODS, model, cond)


def test_cut_paste_is_exact_on_moves(results):
    r = results["cut_paste"]
    assert r["md"] == 0 and r["iou"] == 1 and r["residue"] == 0 and r["id_err"] == 0


@pytest.mark.parametrize("method", METHODS_UNDER_TEST)
def test_no_edit_fails_every_method(results, method):
    """The do-nothing edit on the test seed violates at least one bound of every method."""
    assert violations(results["no_edit"], method), f"no_edit meets every bound of {method}"


@pytest.mark.parametrize("method", METHODS_UNDER_TEST)
def test_method_beats_no_edit(results, method):
    r, base = results[method], results["no_edit"]
    assert r["md"] < 0.6 * base["md"], (method, r["md"], base["md"], r["md_per_scene"])


def _cases():
    for method in METHODS_UNDER_TEST:
        for metric in COLUMNS:
            miss = KNOWN_MISSES.get((method, metric))
            marks = [pytest.mark.xfail(strict=True, reason=miss)] if miss else []
            yield pytest.param(method, metric, marks=marks, id=f"{method}-{metric}")


@pytest.mark.parametrize(("method", "metric"), list(_cases()))
def test_method_meets_its_bound(results, method, metric):
    op, b = thresholds(method)[metric]
    v = results[method][metric]
    ok = v <= b if op == "<" else v >= b
    assert ok, f"{method} {metric} {v:.3f} not {op} {b:.3f} (MD per scene {results[method]['md_per_scene']})"
