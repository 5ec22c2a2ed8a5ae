"""DragFlow on a tiny FLUX in real ComfyUI: features, early exit, autograd, K/V injection, the edit."""
import copy

import pytest
import torch
from comfy_fixtures import comfy, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2

H = W = 128  # pixels; latent 16×16, tokens 8×8


def _lat(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(1, 16, H // 8, W // 8, generator=g) * 0.5}


def _box(y0, y1, x0, x1):
    m = torch.zeros(H, W, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _call(dm, to, x, cond, sigma=0.6):
    ctx, opts = cond[0]
    return dm(x, torch.tensor([sigma]), ctx, y=opts["pooled_output"],
              guidance=torch.tensor([opts.get("guidance", 3.5)]), transformer_options=to)


def _to(m):
    """The options a sampler would hand the model: the clone's transformer options plus its
    wrappers (ComfyUI merges those in when sampling starts)."""
    to = copy.copy(m.model_options["transformer_options"])
    to["wrappers"] = m.wrappers
    return to


def test_modulated_input_is_the_blocks_attention_input(tiny_flux, tiny_cond):
    from fluxdrag.attention_patches.dragflow import DragFlowHooks
    dm = tiny_flux.get_model_object("diffusion_model")
    hooks = DragFlowHooks(dm)
    assert hooks.feature_blocks == (0, 1)  # the last two of 2 double blocks
    m = hooks.install(tiny_flux)
    seen = []
    handle = dm.double_blocks[1].img_attn.qkv.register_forward_pre_hook(
        lambda mod, a: seen.append(a[0].detach().clone()))
    try:
        x = _lat()["samples"]
        with torch.no_grad():
            feats = hooks.features(lambda: _call(dm, _to(m), x, tiny_cond), n_img=64)
    finally:
        handle.remove()
    f0, f2 = feats[1]
    assert torch.equal(f0, seen[0])  # bit for bit the tensor the block feeds to img_attn.qkv
    assert f2.shape == (1, 64, 64) and not torch.equal(f2, f0)
    assert hooks.calls == {"double": 2, "single": 0}  # early exit: single blocks never ran


def _loss_fn(dm, m, hooks, cond, early_exit):
    from fluxdrag.attention_patches.dragflow import feature_maps
    from fluxdrag.core.affine import Region
    from fluxdrag.core.dragflow import affine_feature_loss
    region = Region(_box(32, 64, 32, 64), "relocate", target=(80, 60), begin=(48, 48))
    masks = [torch.nn.functional.interpolate(region.mask[None, None].float(), size=(32, 32))[0, 0] > 0.5]
    A = [region.affine(1.0, (32, 32))]
    with torch.no_grad():
        f_orig = feature_maps(hooks.features(lambda: _call(dm, _to(m), _lat(1)["samples"], cond), 64),
                              hooks.feature_blocks, (8, 8), (32, 32))

    def loss(z):
        f = feature_maps(hooks.features(lambda: _call(dm, _to(m), z, cond), 64, early_exit),
                         hooks.feature_blocks, (8, 8), (32, 32))
        return affine_feature_loss(f, f_orig, masks, A, [1.0])
    return loss


@pytest.mark.parametrize("checkpointing", [True, False])
def test_early_exit_gradient_equals_full_forward(tiny_flux, tiny_cond, checkpointing, rope_grad):
    from fluxdrag.attention_patches.dragflow import DragFlowHooks
    dm = tiny_flux.get_model_object("diffusion_model")
    grads, counts = {}, {}
    for early in (True, False):
        hooks = DragFlowHooks(dm, checkpointing=checkpointing)
        m = hooks.install(tiny_flux)
        loss = _loss_fn(dm, m, hooks, tiny_cond, early)
        z = _lat(2)["samples"].requires_grad_(True)
        hooks.calls = {"double": 0, "single": 0}
        (grads[early],) = torch.autograd.grad(loss(z), z)
        counts[early] = dict(hooks.calls)
    assert counts[True]["single"] == 0 and counts[False]["single"] == 2
    assert grads[True].abs().sum() > 0
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-5, atol=1e-8)
    # and it is the true gradient of the loss: central difference along a random direction
    hooks = DragFlowHooks(dm, checkpointing=checkpointing)
    loss = _loss_fn(dm, hooks.install(tiny_flux), hooks, tiny_cond, True)
    z = _lat(2)["samples"]
    d = torch.randn(z.shape, generator=torch.Generator().manual_seed(3))
    eps = 1e-2
    with torch.no_grad():
        fd = (loss(z + eps * d) - loss(z - eps * d)) / (2 * eps)
    assert float((grads[True] * d).sum()) == pytest.approx(float(fd), rel=0.05)


def test_checkpointing_gives_the_same_gradient_with_inference_mode_weights(comfy, rope_grad):  # noqa: F811
    """Weights created under torch.inference_mode (as a ComfyUI server loads them) still give the
    gradient of a normally built model, with and without checkpointing; weights are untouched."""
    from fluxdrag.attention_patches.dragflow import DragFlowHooks
    from tools import comfy_env
    cond = comfy_env.tiny_conditioning(seed=0)
    normal = comfy_env.build_flux(seed=5)
    with torch.inference_mode():
        inf = comfy_env.build_flux(seed=5)
    dm_inf = inf.get_model_object("diffusion_model")
    assert all(p.is_inference() for p in dm_inf.parameters())
    before = [(id(p), p.clone()) for p in dm_inf.parameters()]
    out = []
    for model, ckpt in ((normal, False), (inf, True), (inf, False)):
        dm = model.get_model_object("diffusion_model")
        hooks = DragFlowHooks(dm, checkpointing=ckpt)
        loss = _loss_fn(dm, hooks.install(model), hooks, cond, True)
        z = _lat(2)["samples"].requires_grad_(True)
        out.append(torch.autograd.grad(loss(z), z)[0])
    torch.testing.assert_close(out[1], out[0], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(out[2], out[0], rtol=1e-5, atol=1e-8)
    after = list(dm_inf.parameters())
    assert [id(p) for p in after] == [i for i, _ in before]
    assert all(torch.equal(p, q) and p.is_inference() for p, (_, q) in zip(after, before))


# ------------------------------------------------------------------------------- the edit
def _instructions(op="relocate", target=(96, 56), anchor=None, begin=(48, 48)):
    from fluxdrag.pipelines.dragflow import add_region, build_region
    return add_region(None, build_region(_box(32, 64, 32, 64).float()[None], op, begin, target, anchor))


FAST = dict(steps=6, skip_steps=2, n_transport=3, n_intensify=2, kv_preset="non-ridge")  # K/V on: these tests exercise it


def _run(model, cond, ins=None, **kw):
    from fluxdrag.pipelines.dragflow import DragFlowSettings, run_dragflow
    return run_dragflow(model, _lat(), cond, cond, ins or _instructions(), settings=DragFlowSettings(**{**FAST, **kw}))


def test_eta_one_is_bitwise_no_injection(tiny_flux, tiny_cond):
    z_none, *_ = _run(tiny_flux, tiny_cond, kv_preset="none")
    z_eta1, _, _, res1 = _run(tiny_flux, tiny_cond, eta=1.0)
    z_eta0, _, _, res0 = _run(tiny_flux, tiny_cond, eta=0.0)
    assert torch.equal(z_eta1, z_none)
    assert not torch.equal(z_eta0, z_none)  # injection does something


def test_kv_capture_and_injection_hit_every_call(tiny_flux, tiny_cond):
    from fluxdrag.attention_patches.kv_bank import KVBank
    from fluxdrag.core.dragflow_layers import kv_layers
    seen = {}
    orig_init = KVBank.__init__

    def spy(self, *a, **k):
        orig_init(self, *a, **k)
        seen["bank"] = self
    KVBank.__init__ = spy
    from fluxdrag.attention_patches.router import watch_runs
    try:
        with watch_runs() as runs:
            _run(tiny_flux, tiny_cond)
    finally:
        KVBank.__init__ = orig_init
    bank = seen["bank"]
    assert bank.layers == kv_layers("non-ridge", 2, 2)  # mapped, keeping the share: double 0, single 1
    assert bank.layers.count == 2
    # the inversion's run and the edit's run, each with its own counts
    inv_run, edit_run = [r.of(bank) for r in runs if r.of(bank) is not None]
    # FireFlow inversion of 4 steps: 5 calls, the one at sigma 0 skipped, + the end point
    assert inv_run.captured == 4 * 2 and edit_run.captured == 1 * 2
    assert inv_run.hits == 0 and edit_run.misses == 0 and edit_run.hits > 0
    assert bank.cache.freed and len(bank.cache) == 0 and bank.keys == []  # freed when the node ended


def test_kv_injection_never_writes_the_destination_tokens(tiny_flux, tiny_cond, monkeypatch):
    """With the default ``kv_scope`` every injecting attention call of the edited branch leaves
    the K/V of the tokens the region moves to (and of the whole editable area) bit for bit the
    branch's own; only the kept background is replaced. ``kv_scope`` all (the paper) writes them."""
    from fluxdrag.attention_patches.kv_bank import KVBank
    from fluxdrag.core.affine import Region, resize_mask, warp_mask

    calls, current = [], {}
    orig, orig_attention = KVBank._blend, KVBank.attention

    def attention_spy(self, call, next_fn):   # the scope travels with the call
        current["scope"] = self._call(call).scope
        return orig_attention(self, call, next_fn)

    def spy(self, t, cached, start, stop, inject=None):
        out = orig(self, t, cached, start, stop, inject)
        calls.append((current["scope"], t, out, stop))
        return out
    monkeypatch.setattr(KVBank, "attention", attention_spy)
    monkeypatch.setattr(KVBank, "_blend", spy)
    # inversion at guidance 1 (the paper's): with the default (the edit's guidance) the held
    # background's own K/V can equal the cached ones bit for bit, and a write would not show
    _run(tiny_flux, tiny_cond, inversion_guidance=1.0)
    region = Region(_box(32, 64, 32, 64), "relocate", target=(96, 56), begin=(48, 48))
    dest = resize_mask(warp_mask(region.mask, region.affine()), (H // 16, W // 16), "any").reshape(-1)
    assert 0 < int(dest.sum()) < dest.numel()
    scoped = [c for c in calls if c[0] is not None]
    assert scoped, "the edited branch never injected"
    n_img = dest.numel()
    for scope, t, out, stop in scoped:
        assert not bool(scope[dest].any())
        assert bool(scope.any())  # the background is still injected
        img_t, img_o = t[:, :, stop - n_img:stop], out[:, :, stop - n_img:stop]
        assert torch.equal(img_o[:, :, ~scope], img_t[:, :, ~scope])
        assert not torch.equal(img_o[:, :, scope], img_t[:, :, scope])
    calls.clear()
    _run(tiny_flux, tiny_cond, kv_scope="all")
    assert calls and all(c[0] is None for c in calls)


def test_paper_settings_still_run(tiny_flux, tiny_cond):
    """Every departure switched back to the paper's value at once: the edit runs, the background
    outside the paper's rectangle is the re-sampled original branch bit for bit."""
    from fluxdrag.pipelines.dragflow import DragFlowSettings
    from fluxdrag.pipelines.settings import departures
    z, _, M, res = _run(tiny_flux, tiny_cond, **{**departures(DragFlowSettings), "n_transport": 3, "n_intensify": 2})
    assert res.z_orig is not None and torch.equal(res.z[..., ~M], res.z_orig[..., ~M])
    assert 0 < int(M.sum()) < M.numel() and torch.isfinite(z).all()
    assert len(res.losses) == 5


def test_optimisation_lowers_loss_and_background_is_the_original_branch(tiny_flux, tiny_cond):
    """INTENSIFY only (p = 1 throughout): the loss falls; after every update and every sampling
    step the latent outside the editable mask is bitwise the original branch."""
    import node_helpers

    from fluxdrag.attention_patches import dragflow as D
    from fluxdrag.attention_patches import kv_bank as K
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.core.affine import Region, background_edit_mask
    from fluxdrag.core.cache import TokenCache
    from fluxdrag.core.dragflow_layers import kv_layers
    from fluxdrag.pipelines import dragflow as P
    from fluxdrag.pipelines.inversion import run_inversion
    dm = tiny_flux.get_model_object("diffusion_model")
    bank = K.KVBank(kv_layers("non-ridge", 2, 2), TokenCache("device"))
    rec = run_inversion(tiny_flux, _lat(), tiny_cond, steps=6, strength=4 / 6,
                        edit_map=K.DragFlowKVPlan(bank, 8))
    hooks = D.DragFlowHooks(dm)
    m = patch_model(hooks.install(tiny_flux), bank)
    region = Region(_box(32, 64, 32, 64), "relocate", target=(80, 56), begin=(48, 48))
    M = background_edit_mask([region.mask], [region.affine()], H, W, out_hw=(16, 16))
    assert 0 < int(M.sum()) < M.numel()
    c1 = node_helpers.conditioning_set_values(tiny_cond, {"guidance": 1.0})
    iters, steps = [], []
    opt = P.EditSettings(n_transport=0, n_intensify=5, lr=3000.0, optimizer="sgd", early_exit=True,
                         token_grid=False)
    res = P.run_edit(m, hooks, bank, rec.z_T, rec.sigmas, conds={"drag": tiny_cond, "original": c1, "source": c1},
                     regions=[region], edit_mask=M, feature_hw=(32, 32), settings=opt,
                     on_iteration=lambda d: iters.append(d["z"].clone()),
                     on_step=lambda d: steps.append((d["z"].clone(), d["z_orig"].clone())))
    rec.free_caches()
    assert len(iters) == 5 and len(steps) == 4
    assert res.losses[-1] < 0.9 * res.losses[0], res.losses
    for z in iters:
        assert torch.equal(z[..., ~M], res.z_bg[..., ~M])
    for z, zo in steps:
        assert torch.equal(z[..., ~M], zo[..., ~M])
    assert torch.equal(res.z[..., ~M], res.z_orig[..., ~M])
    assert not torch.equal(res.z[..., M], res.z_orig[..., M])  # the edit changed the region
    assert res.calls["single"] > 0  # sampling ran full forwards


def test_shared_model_untouched(tiny_flux, tiny_cond):
    dm = tiny_flux.get_model_object("diffusion_model")
    opts = repr(tiny_flux.model_options)
    params = [(id(p), p.detach().clone()) for p in dm.parameters()]
    _run(tiny_flux, tiny_cond, activations="fp32")
    assert repr(tiny_flux.model_options) == opts
    now = list(dm.parameters())
    assert [id(p) for p in now] == [i for i, _ in params]
    assert all(torch.equal(p, q) for p, (_, q) in zip(now, params))


def test_region_instruction_node_composes_and_previews(comfy):  # noqa: F811
    from fluxdrag.nodes.dragflow import RegionInstruction
    a = RegionInstruction.execute(_box(32, 64, 32, 64).float()[None], "relocate", 48, 48, 96, 56)
    ins = a.args[0]
    b = RegionInstruction.execute(_box(80, 112, 80, 112).float()[None], "rotate", 110, 96, 96, 110,
                                  depth="behind", drag_instructions=ins)
    ins2, prev = b.args
    assert [r.op for r in ins2.regions] == ["relocate", "rotate"]
    assert [r.depth for r in ins2.regions] == ["auto", "behind"]     # the node's depth intent
    assert '"depth": "behind"' in ins2.to_json()
    assert ins2.regions[1].anchor == (96.0, 96.0)  # default pivot: the region's centroid
    assert prev.shape == (1, H, W, 3)
    from fluxdrag.core.instructions import parse_instructions
    assert parse_instructions(ins2.to_json()) == ins2  # round trip through the shared JSON


@pytest.mark.parametrize("kw, needle", [
    (dict(mask=torch.zeros(1, H, W)), "'mask' is empty"),
    (dict(op="rotate", anchor=(500.0, 10.0)), "'anchor_x/anchor_y'"),
    (dict(op="rotate", begin=(80, 48), target=(112, 48), anchor=(48.0, 48.0)), "rotation of 0"),
    (dict(begin=(48, 48), target=(0, 0)), None),
    (dict(begin=(120, 120)), "'begin_x/begin_y'"),
    (dict(target=(48, 48)), "same point"),
    (dict(depth="below"), "'depth'"),
])
def test_bad_region_inputs_name_the_input(comfy, kw, needle):  # noqa: F811
    from fluxdrag.nodes.common import FluxDragInputError
    from fluxdrag.pipelines.dragflow import build_region
    args = dict(mask=_box(32, 64, 32, 64).float()[None], op="relocate", begin=(48, 48),
                target=(96, 56), anchor=None)
    args.update(kw)
    if needle is None:  # a legal move to the corner: the moved region still touches the image
        build_region(**args)
        return
    with pytest.raises(FluxDragInputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        build_region(**args)


def test_region_moved_off_the_image_is_refused(comfy):  # noqa: F811
    from fluxdrag.nodes.common import FluxDragInputError
    from fluxdrag.pipelines.dragflow import build_region
    mask = torch.zeros(1, H, W)
    mask[0, 0:8, 0:8] = 1
    with pytest.raises(FluxDragInputError, match="touch nothing"):
        build_region(mask, "relocate", (0, 0), (128, 128), None)


def test_bad_optimise_inputs(tiny_flux, tiny_cond):
    from fluxdrag.core.instructions import Drag, DragInstructions
    from fluxdrag.nodes.common import FluxDragInputError
    from fluxdrag.pipelines.dragflow import DragFlowSettings as S
    from fluxdrag.pipelines.dragflow import run_dragflow
    from tools import comfy_env
    # point drags become regions (fluxdrag/core/drag_sets.py); with none long enough nothing can move
    too_short = DragInstructions((W, H), drags=[Drag((10, 10), (11, 10)), Drag((30, 30), (30, 30))])
    with pytest.raises(FluxDragInputError, match="'drag_instructions': DragFlow: no drag is left to move"):
        run_dragflow(tiny_flux, _lat(), tiny_cond, tiny_cond, too_short, settings=S(**FAST))
    two = {"samples": torch.zeros(2, 16, 16, 16)}
    with pytest.raises(FluxDragInputError, match="'latent' has a batch of 2"):
        run_dragflow(tiny_flux, two, tiny_cond, tiny_cond, _instructions(), settings=S(**FAST))
    with pytest.raises(FluxDragInputError, match="'skip_steps'"):
        run_dragflow(tiny_flux, _lat(), tiny_cond, tiny_cond, _instructions(), settings=S(steps=6, skip_steps=6))
    with pytest.raises(FluxDragInputError, match="'kv_custom'"):
        run_dragflow(tiny_flux, _lat(), tiny_cond, tiny_cond, _instructions(),
                     settings=S(**{**FAST, "kv_preset": "custom", "kv_custom": "double: x"}))
    with pytest.raises(FluxDragInputError, match="input 'model'"):
        run_dragflow(comfy_env.build_sd15(), _lat(), tiny_cond, tiny_cond, _instructions(), settings=S(**FAST))
    for name in ("feature_grid", "optimizer", "kv_scope", "background", "hole_fill", "init",
                 "edit_region"):
        with pytest.raises(FluxDragInputError, match=f"input '{name}' 'nope' unknown; choose"):
            run_dragflow(tiny_flux, _lat(), tiny_cond, tiny_cond, _instructions(),
                         settings=S(**{**FAST, name: "nope"}))


def test_adapter_tokens_join_both_prompts(comfy):  # noqa: F811
    from fluxdrag.nodes.common import FluxDragInputError
    from fluxdrag.pipelines.dragflow import with_adapter
    src = [[torch.randn(1, 5, 4), {"pooled_output": torch.zeros(1, 3)}]]
    tgt = [[torch.randn(1, 7, 4), {"pooled_output": torch.ones(1, 3)}]]
    img_tokens = torch.randn(1, 3, 4)
    styled = [[torch.cat((src[0][0], img_tokens), 1), {"pooled_output": torch.zeros(1, 3)}]]
    s, t = with_adapter(src, tgt, styled)  # made from the source: only its 3 new tokens join
    assert torch.equal(s[0][0], styled[0][0])
    assert torch.equal(t[0][0], torch.cat((tgt[0][0], img_tokens), 1))
    assert torch.equal(t[0][1]["pooled_output"], tgt[0][1]["pooled_output"])
    other = [[torch.randn(1, 2, 4), {}]]  # unrelated conditioning: all of its tokens join
    s, t = with_adapter(src, tgt, other)
    assert s[0][0].shape[1] == 7 and t[0][0].shape[1] == 9
    with pytest.raises(FluxDragInputError, match="attn_bias"):
        with_adapter(src, tgt, [[img_tokens, {"attention_mask": torch.zeros(1, 1, 1)}]])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and much faster on a loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def rope_grad(comfy):  # noqa: F811
    """FLUX's RoPE differentiable for the test (as during an edit), removed afterwards."""
    from fluxdrag.attention_patches.autograd import rope_autograd
    with rope_autograd():
        yield


def test_rope_backward_is_scoped_to_the_edit(tiny_flux, tiny_cond, monkeypatch):
    """Nothing is registered at import; the RoPE backward exists only while an edit runs and is
    removed after it — after a normal end, an error and a ComfyUI interrupt alike."""
    import comfy.model_management as mm

    from fluxdrag.attention_patches import autograd as A
    from fluxdrag.pipelines import dragflow as P
    if A._rope_differentiable():  # this ComfyUI's RoPE differentiates by itself: nothing to add
        with A.rope_autograd() as names:
            assert names == []
        return
    assert A.ACTIVE_ROPE_BACKWARDS == []
    seen = []
    orig = P.optimise_latent

    def spy(*a, **k):
        seen.append((A._rope_differentiable(), list(A.ACTIVE_ROPE_BACKWARDS)))
        return orig(*a, **k)
    monkeypatch.setattr(P, "optimise_latent", spy)
    _run(tiny_flux, tiny_cond, n_transport=1, n_intensify=0)
    assert seen and seen[0][0] and seen[0][1]  # registered during the edit
    assert not A._rope_differentiable() and A.ACTIVE_ROPE_BACKWARDS == []

    def boom(*a, **k):
        assert A._rope_differentiable()
        raise ValueError("boom")
    monkeypatch.setattr(P, "optimise_latent", boom)
    with pytest.raises(ValueError, match="boom"):
        _run(tiny_flux, tiny_cond)
    assert not A._rope_differentiable() and A.ACTIVE_ROPE_BACKWARDS == []

    def interrupted(*a, **k):
        mm.interrupt_current_processing(True)
        mm.throw_exception_if_processing_interrupted()
    monkeypatch.setattr(P, "optimise_latent", interrupted)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _run(tiny_flux, tiny_cond)
    finally:
        mm.interrupt_current_processing(False)
    assert not A._rope_differentiable() and A.ACTIVE_ROPE_BACKWARDS == []
    with A.rope_autograd() as outer:
        with A.rope_autograd() as inner:  # nested: the outer block's registration serves
            assert inner == [] and A._rope_differentiable()
        assert outer and A._rope_differentiable()
    assert not A._rope_differentiable()


def test_interrupt_mid_optimisation_cleans_up(tiny_flux, tiny_cond, monkeypatch):
    """A ComfyUI interrupt during the optimisation propagates; the K/V cache is freed, no
    capture session is left open and the weights are the original objects again."""
    import comfy.model_management as mm
    import comfy.utils

    from fluxdrag.attention_patches.kv_bank import KVBank
    banks = []
    orig_init = KVBank.__init__

    def spy(self, *a, **k):
        orig_init(self, *a, **k)
        banks.append(self)
    monkeypatch.setattr(KVBank, "__init__", spy)
    orig_update = comfy.utils.ProgressBar.update_absolute

    def update(self, value, total=None, preview=None):
        if value == 2 and total == 5 + 4:  # after the second optimisation iteration
            mm.interrupt_current_processing(True)
        return orig_update(self, value, total, preview)
    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update)
    dm = tiny_flux.get_model_object("diffusion_model")
    ids = [id(p) for p in dm.parameters()]
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _run(tiny_flux, tiny_cond)
    finally:
        mm.interrupt_current_processing(False)
    assert banks[0].cache.freed and len(banks[0].cache) == 0
    assert [id(p) for p in dm.parameters()] == ids


def test_an_existing_block_replacement_is_kept(tiny_flux, tiny_cond, rope_grad):
    """Another pack's double-block replacement still runs, inside ours, with and without grad."""
    from fluxdrag.attention_patches.dragflow import DragFlowHooks
    dm = tiny_flux.get_model_object("diffusion_model")
    seen = []

    def other(args, extra):
        seen.append(args["transformer_options"].get("block_index"))
        return extra["original_block"](args)
    base = tiny_flux.clone()
    base.set_model_patch_replace(other, "dit", "double_block", 1)
    hooks = DragFlowHooks(dm)
    m = hooks.install(base)
    x = _lat()["samples"]
    with torch.no_grad():
        plain = _call(dm, _to(tiny_flux), x, tiny_cond)
        hooked = _call(dm, _to(m), x, tiny_cond)
    assert torch.equal(plain, hooked) and seen == [1]
    z = x.clone().requires_grad_(True)
    feats = hooks.features(lambda: _call(dm, _to(m), z, tiny_cond), 64)
    (g,) = torch.autograd.grad(feats[1][1].square().sum(), z)
    assert seen == [1, 1, 1]  # forward + the checkpoint's recompute in backward
    assert g.abs().sum() > 0


@pytest.mark.parametrize("checkpointing", [True, False])
def test_gradient_survives_low_memory_attention(tiny_flux, tiny_cond, checkpointing, rope_grad, monkeypatch):
    """With little free memory ComfyUI's CPU sub-quadratic attention chunks the keys and
    exponentiates in place (no autograd); DragFlow's gradient blocks use SDPA instead, and the
    gradient is the one computed with ample memory."""
    import comfy.model_management as mm

    from fluxdrag.attention_patches.dragflow import DragFlowHooks
    dm = tiny_flux.get_model_object("diffusion_model")
    grads = []
    for low in (False, True):
        if low:
            monkeypatch.setattr(mm, "get_free_memory", lambda *a, **k: (1e4, 1e4))
        hooks = DragFlowHooks(dm, checkpointing=checkpointing)
        loss = _loss_fn(dm, hooks.install(tiny_flux), hooks, tiny_cond, True)
        z = _lat(2)["samples"].requires_grad_(True)
        (g,) = torch.autograd.grad(loss(z), z)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)
