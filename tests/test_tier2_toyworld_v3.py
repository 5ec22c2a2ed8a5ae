"""Tier 2: toy world v3 with the real ComfyUI — every pack method runs on every v3 family through
the benchmark's adapters (they need not score well yet: that is the next issues), DragFlow's
adapter bends an articulated part with a ``rotate`` region about the scene's joint, the v3
checkpoint loads with a condition per v3 family, and ``run.py --json`` carries the v3 families,
metrics and the per-family ``represented`` / ``denoise_err``."""
from __future__ import annotations

import json
import math

import pytest
import torch
from comfy_fixtures import comfy, toy  # noqa: F401

pytestmark = pytest.mark.tier2

# one scene per v3 family, seeds the benchmark's tables never use (1000·S + i with i < 500)
SEED = 91_003


@pytest.mark.parametrize("method", ["lazydrag", "lazydrag_paper", "attentiondrag", "dragflow", "contextdrag"])
def test_every_method_runs_on_every_v3_family(toy, method):
    from bench.toybench import pack_methods  # noqa: F401
    from bench.toybench.methods import METHODS
    from bench.toybench.metrics import edit_metrics
    from fluxdrag.toyworld.scenes import V3_FAMILIES, make_scene

    model, cond = toy
    for fam in V3_FAMILIES:
        sc = make_scene(SEED, fam)
        with torch.inference_mode():
            out = METHODS[method](sc, model, cond)
        assert out.shape == sc.latent.shape and bool(torch.isfinite(out).all()), (method, fam)
        m = edit_metrics(sc, out)
        assert m["shadow"] is not None and m["shading"] is not None
        if fam == "articulated":
            assert math.isfinite(m["joint_deg"]) and math.isfinite(m["tip"])


def test_dragflow_bend_region_rotates_about_the_joint():
    from bench.toybench.pack_methods import dragflow_regions
    from fluxdrag.core.affine import rotation_angle
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(SEED, "articulated", "bend")
    (reg,) = dragflow_regions(sc)
    assert reg["op"] == "rotate" and reg["anchor"] == [float(v) for v in sc.extra["joint"]]
    theta = math.degrees(rotation_angle(reg["begin"], reg["target"], reg["anchor"]))
    assert abs(theta - sc.extra["bend_deg"]) < 2.0


def test_v3_checkpoint_has_a_condition_per_v3_family(comfy):
    from fluxdrag.toyworld.model import HERE, conditioning_from_meta, load_toy_model, read_meta
    from fluxdrag.toyworld.scenes import V3_FAMILIES

    path = HERE / "toyflux_v3.safetensors"
    meta = read_meta(path.with_suffix(".json"))
    assert set(V3_FAMILIES) <= set(meta["training"]["scene_families"])
    for fam in V3_FAMILIES:
        assert conditioning_from_meta(meta, fam)[0][1]["pooled_output"].shape == (1, 32)
    model, _ = load_toy_model(path)
    assert model.model.diffusion_model.params.hidden_size == meta["unet_config"]["hidden_size"]


def test_run_json_carries_v3_rows(comfy, tmp_path):
    from bench.toybench.run import main

    out = tmp_path / "v3.json"
    rc = main(["--seed", "97", "--n", "5", "--families", "single", *("lit", "texture", "occlusion", "articulated"),
               "--methods", "no_edit", "cut_paste", "ground_truth", "--docs", "", "--json", str(out),
               "--no-inversion-table", "--recon-scenes", "1"])
    assert rc == 0
    rep = json.loads(out.read_text())
    fams = {r["family"] for r in rep["rows"]}
    assert {"lit", "texture", "occlusion", "articulated"} <= fams
    assert any(r["case"] == "bend" for r in rep["rows"])
    for r in rep["rows"]:
        assert {"shadow", "shading", "completion", "joint_deg", "tip", "represented", "denoise_err"} <= set(r)
        if r["family"] != "all":
            assert isinstance(r["represented"], bool) and r["denoise_err"] > 0
    for fam in ("lit", "texture", "occlusion", "articulated"):
        rc_ = rep["reconstruction"][fam]
        assert {"represented", "denoise_err", "source", "edit"} <= set(rc_)
    gt = [r for r in rep["rows"] if r["method"] == "ground_truth" and r["family"] == "articulated"]
    assert gt and gt[0]["joint_deg"] == 0 and gt[0]["tip"] == 0


def test_toy_scene_refuses_a_case_its_family_lacks(comfy):
    """The Toy Scene node names the inputs and the cases the family has (articulated: bend only)."""
    from fluxdrag.nodes.toyworld import ToyScene
    from fluxdrag.pipelines.common import FluxDragInputError

    with pytest.raises(FluxDragInputError, match=r"'family' / 'case'.*'bend'"):
        ToyScene.execute(seed=0, family="articulated", case="move")
    assert ToyScene.execute(seed=0, family="articulated", case="bend").result[1].drags


#: scene seeds 1000·JUDGE_SEED + 500 + j: neither the README tables', the training's (≥ 10**8), nor
#: the ones docs/toyworld_v3.md reports (seed 0)
JUDGE_SEED = 13


@pytest.mark.xfail(strict=True, reason="issue 24 open: the runtime v3 checkpoint does not represent `texture` "
                   "(0.243 against a bar of 0.229 here; docs/toyworld_v3.md)")
def test_v3_checkpoint_judges_every_v3_family(comfy):
    """Issue 24's "every new family is judged": on the runtime v3 checkpoint the ground-truth
    edits of lit, texture, occlusion and articulated denoise (one step, σ 0.2/0.4/0.6) within 1.5×
    the error of single's and multi's sources (``roundtrip.family_reconstruction``, 4 scenes each).
    A family the model does not represent cannot judge an edit."""
    from bench.toybench.roundtrip import family_reconstruction
    from fluxdrag.toyworld.model import HERE, load_toy_model
    from fluxdrag.toyworld.scenes import V3_FAMILIES

    model, cond = load_toy_model(HERE / "toyflux_v3.safetensors")
    rep = family_reconstruction(model, cond, JUDGE_SEED, V3_FAMILIES, k=4, roundtrips=False)
    errs = {f: round(r["denoise_edit"], 3) for f, r in rep.items()}
    bar = next(iter(rep.values()))["denoise_bar"]
    assert all(r["judged"] for r in rep.values()), f"not judged (bar {bar:.3f}): {errs}"
