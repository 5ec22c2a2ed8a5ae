"""Tier 2: ContextDrag measured on the toy Kontext (issue 19).

The toy Kontext (``fluxdrag/toyworld/toykontext.safetensors``, ``bench/toybench/train_kontext.py``) is
the toy FLUX fine-tuned to read a ReferenceLatent. On the tests' own seed (``SEED``) ContextDrag
and its ablations run through the pipeline functions the nodes call, on the six move-type scenes
of ``bench/toybench/regression.py``. Thresholds come from ONE run on another seed,

    python -m bench.toybench.regression --seed 4242 --methods no_edit cut_paste contextdrag \\
        contextdrag_keep contextdrag_pca_only contextdrag_cti_only

whose means are quoted next to them; slack as in ``test_tier2_toyworld_regression.py`` (an error
may grow to 1.5× its calibration value, a score may fall to half).
"""
from __future__ import annotations

import json

import pytest
import torch
from comfy_fixtures import comfy  # noqa: F401
from test_tier2_toyworld_regression import bound

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

SEED = 7          # the tests' own seed; calibration used 4242
METHODS = ["no_edit", "cut_paste", "contextdrag", "contextdrag_keep", "contextdrag_pca_only",
           "contextdrag_cti_only"]
# seed-4242 means (md, found, iou, residue, seam, bg, hole, id), recalibrated in issue 28 for the
# defaults composite=True, hole_fill=harmonic, background_lock=1 (lock_margin 0); drag_groups=component
# added afterwards gave the same row on seed 4242:
#   no_edit              7.151 1.00 0.000 1.000 0.000 0.000 0.939 0.932
#   cut_paste            0.000 1.00 1.000 0.000 0.000 0.000 0.041 0.000
#   contextdrag          0.034 1.00 0.982 0.000 -0.000 0.005 0.018 0.047
#   contextdrag_keep     7.156 1.00 0.000 1.000 0.026 0.014 0.931 0.934
#   contextdrag_pca_only 0.027 1.00 0.974 0.000 -0.000 0.005 0.018 0.048
#   contextdrag_cti_only 7.156 1.00 0.000 1.000 0.029 0.049 0.931 0.683
# (before, retrained toy Kontext with subtoken on, hide=vacated: contextdrag 0.339 1.00 0.682 0.000
# 0.099 0.078 0.084 0.392; issue 19's calibration, first toy Kontext: 0.403 1.00 0.460 0.000 0.517
# 0.124 0.066 0.469.) Bounds follow test_tier2_toyworld_regression.py's rule, from the seed-4242
# row only: an error may grow to max(1.5 v, v + 0.1), a score fall to v/2.
THRESHOLDS = {"contextdrag": {m: bound(m, v) for m, v in zip(
    ("md", "found", "iou", "residue", "bg_err", "hole_err", "id_err"),
    (0.034, 1.00, 0.982, 0.000, 0.005, 0.018, 0.047))}}


@pytest.fixture(scope="module")
def results():
    from tools.comfy_env import import_comfy

    import_comfy()
    torch.set_num_threads(1)
    from bench.toybench.regression import run_methods

    return run_methods(SEED, METHODS)


def test_toy_kontext_is_shipped_with_its_record():
    from fluxdrag.toyworld.model import KONTEXT_WEIGHTS, TOY_MODELS, read_meta

    assert TOY_MODELS["toy Kontext"] == KONTEXT_WEIGHTS
    assert KONTEXT_WEIGHTS.stat().st_size <= 20 * 2**20
    meta = read_meta(KONTEXT_WEIGHTS.with_suffix(".json"))
    base = read_meta(TOY_MODELS["toy FLUX"].with_suffix(".json"))
    assert meta["unet_config"] == base["unet_config"] and meta["conditioning"] == base["conditioning"]
    chain, rec = [], meta["training"]   # a resumed toy Kontext keeps its earlier runs' records
    while "resumed_from" in rec:
        rec = rec["resumed_from"]
        chain.append(rec)
    kontext_runs = [r for r in [meta["training"], *chain] if r.get("resumed_from", {}).get("steps")
                    == base["training"]["steps"]]
    assert kontext_runs, "the toy Kontext is not fine-tuned from the shipped toy FLUX"
    log = KONTEXT_WEIGHTS.with_suffix(".log.jsonl").read_text().splitlines()
    assert 0 <= meta["training"]["steps"] - json.loads(log[-1])["step"] < 10   # logged every 10 steps


