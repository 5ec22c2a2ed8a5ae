"""Tier 2: AttentionDrag on the toy world (issue 29): objects arrive, the background stays.

On the tests' own seed (``SEED``) AttentionDrag runs through ``run_attention_drag`` (the bench's
adapter, the node's defaults) on the six move-type scenes of ``bench/toybench/regression.py``
(single, multi (two objects, one drawn region), parts, border, overlap, large) and must meet
the thresholds below; ``no_edit`` (the do-nothing edit) must fail them. The thresholds come from
ONE run on another seed,

    python -m bench.toybench.regression --seed 11 --methods no_edit attentiondrag

(shipped weights, 1 thread), whose means are quoted next to them. Slack rule [guess], as in
``test_tier2_toyworld_regression.py``: an error may grow to 1.5× its calibration value plus 0.1,
a score may fall to half (IoU); ``found`` must stay 1 minus one scene in six.
"""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.tier2

SEED = 23         # the tests' own seed (17 was used to diagnose the drawn-mask debris, so it was dropped)
CAL_SEED = 11     # the calibration seed (neither is the README table's seed 0)

# seed-11 means (md, found, iou, residue, seam, bg, hole, id):
#   no_edit        6.552 1.00 0.022 1.000 0.000 0.000 0.985 0.957
#   attentiondrag  0.028 1.00 0.972 0.000 -0.000 0.000 0.315 0.104   (per-scene MD 0 0 0.08 0.08
#                  0 0). Recalibrated on seed 11 twice, each time the defaults changed: content_lock
#                  0.5 → 0.75 and drawn masks moved whole (before: 0.272 1.00 0.832 0.047 0.053 0.015
#                  0.309 0.291, then 0.231 1.00 0.865 0.050 0.054 0.020 0.310 0.258). Before issue 29,
#                  on seed 4242: 3.005 1.00 0.065 0.056 4.761 0.266 0.528 0.887
THRESHOLDS = {
    # metric: (op, bound); "<" = at most, ">" = at least; seam is bounded in absolute value
    "md": ("<", 0.14),          # 1.5 · 0.028 + 0.1
    "found": (">", 5 / 6 - 1e-9),
    "iou": (">", 0.48),         # 0.972 / 2
    "bg_err": ("<", 0.10),      # 1.5 · 0.000 + 0.1
    "seam": ("<", 0.10),        # 1.5 · 0.000 + 0.1, on |seam|
    "hole_err": ("<", 0.57),    # 1.5 · 0.315 + 0.1
}


@pytest.fixture(scope="module")
def results():
    from tools.comfy_env import import_comfy

    import_comfy()
    torch.set_num_threads(1)
    from bench.toybench.regression import run_methods
    from fluxdrag.toyworld.model import load_toy_model

    model, cond = load_toy_model()
    return run_methods(SEED, ["no_edit", "attentiondrag"], model, cond)


def _failures(r: dict) -> list[str]:
    out = []
    for key, (op, bound) in THRESHOLDS.items():
        v = abs(r[key]) if key == "seam" else r[key]
        ok = v <= bound if op == "<" else v >= bound
        if not ok:
            out.append(f"{key} {v:.3f} not {op} {bound:.3f}")
    return out


def test_attentiondrag_moves_objects_and_keeps_the_background(results):
    r = results["attentiondrag"]
    assert not _failures(r), (_failures(r), r["md_per_scene"])
    assert r["hole_err"] < results["no_edit"]["hole_err"]    # the hole target


def test_do_nothing_fails_the_thresholds(results):
    r = results["no_edit"]
    fails = _failures(r)
    assert any(f.startswith("md ") for f in fails), fails
