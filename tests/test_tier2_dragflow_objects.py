"""Tier 2: DragFlow keeps objects and lands rotations and bends (issue 27).

Before issue 27, small and thin objects dissolved under DragFlow: a two-object ``multi`` rotation
and a ``parts`` rotation lost their object or its pose (seed 101: found 0, 74°; 53°), and on the v3
world the thin free segment of a bent limb vanished (joint 93°). This set is the cases that
failed: rotations on ``single``/``multi``/``parts`` (shipped weights) and ``bend`` on
``articulated`` (v3 weights), with the node's defaults through the bench adapter
(``bench.toybench.pack_methods.dragflow``: the rotate region about the object's centre, the bend
about the scene's joint).

Bounds come from ONE run on ``CALIBRATION_SEED`` by the rule of
``test_tier2_toyworld_regression.py`` (an error may grow to max(1.5 × v, v + 0.1); a score may fall
to v / 2) and are tested on ``SEED``; ``found`` is held to the issue's target (≥ 0.95) instead,
and the angles get a floor of 10° (a 3° grid can't pin less on four scenes). The do-nothing edit
violates them (it scores the rotation angle itself). Recalibrate with

    python tests/test_tier2_dragflow_objects.py 303
"""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.tier2

SEED = 404               # the tests' own seed
CALIBRATION_SEED = 303   # the seed the bounds come from (issue 27's code, 1 thread; recalibrated when
#                          background 'proposal' and the matched inversion guidance came in, and
#                          again for content_contrast / occluder_contrast / depth)
ROTATE_FAMILIES = ("single", "multi", "parts")
#: seed-303 means (``python tests/test_tier2_dragflow_objects.py 303``)
CALIBRATION = {
    "rotate": {"found": 1.0, "orientation_deg": 2.5},     # no_edit: 42.7 (before: 2.667, 8.833)
    "bend": {"found": 1.0, "joint_deg": 0.5},              # no_edit: 63.0 (before: 3.0)
}
ANGLE_FLOOR = 10.0


def scene_set(seed: int) -> dict:
    from fluxdrag.toyworld.scenes import make_scene

    rot = [make_scene(1000 * seed + 10 * i + k, fam, "rotate")
           for k in range(2) for i, fam in enumerate(ROTATE_FAMILIES)]
    bend = [make_scene(1000 * seed + 100 + k, "articulated", "bend") for k in range(2)]
    return {"rotate": rot, "bend": bend}


def run_set(seed: int, method: str = "dragflow") -> dict:
    """Mean metrics of ``method`` on the set of ``seed``: {"rotate": {...}, "bend": {...}}."""
    from bench.toybench import pack_methods  # noqa: F401
    from bench.toybench.methods import METHODS
    from bench.toybench.metrics import edit_metrics, mean_metrics
    from fluxdrag.toyworld.model import HERE, load_toy_model

    out = {}
    for key, scenes in scene_set(seed).items():
        weights = HERE / ("toyflux_v3.safetensors" if key == "bend" else "toyflux.safetensors")
        model, cond = load_toy_model(weights)
        rows = []
        for sc in scenes:
            with torch.inference_mode():
                rows.append(edit_metrics(sc, METHODS[method](sc, model, cond)))
        out[key] = mean_metrics(rows)
    return out


def bounds(key: str) -> dict:
    cal = CALIBRATION[key]
    out = {"found": (">=", 0.95)}
    for m, v in cal.items():
        if m != "found":
            out[m] = ("<=", max(1.5 * v, v + 0.1, ANGLE_FLOOR))
    return out


def violations(res: dict) -> list[str]:
    bad = []
    for key, bs in ((k, bounds(k)) for k in CALIBRATION):
        for m, (op, b) in bs.items():
            v = res[key][m]
            if not (v >= b if op == ">=" else v <= b):
                bad.append(f"{key} {m} {v:.3f} not {op} {b:.3f}")
    return bad


@pytest.fixture(scope="module")
def measured():
    from tools.comfy_env import import_comfy

    import_comfy()
    torch.set_num_threads(1)
    return {m: run_set(SEED, m) for m in ("no_edit", "dragflow")}