def test_loader_choice_and_default(comfy):
    from fluxdrag.nodes.toyworld import ToyModelLoader

    flux = ToyModelLoader.execute().args[0]
    kontext = ToyModelLoader.execute(model_name="toy Kontext").args[0]
    a = flux.model.diffusion_model.state_dict()
    b = kontext.model.diffusion_model.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="model_name"):
        ToyModelLoader.execute(model_name="toy SDXL")


def _sample(model, cond, ref, steps=20, seed=0):
    import comfy.sample

    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed))
    return comfy.sample.sample(model, noise, steps, 1.0, "euler", "simple", cond, cond, torch.zeros_like(ref),
                               seed=seed, disable_pbar=True)


def test_toy_kontext_reads_the_reference_through_referencelatent(comfy):
    """Stock ComfyUI Kontext conditioning: with the source as ReferenceLatent the toy Kontext
    gives the source back ("keep"); the toy FLUX, never trained with a reference, does not."""
    from comfy_extras.nodes_edit_model import ReferenceLatent

    from fluxdrag.toyworld.model import TOY_MODELS, load_toy_model, scene_latent_to_comfy
    from fluxdrag.toyworld.scenes import make_scene

    sc = make_scene(1000 * SEED + 50, "multi", "move")
    ref = scene_latent_to_comfy(sc.latent)
    errs = {}
    for name in ("toy Kontext", "toy FLUX"):
        model, cond = load_toy_model(TOY_MODELS[name])
        out = _sample(model, ReferenceLatent.execute(cond, ref).args[0], ref["samples"])
        errs[name] = float(((out - ref["samples"]) * 0.3611).pow(2).mean().sqrt())   # model-space RMS
    # measured (issue 19): toy Kontext 0.135, toy FLUX 0.627; the retrained toy Kontext keeps closer
    assert errs["toy Kontext"] < 0.25 < errs["toy FLUX"], errs


def test_contextdrag_meets_thresholds(results):
    r, base = results["contextdrag"], results["no_edit"]
    assert r["md"] < 0.6 * base["md"], (r["md"], base["md"])
    for key, (op, limit) in THRESHOLDS["contextdrag"].items():
        ok = r[key] <= limit if op == "<" else r[key] >= limit
        assert ok, f"contextdrag {key} {r[key]:.3f} not {op} {limit} (MD per scene {r['md_per_scene']})"


def test_ablations_show_each_patch(results):
    """Neither patch = the reference kept (MD of no_edit); CTI alone does not move the object
    on the toy Kontext (it replaces image tokens, the model reads the reference tokens); PCA is
    what moves it. Since PCA re-embeds the moved tokens composited on the destination's background
    (issue 28) CTI on top changes little (seed 4242: ID 0.047 vs 0.048, seams 0 both; before, it
    bought ID error at a cost in seams, see docs/contextdrag.md): it must not cost MD or ID."""
    keep, pca, full = results["contextdrag_keep"], results["contextdrag_pca_only"], results["contextdrag"]
    cti = results["contextdrag_cti_only"]
    assert keep["md"] > 0.8 * results["no_edit"]["md"], keep["md"]
    assert cti["md"] > 0.8 * keep["md"], cti["md"]
    assert pca["md"] < 0.6 * keep["md"] and pca["residue"] < 0.1, pca
    assert full["md"] < pca["md"] + 0.1, (full["md"], pca["md"])
    assert full["id_err"] < pca["id_err"] + 0.02, (full["id_err"], pca["id_err"])


