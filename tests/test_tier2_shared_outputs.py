"""Tier 2: node outputs are never changed downstream (issue 25).

One FluxDrag Invert output feeding two LazyDrag Patch → Sample From Inversion chains, and the
same graph queued again with ComfyUI's cache serving the Invert, each give what a run of its own
gives, bit for bit: in-process through the nodes, and on a real server with ComfyUI's cache.
The controllers a run used are the same objects with the same attributes afterwards.
"""
from __future__ import annotations

import pytest
import torch
from comfy_fixtures import comfy, latent, tiny_cond, tiny_flux  # noqa: F401

from tools import toy_graphs

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

DRAGS = {"version": 1, "image_size": [256, 256],
         "drags": [{"handle": [88, 88], "target": [152, 120], "mode": "move"}]}


def _chain(model, cond, rec, plan):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    patched, start = ld.LazyDragPatch.execute(model, rec, plan).args[:2]
    return inv.SampleFromInversion.execute(patched, rec, cond, latent=start).args[0]["samples"]


def _snapshot(obj) -> dict:
    return {k: (id(v), v if isinstance(v, (int, float, str, bool, type(None))) else None)
            for k, v in vars(obj).items()}


def test_one_invert_feeds_two_samplers_in_process(tiny_flux, tiny_cond):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    lat = latent(0)

    def invert(plan):
        return inv.Invert.execute(tiny_flux, lat, tiny_cond, steps=4, solver="uni_inv", edit_map=plan).args[1]

    plan = ld.CorrespondenceMap.execute(DRAGS, lat).args[0]
    rec = invert(plan)
    nbytes, keys = rec.cache_bytes(), rec.caches["lazydrag"].keys()
    first, second = _chain(tiny_flux, tiny_cond, rec, plan), _chain(tiny_flux, tiny_cond, rec, plan)
    recon = inv.SampleFromInversion.execute(tiny_flux, rec, tiny_cond).args[0]["samples"]
    assert rec.cache_bytes() == nbytes and rec.caches["lazydrag"].keys() == keys   # read only
    plan2 = ld.CorrespondenceMap.execute(DRAGS, lat).args[0]
    alone = _chain(tiny_flux, tiny_cond, invert(plan2), plan2)   # a run of its own
    assert torch.equal(first, second) and torch.equal(first, alone)
    assert not torch.equal(first, recon)   # the edit did something
    recon2 = inv.SampleFromInversion.execute(tiny_flux, rec, tiny_cond).args[0]["samples"]
    assert torch.equal(recon, recon2)


def test_a_patched_model_runs_twice_the_same_and_its_controller_is_unchanged(tiny_flux, tiny_cond):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    lat = latent(0)
    plan = ld.CorrespondenceMap.execute(DRAGS, lat).args[0]
    rec = inv.Invert.execute(tiny_flux, lat, tiny_cond, steps=4, solver="uni_inv", edit_map=plan).args[1]
    m, z0, ctrl = ld.apply_lazydrag(tiny_flux, rec, plan)
    before_ctrl, before_opts = _snapshot(ctrl), repr(m.model_options)
    a = inv.run_sampling(m, rec, tiny_cond, start=z0)
    b = inv.run_sampling(m, rec, tiny_cond, start=z0)
    assert torch.equal(a, b)
    assert _snapshot(ctrl) == before_ctrl and repr(m.model_options) == before_opts


def _two_sampler_graph(seed: int, steps: int, solver: str = "auto") -> dict:
    """toy_graphs.lazydrag plus a second LazyDrag Patch → Sample From Inversion → SaveLatent on
    the same Invert output ("4")."""
    g = toy_graphs.lazydrag(seed, steps=steps, prefix="shared_a")
    g["6"]["inputs"]["solver"] = solver
    g["15"] = toy_graphs.node("FluxDragLazyDragPatch", model=["1", 0], inversion=["4", 1], map=["3", 0])
    g["16"] = toy_graphs.node("FluxDragSampleFromInversion", model=["15", 0], inversion=["4", 1],
                              positive=["1", 1], solver=solver, cfg=1.0, latent=["15", 1])
    g["17"] = toy_graphs.node("SaveLatent", samples=["16", 0], filename_prefix="shared_b")
    return g


def _latents(client, entry) -> dict:
    from safetensors.torch import load_file
    files = client.output_files(entry, kind="latents")
    return {p.name.split("_")[1]: load_file(str(p))["latent_tensor"] for p in files}


def _cached_nodes(entry) -> set:
    nodes = set()
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_cached":
            nodes |= set(data.get("nodes", []))
    return nodes


def test_shared_invert_and_cached_graph_on_the_server(comfy_server):
    seed, steps = 5, 4
    info = comfy_server.object_info()
    single = toy_graphs.lazydrag(seed, steps=steps, prefix="shared_alone")
    single["4"]["inputs"]["cache_budget_gb"] = 64.0   # no effect on the edit; not the cache's key
    alone = _latents(comfy_server, comfy_server.run(toy_graphs.with_defaults(single, info),
                                                    timeout=600))["alone"]
    first = comfy_server.run(toy_graphs.with_defaults(_two_sampler_graph(seed, steps), info), timeout=600)
    out1 = _latents(comfy_server, first)
    # queued again: the samplers re-run ("euler" is what "auto" picks for a Uni-Inv inversion, so
    # the graph changed only there) while ComfyUI serves Invert, the map and the patches cached
    again = comfy_server.run(toy_graphs.with_defaults(_two_sampler_graph(seed, steps, "euler"), info),
                             timeout=600)
    out2 = _latents(comfy_server, again)
    assert {"3", "4", "5", "15"} <= _cached_nodes(again) and not {"6", "16"} & _cached_nodes(again)
    assert set(out1) == set(out2) == {"a", "b"}
    for out in (out1, out2):
        assert torch.equal(out["a"], alone) and torch.equal(out["b"], alone)
