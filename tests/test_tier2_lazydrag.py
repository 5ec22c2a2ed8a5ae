"""LazyDrag on a tiny FLUX in real ComfyUI: identity when off, background fidelity, cache lifetime."""
import pytest
import torch
from comfy_fixtures import comfy, latent, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2

DRAGS = {"version": 1, "image_size": [256, 256],
         "drags": [{"handle": [88, 88], "target": [152, 120], "mode": "move"}]}


def watch_runs():
    from fluxdrag.attention_patches.router import watch_runs as w
    return w()


def _guid1(cond):
    import node_helpers
    return node_helpers.conditioning_set_values(cond, {"guidance": 1.0})


def _setup(model, cond, drags=DRAGS, steps=6, **plan_kw):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    lat = latent(0)
    plan = ld.CorrespondenceMap.execute(drags, lat, **plan_kw).args[0]
    _, rec = inv.Invert.execute(model, lat, cond, steps=steps, solver="uni_inv", edit_map=plan).args
    return lat, plan, rec


def test_controls_off_is_bitwise_vanilla(tiny_flux, tiny_cond):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    lat, plan, rec = _setup(tiny_flux, tiny_cond)
    m, z0, ctrl = ld.apply_lazydrag(tiny_flux, rec, plan, background=False, identity=False, refine=False,
                                    background_lock=0.0, content_lock=0.0, hole_lock=0.0)
    with watch_runs() as runs:
        patched = inv.run_sampling(m, rec, _guid1(tiny_cond), start=z0)
    plain = inv.run_sampling(tiny_flux, rec, _guid1(tiny_cond), start=z0)
    st = runs[-1].of(ctrl)
    assert st.hits == 0 and st.misses == 0  # nothing to do: every call passed through
    assert torch.equal(patched, plain)


def test_background_only_edit_free_map_equals_roundtrip(tiny_flux, tiny_cond):
    """All tokens background: BG replacement reproduces the plain inversion round trip."""
    from fluxdrag.attention_patches.lazydrag import LazyDragControl, LazyDragPlan
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.core.correspondence import CorrespondenceMap
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    real = ld.build_plan(DRAGS, latent(0)["samples"]).cmap
    h, w = real.grid_hw
    allbg = CorrespondenceMap(
        matching=torch.full((h, w, 2), -1), weight=torch.zeros(h, w),
        destination=torch.zeros(h, w, dtype=torch.bool), inpaint=torch.zeros(h, w, dtype=torch.bool),
        transition=torch.zeros(h, w, dtype=torch.bool), background=torch.ones(h, w, dtype=torch.bool),
        editable=torch.zeros(h, w, dtype=torch.bool), drags=real.drags, grid_hw=(h, w))
    plan = LazyDragPlan(allbg)
    lat = latent(0)
    _, rec = inv.Invert.execute(tiny_flux, lat, tiny_cond, steps=6, solver="uni_inv", edit_map=plan).args
    from fluxdrag.pipelines.lazydrag import PATCH_FIELDS, LazyDragSettings
    from fluxdrag.pipelines.settings import pick
    # the controller alone: attention control only (no latent locks, which need the trajectory)
    s = LazyDragSettings(background_lock=0.0, content_lock=0.0, hole_lock=0.0)
    ctrl = LazyDragControl(plan, rec.caches["lazydrag"], rec.sigmas, **pick(s, PATCH_FIELDS))
    with watch_runs() as runs:
        bg = inv.run_sampling(patch_model(tiny_flux, ctrl), rec, _guid1(tiny_cond))
    plain = inv.run_sampling(tiny_flux, rec, _guid1(tiny_cond))
    src = tiny_flux.model.process_latent_in(lat["samples"])
    assert runs[-1].of(ctrl).hits == 12
    assert (bg - plain).abs().mean() < 0.05 * (plain - src).abs().mean() + 1e-3
    assert (bg - src).abs().mean() <= (plain - src).abs().mean() * 1.05