def test_toy_contextdrag_graph_on_a_server(comfy_server):
    """The stock Kontext graph (ReferenceLatent, EmptySD3LatentImage, KSampler) with the pack's
    three nodes on the toy Kontext moves the dragged object (``tools/toy_graphs.contextdrag``)."""
    from safetensors.torch import load_file

    from bench.toybench.metrics import edit_metrics
    from fluxdrag.toyworld.model import comfy_to_scene_latent
    from fluxdrag.toyworld.scenes import make_scene
    from tools import toy_graphs

    g = toy_graphs.with_defaults(toy_graphs.contextdrag(SEED, steps=20, prefix="ctx_toy"),
                                 comfy_server.object_info())
    entry = comfy_server.run(g, timeout=600)
    [path] = comfy_server.output_files(entry, kind="latents")
    out = comfy_to_scene_latent(load_file(str(path))["latent_tensor"])[0]
    sc = make_scene(SEED, "single", "move")
    r = edit_metrics(sc, out)
    assert r["md"] < 0.5 * edit_metrics(sc, sc.latent)["md"], r


def test_no_edit_fails_the_thresholds(results):
    """The do-nothing edit violates ContextDrag's bounds (issue 25)."""
    r = results["no_edit"]
    misses = [k for k, (op, limit) in THRESHOLDS["contextdrag"].items()
              if not (r[k] <= limit if op == "<" else r[k] >= limit)]
    assert misses, r


# Rotations and bends (issue 28, warp='motion' and swing): one rotate scene of `single` and of
# `lit`, two bends of `articulated` (make_scene(1000 * seed + 60 + i)); calibrated by ONE run on
# seed 4243 (means md / iou / bg / id, defaults: 0.068 0.837 0.040 0.217; the paper's warp with
# swing off: 0.815 0.528 0.052 0.338; no_edit 0.465 0.409 0.001 0.554), bounds by the rule above.
# (Recalibrated on 4243 when the hole fill began to show vacated pixels under a destination:
# iou 0.831 -> 0.837, id 0.225 -> 0.217; and again when warp='motion' began to follow the shape's
# sub-pixel edge (reverse_tokens._motion_pixels' coverage rule): 0.068 0.837 0.040 0.217 ->
# 0.054 0.887 0.031 0.215; paper and no_edit rows unchanged. Recalibrated on 4243 in the sixteenth
# session, after the continued hole fill and hole_rim: 0.077 0.869 0.009 0.273, hole 0.079; with
# hole_rim 0: 0.057 0.859 0.010 0.258, hole 0.142; paper 0.842 0.529 0.051 0.343; no_edit 0.465
# 0.409 0.001 0.554. Seed 7 then: hole 0.193 with the rim against 0.267 without. And again after
# fill_in_place: 0.102 0.874 0.009 0.272, hole 0.062; hole_rim 0: 0.092 0.887 0.009 0.264, hole
# 0.075; seed 7: hole 0.191 against 0.204.)
TURN_CASES = [("single", "rotate"), ("lit", "rotate"), ("articulated", "bend"), ("articulated", "bend")]
TURN_BOUNDS = {m: bound(m, v) for m, v in zip(("md", "iou", "bg_err", "id_err"), (0.102, 0.874, 0.009, 0.272))}


def _turns(**opts) -> dict | None:
    from bench.toybench import pack_methods as pm
    from bench.toybench.metrics import edit_metrics
    from fluxdrag.toyworld.scenes import make_scene

    rows = []
    for i, (family, case) in enumerate(TURN_CASES):
        sc = make_scene(1000 * SEED + 60 + i, family, case)
        out = sc.latent if opts.get("no_edit") else pm.contextdrag(sc, None, None, **opts)
        rows.append(edit_metrics(sc, out))
    return {k: sum(r[k] for r in rows) / len(rows) for k in (*TURN_BOUNDS, "hole_err")}


def _misses(r: dict) -> list[str]:
    return [k for k, (op, limit) in TURN_BOUNDS.items() if not (r[k] <= limit if op == "<" else r[k] >= limit)]


def test_contextdrag_lands_rotations_and_bends(comfy):
    """The node defaults meet the rotate / bend bounds, the paper's whole-token warp without swing
    lands them worse and ``hole_rim`` 0 leaves a worse hole (the settings earn their place), and the
    do-nothing edit fails them."""
    torch.set_num_threads(1)
    r = _turns()
    assert not _misses(r), (r, TURN_BOUNDS)
    paper = _turns(warp="token", swing=False)
    assert r["iou"] > paper["iou"] + 0.1 and r["md"] < paper["md"], (r, paper)
    assert r["hole_err"] < _turns(hole_rim=0)["hole_err"], r
    assert _misses(_turns(no_edit=True))