#: (set, metric): what the test seed measured against the bound (strict xfail: a fix turns it
#: into an error). Empty since the rotations of seed 404 that came out 40° and 144° off with a
#: right proposal (404001, 404021) land: the held background and the start are now one inversion
#: (of the proposal), inverted at the edit's guidance, with no fresh hole cell and no INTENSIFY.
KNOWN_MISSES: dict = {}


def test_no_edit_fails_the_bounds(measured):
    assert violations(measured["no_edit"]), measured["no_edit"]


def _cases():
    for key in CALIBRATION:
        for metric in bounds(key):
            miss = KNOWN_MISSES.get((key, metric))
            marks = [pytest.mark.xfail(strict=True, reason=miss)] if miss else []
            yield pytest.param(key, metric, marks=marks, id=f"{key}-{metric}")


@pytest.mark.parametrize(("key", "metric"), list(_cases()))
def test_dragflow_meets_its_bound(measured, key, metric):
    op, b = bounds(key)[metric]
    v = measured["dragflow"][key][metric]
    assert (v >= b if op == ">=" else v <= b), f"{key} {metric} {v:.3f} not {op} {b:.3f}"


if __name__ == "__main__":   # calibration: python tests/test_tier2_dragflow_objects.py SEED
    import sys
    from pathlib import Path

    from tools.comfy_env import import_comfy

    import_comfy()
    torch.set_num_threads(1)
    for meth in ("no_edit", "dragflow"):
        r = run_set(int(sys.argv[1]), meth)
        print(meth, {k: {m: round(v, 3) for m, v in d.items() if isinstance(v, float)
                         and m in ("found", "orientation_deg", "joint_deg", "md", "iou")} for k, d in r.items()})


def test_adapter_keeps_an_object_split_by_one_in_front_in_one_region():
    """Scene 121001 (``occlusion``, reveal): the object in front cuts the dragged object's visible
    part in two, and only one piece holds the drag. Both pieces make one relocate region (the toy
    user paints the object); before, the drag-less piece stayed behind and DragFlow's edit showed
    the object at its source (completion 0, MD 5.0)."""
    from bench.toybench.methods import _region_latent
    from bench.toybench.pack_methods import dragflow_regions
    from fluxdrag.core.instructions import parse_instructions
    from fluxdrag.toyworld.scenes import _components, make_scene

    sc = make_scene(121001, "occlusion")
    h, w = sc.latent.shape[-2:]
    assert len(_components(_region_latent(sc.drags, h, w))) == 2
    regions = dragflow_regions(sc)
    assert [r["op"] for r in regions] == ["relocate"]
    mask = parse_instructions({**sc.drags, "mask": regions[0]["mask"]}).mask
    cells = torch.nn.functional.adaptive_max_pool2d(mask[None, None].float(), (h, w))[0, 0] > 0
    assert bool(cells[sc.masks[sc.moved[0]]].all())


@pytest.mark.parametrize("hold", [0.6, 1.0])
def test_a_bent_limb_does_not_vanish_under_the_destination_hold(hold):
    """``destination_hold`` [ours]: toy bend 245019 (v3 weights). With the moved region's cells free from
    σ₀, the model erased the thin free segment at its new pose (IoU 0.57, joint error 108°) although the
    proposal had it right; held on the proposal's inversion path down to σ 0.6 it lands (IoU 0.89, 1°)."""
    from tools.comfy_env import import_comfy

    import_comfy()
    from bench.toybench.metrics import edit_metrics
    from bench.toybench.pack_methods import dragflow
    from fluxdrag.toyworld.model import HERE, load_toy_model
    from fluxdrag.toyworld.scenes import make_scene

    torch.set_num_threads(1)
    sc = make_scene(245019, "articulated", "bend")
    model, cond = load_toy_model(HERE / "toyflux_v3.safetensors")
    with torch.inference_mode():
        m = edit_metrics(sc, dragflow(sc, model, cond, destination_hold=hold))
    landed = m["iou"] >= 0.85 and m["joint_deg"] <= 5.0
    assert landed == (hold < 1.0), m