def test_edit_keeps_background_and_changes_region(tiny_flux, tiny_cond):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    lat, plan, rec = _setup(tiny_flux, tiny_cond)
    cache = rec.caches["lazydrag"]
    assert cache.nbytes > 0
    before = repr(tiny_flux.model_options)
    m, z0, ctrl = ld.apply_lazydrag(tiny_flux, rec, plan)
    plain = inv.run_sampling(tiny_flux, rec, _guid1(tiny_cond))
    nbytes = cache.nbytes
    with watch_runs() as runs:
        edited = inv.run_sampling(m, rec, _guid1(tiny_cond), start=z0)
    st = runs[-1].of(ctrl)
    assert st.hits == 6 * 2 and st.misses == 0  # every Euler evaluation found its entries
    assert cache.nbytes == nbytes and not cache.freed  # the record's cache is read, never freed
    assert repr(tiny_flux.model_options) == before  # shared MODEL untouched
    cm = plan.cmap
    tok_err = (edited - plain).abs().reshape(1, 16, 16, 2, 16, 2).mean(dim=(0, 1, 3, 5))  # (h, w)
    far_bg = cm.background.clone()
    grown = torch.nn.functional.max_pool2d((~cm.background).float()[None, None], 5, 1, 2)[0, 0] > 0
    far_bg &= ~grown
    assert far_bg.sum() > 50
    assert tok_err[far_bg].mean() < 0.25 * tok_err[cm.destination | cm.inpaint].mean()
    # destination pixels started from the handle area's noise (the map's default: latent pixels)
    src_idx = cm.fine.source
    d = torch.nonzero(src_idx >= 0).flatten()
    assert d.numel() > 0
    assert torch.equal(z0.flatten(2)[..., d], rec.z_T.flatten(2)[..., src_idx[d]])
    # the paper's token map: whole tokens
    from fluxdrag.core.correspondence import _patchify, compose_initial_latent
    tok = ld.build_plan(DRAGS, lat["samples"], resolution="token").cmap
    assert tok.fine is None
    z0t = compose_initial_latent(rec.z_T, tok, 0)
    src_idx = tok.source_index()
    d = torch.nonzero(src_idx >= 0).flatten()
    assert torch.equal(_patchify(z0t)[..., d], _patchify(rec.z_T)[..., src_idx[d]])


def test_patch_errors(tiny_flux, tiny_cond):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    from fluxdrag.nodes.common import FluxDragInputError
    lat = latent(0)
    plan = ld.CorrespondenceMap.execute(DRAGS, lat).args[0]
    _, rec = inv.Invert.execute(tiny_flux, lat, tiny_cond, steps=2).args
    with pytest.raises(FluxDragInputError, match="edit_map"):
        ld.LazyDragPatch.execute(tiny_flux, rec, plan)
    bad = {"version": 1, "image_size": [256, 256], "drags": [{"handle": [10, 10], "target": [10, 10]}]}
    with pytest.raises(FluxDragInputError, match="only anchors"):
        ld.CorrespondenceMap.execute(bad, lat)
    _, rec2 = inv.Invert.execute(tiny_flux, lat, tiny_cond, steps=2, edit_map=plan).args
    m = ld.LazyDragPatch.execute(tiny_flux, rec2, plan).args[0]
    inv.SampleFromInversion.execute(m, rec2, tiny_cond)
    ld.LazyDragPatch.execute(tiny_flux, rec2, plan)   # sampling read the record; it still serves
    rec2.free_caches()   # only a record's owner frees it (e.g. a pipeline's own run)
    with pytest.raises(FluxDragInputError, match="freed"):
        ld.LazyDragPatch.execute(tiny_flux, rec2, plan)


def test_cache_policies_agree(tiny_flux, tiny_cond):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    outs, sizes = {}, {}
    for policy in ("device", "cpu", "fp8"):
        lat = latent(0)
        plan = ld.CorrespondenceMap.execute(DRAGS, lat).args[0]
        _, rec = inv.Invert.execute(tiny_flux, lat, tiny_cond, steps=4, solver="uni_inv",
                                    edit_map=plan, cache_policy=policy).args
        sizes[policy] = rec.cache_bytes()
        m, z0 = ld.LazyDragPatch.execute(tiny_flux, rec, plan).args
        outs[policy] = inv.SampleFromInversion.execute(m, rec, tiny_cond, latent=z0).args[0]["samples"]
    assert sizes["device"] == sizes["cpu"] == 4 * sizes["fp8"]  # float32 model: 4 bytes vs 1
    assert torch.equal(outs["device"], outs["cpu"])
    assert (outs["fp8"] - outs["cpu"]).abs().mean() < 0.05
    est = ld.build_plan(DRAGS, latent(0)["samples"]).estimate_bytes(
        tiny_flux, rec.sigmas, 1, "cpu")
    assert est == sizes["cpu"]  # the up-front estimate is exact


def test_paired_policy_needs_no_cache_and_keeps_background(tiny_flux, tiny_cond):
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    lat = latent(0)
    plan = ld.CorrespondenceMap.execute(DRAGS, lat).args[0]
    _, rec = inv.Invert.execute(tiny_flux, lat, tiny_cond, steps=6, solver="uni_inv", edit_map=plan,
                                cache_policy="paired").args
    assert rec.caches == {} and rec.cache_bytes() == 0
    m, z0, ctrl = ld.apply_lazydrag(tiny_flux, rec, plan)
    with watch_runs() as runs:
        edited = inv.run_sampling(m, rec, _guid1(tiny_cond), start=z0)
    plain = inv.run_sampling(tiny_flux, rec, _guid1(tiny_cond))
    assert edited.shape == plain.shape and runs[-1].of(ctrl).hits == 12
    cm = plan.cmap
    tok_err = (edited - plain).abs().reshape(1, 16, 16, 2, 16, 2).mean(dim=(0, 1, 3, 5))
    grown = torch.nn.functional.max_pool2d((~cm.background).float()[None, None], 5, 1, 2)[0, 0] > 0
    far_bg = cm.background & ~grown
    assert tok_err[far_bg].mean() < 0.25 * tok_err[cm.destination | cm.inpaint].mean()
    # with every control off, the paired batch reproduces the unpaired result exactly per row
    m2, z0b, _ = ld.apply_lazydrag(tiny_flux, rec, plan, background=False, identity=False, refine=False,
                                   background_lock=0.0, content_lock=0.0, hole_lock=0.0)
    off = inv.run_sampling(m2, rec, _guid1(tiny_cond), start=z0b)
    ref = inv.run_sampling(tiny_flux, rec, _guid1(tiny_cond), start=z0b)
    assert (off - ref).abs().max() < 1e-5


def test_live_background_query_caches_kv_only(tiny_flux, tiny_cond):
    """background_query=live: no q in the cache (exact estimate, a third less background), the
    control replaces k, v only, and the far background still stays close to the round trip."""
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    from fluxdrag.nodes.common import FluxDragInputError
    lat, plan_c, rec_c = _setup(tiny_flux, tiny_cond, background_query="cached")
    lat, plan, rec = _setup(tiny_flux, tiny_cond, background_query="live")
    names = {k[2] for k in rec.caches["lazydrag"].keys()}
    assert "q" not in names and {"k", "v"} <= names
    assert "q" in {k[2] for k in rec_c.caches["lazydrag"].keys()}
    assert plan.estimate_bytes(tiny_flux, rec.sigmas, 1, "cpu") == rec.cache_bytes()
    ix = plan.indices
    n_bg = ix.bg.numel() * tiny_flux.model.diffusion_model.hidden_size * 4 * 2 * 6  # fp32, 2 blocks, 6 keys
    assert rec_c.cache_bytes() - rec.cache_bytes() == n_bg  # exactly the background queries
    m, z0, ctrl = ld.apply_lazydrag(tiny_flux, rec, plan, background_lock=0.0)
    plain = inv.run_sampling(tiny_flux, rec, _guid1(tiny_cond))
    with watch_runs() as runs:
        edited = inv.run_sampling(m, rec, _guid1(tiny_cond), start=z0)
    assert runs[-1].of(ctrl).hits == 6 * 2 and runs[-1].of(ctrl).misses == 0
    m_c, z0_c, _ = ld.apply_lazydrag(tiny_flux, rec_c, plan_c, background_lock=0.0)
    edited_c = inv.run_sampling(m_c, rec_c, _guid1(tiny_cond), start=z0_c)
    assert not torch.equal(edited, edited_c)  # without the latent lock the live queries change the result
    # with the lock on every step, background queries only shape background outputs, which the
    # lock overwrites: live and cached queries give bitwise the same edit
    locked = []
    for query in ("live", "cached"):
        _, p, r = _setup(tiny_flux, tiny_cond, background_query=query)
        mm, z, _ = ld.apply_lazydrag(tiny_flux, r, p, background_lock=1.0)
        locked.append(inv.run_sampling(mm, r, _guid1(tiny_cond), start=z))
    assert torch.equal(locked[0], locked[1])
    cm = plan.cmap
    tok_err = (edited - plain).abs().reshape(1, 16, 16, 2, 16, 2).mean(dim=(0, 1, 3, 5))
    grown = torch.nn.functional.max_pool2d((~cm.background).float()[None, None], 5, 1, 2)[0, 0] > 0
    far_bg = cm.background & ~grown
    assert tok_err[far_bg].mean() < 0.25 * tok_err[cm.destination | cm.inpaint].mean()
    with pytest.raises(FluxDragInputError, match="background_query"):
        ld.CorrespondenceMap.execute(DRAGS, lat, background_query="none")


def test_background_lock_ends_on_the_source_and_is_off_at_zero(tiny_flux, tiny_cond):
    """background_lock 1: after every step the background tokens' latent is the inversion's at that
    sigma, so the result's background is bitwise the source latent; 0.5 locks half the steps;
    0 leaves it to attention control (the paper)."""
    from fluxdrag.nodes import inversion as inv
    from fluxdrag.nodes import lazydrag as ld
    outs, locked = {}, {}
    for lock in (1.0, 0.5, 0.0):
        lat, plan, rec = _setup(tiny_flux, tiny_cond)
        m, z0, ctrl = ld.apply_lazydrag(tiny_flux, rec, plan, background_lock=lock)
        with watch_runs() as runs:
            outs[lock] = inv.run_sampling(m, rec, _guid1(tiny_cond), start=z0)
        locked[lock] = runs[-1].of(ctrl).locked
    assert (locked[1.0], locked[0.5], locked[0.0]) == (6, 3, 0)
    bg = plan.cmap.background.repeat_interleave(2, 0).repeat_interleave(2, 1)
    src = rec.z_0
    assert torch.equal(outs[1.0][..., bg], src[..., bg])
    assert not torch.equal(outs[0.0][..., bg], src[..., bg])
    err = {k: (v - src)[..., bg].abs().mean().item() for k, v in outs.items()}
    assert err[1.0] == 0.0 < err[0.5] and err[0.5] < err[0.0]
    assert not torch.equal(outs[1.0][..., ~bg], src[..., ~bg])   # the edited region is free
    lat, plan, rec = _setup(tiny_flux, tiny_cond)
    with pytest.raises(ValueError, match="background_lock"):
        ld.apply_lazydrag(tiny_flux, rec, plan, background_lock=1.5)


def test_lock_under_comfy_ksampler_warns(tiny_flux, tiny_cond, caplog):
    """ComfyUI's own samplers do not call after_step: the edit still runs, with a clear warning."""
    import logging

    import comfy.sample

    from fluxdrag.nodes import lazydrag as ld
    lat, plan, rec = _setup(tiny_flux, tiny_cond)
    m, z0, ctrl = ld.apply_lazydrag(tiny_flux, rec, plan)
    with caplog.at_level(logging.WARNING), watch_runs() as runs:
        comfy.sample.sample(m, rec.z_T, 6, 1.0, "euler", "simple", _guid1(tiny_cond), _guid1(tiny_cond),
                            torch.zeros_like(rec.z_T), disable_pbar=True, seed=0)
    assert runs[-1].of(ctrl).locked == 0 and runs[-1].of(ctrl).hits > 0
    assert any("background_lock" in r.getMessage() for r in caplog.records)
