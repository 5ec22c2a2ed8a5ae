"""Tier 2: AttentionDrag in real ComfyUI on a tiny SD1.x UNet (DDIM) and a tiny FLUX."""
import pytest
import torch
from comfy_fixtures import comfy, latent, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2

DRAGS = {"version": 1, "image_size": [256, 256],
         "drags": [{"handle": [88, 88], "target": [152, 120]}]}
# SD tests run on a 128x128 image (16x16 latent) to stay quick
SD_DRAGS = {"version": 1, "image_size": [128, 128],
            "drags": [{"handle": [44, 44], "target": [76, 60]}]}  # (+4, +2) latent cells
BOX = {"polygons": [[[32, 32], [56, 32], [56, 56], [32, 56]]]}  # latent cells 4..6
RIGID = dict(SD_DRAGS, mask=BOX)


@pytest.fixture(scope="module")
def tiny_sd(comfy):  # noqa: F811
    from tools import comfy_env

    return comfy_env.build_sd15(seed=0)


@pytest.fixture(scope="module")
def sd_cond(comfy):  # noqa: F811
    g = torch.Generator().manual_seed(0)
    return [[torch.randn(1, 77, 64, generator=g), {}]]


def sd_latent(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(1, 4, 16, 16, generator=g)}


def _settings(**kw):
    from fluxdrag.pipelines.attention_drag import AttentionDragSettings

    return AttentionDragSettings(**{"steps": 6, **kw})


def _options_fingerprint(model):
    return repr(model.model_options), id(model.model), len(model.get_wrappers("diffusion_model", "fluxdrag_router"))


def _unchanged_outside(out):
    for r, res in enumerate(out.moves):
        diff = (out.z_moved[r] != out.z_start[r]).any(dim=0).cpu()
        assert not (diff & ~res.changed_region.cpu()).any()
        assert torch.equal(out.z_moved[r][:, ~res.changed_region], out.z_start[r][:, ~res.changed_region])


def _transformer(block):
    from comfy.ldm.modules.attention import SpatialTransformer

    return next(m for m in block.modules() if isinstance(m, SpatialTransformer))


# ---------------------------------------------------------------------------------------- SD1.x
@pytest.fixture(scope="module")
def sd_outcome(tiny_sd, sd_cond):
    from fluxdrag.pipelines.attention_drag import run_attention_drag

    before = _options_fingerprint(tiny_sd)
    out = run_attention_drag(tiny_sd, sd_latent(), RIGID, sd_cond,
                             settings=_settings(mask_source="instructions", rigid=True))
    assert _options_fingerprint(tiny_sd) == before  # the shared MODEL untouched
    return out


def test_sd_path_schedule_capture_and_calls(sd_outcome):
    o = sd_outcome
    assert o.family == "sd1" and o.latent.shape == (1, 4, 16, 16) and torch.isfinite(o.latent).all()
    # 6 DDIM steps, strength 0.7 → the last 4 ([667, 501, 335, 169, 1][-4:] of leading spacing)
    assert o.info["schedule"].timesteps == [499, 333, 167, 1]
    assert o.info["inversion_labels"] == [1, 167, 333, 499]  # eps_at "next": last call is at t = 499
    assert o.model_calls == 8 and not o.extra_capture_call
    # default layer on the tiny UNet: first output block at half resolution
    assert str(o.layer) == "output.0" and o.capture.block == ("output", 0, 0)
    assert o.capture.grid == (8, 8) and o.capture.factor == 2
    assert o.capture.maps.shape == (1, 1, 8, 8)
    assert abs(float(o.capture.maps.detach().sum()) - 1.0) < 1e-4  # a softmax over the layer's cells


def test_sd_move_changes_only_the_mask_and_destination(sd_outcome):
    o = sd_outcome
    _unchanged_outside(o)
    plan, res = o.plans[0], o.moves[0]
    box = torch.zeros(16, 16, dtype=torch.bool)
    box[4:7, 4:7] = True
    assert torch.equal(plan.union.cpu(), box)
    # rigid move by (32, 16) px = (4, 2) latent cells: the box's content is copied exactly
    assert torch.equal(o.z_moved[0, :, 6:9, 8:11], o.z_start[0, :, 4:7, 4:7])
    assert res.written.sum() == 9 and res.holes.sum() > 0


def test_sd_edit_differs_from_reconstruction(sd_outcome, tiny_sd, sd_cond):
    from fluxdrag.pipelines.attention_drag import sd_denoise

    with torch.no_grad():
        recon = sd_denoise(tiny_sd, sd_outcome.z_start, sd_cond, sd_outcome.info["schedule"])
    diff = (sd_outcome.latent - recon).abs().mean(dim=(0, 1))
    assert diff[6:9, 8:11].mean() > 10 * diff[12:, :].mean()  # the edit is where the move was


def test_sd_capture_reads_the_chosen_self_attention(tiny_sd, sd_cond):
    """layer output.1: the captured q/k are exactly what that block's attn1 projected on the
    capture call (a forward hook on its to_q/to_k), not another block's."""
    from fluxdrag.core.attention_drag_move import attention_maps_from_qk
    from fluxdrag.pipelines.attention_drag import run_attention_drag

    dm = tiny_sd.get_model_object("diffusion_model")
    seen = {"q1": [], "k1": [], "q0": []}
    attn1 = _transformer(dm.output_blocks[1]).transformer_blocks[0].attn1
    hooks = [attn1.to_q.register_forward_hook(lambda m, i, o: seen["q1"].append(o.detach().clone())),
             attn1.to_k.register_forward_hook(lambda m, i, o: seen["k1"].append(o.detach().clone())),
             _transformer(dm.output_blocks[0]).transformer_blocks[0].attn1.to_q.register_forward_hook(
                 lambda m, i, o: seen["q0"].append(o.detach().clone()))]
    try:
        o = run_attention_drag(tiny_sd, sd_latent(1), SD_DRAGS, sd_cond, settings=_settings(layer="output.1"),
                               keep_qk=True)
    finally:
        for h in hooks:
            h.remove()
    assert o.capture.block == ("output", 1, 0)
    b, heads, n, d = o.capture.q.shape
    q = o.capture.q.transpose(1, 2).reshape(b, n, heads * d)
    k = o.capture.k.transpose(1, 2).reshape(b, n, heads * d)
    assert len(seen["q1"]) == 8  # 4 inversion + 4 sampling calls
    assert torch.equal(q, seen["q1"][3]) and torch.equal(k, seen["k1"][3])  # the last inversion call
    assert not any(t.shape == q.shape and torch.equal(t, q) for t in seen["q0"])
    again = attention_maps_from_qk(o.capture.q, o.capture.k, [(44, 44)], o.capture.grid, 8 * o.capture.factor)
    torch.testing.assert_close(o.capture.maps[0], again)


def test_sd_current_label_needs_one_probe_call(tiny_sd, sd_cond):
    from fluxdrag.pipelines.attention_drag import run_attention_drag

    o = run_attention_drag(tiny_sd, sd_latent(), SD_DRAGS, sd_cond, settings=_settings(eps_at="current", steps=3))
    assert o.info["schedule"].timesteps == [334, 1] and o.info["inversion_labels"] == [1, 1]
    assert o.extra_capture_call and o.model_calls == 2 * o.info["schedule"].steps + 1


# ---------------------------------------------------------------------------------------- FLUX
@pytest.fixture(scope="module")
def flux_outcome(tiny_flux, tiny_cond):  # noqa: F811
    from fluxdrag.pipelines.attention_drag import run_attention_drag

    before = _options_fingerprint(tiny_flux)
    out = run_attention_drag(tiny_flux, latent(0), DRAGS, tiny_cond, settings=_settings(), keep_qk=True)
    assert _options_fingerprint(tiny_flux) == before
    return out


def test_flux_path_capture_at_the_inverted_level(flux_outcome):
    o = flux_outcome
    rec = o.info["record"]
    assert o.family == "flux" and o.latent.shape == (1, 16, 32, 32) and torch.isfinite(o.latent).all()
    assert len(rec.sigmas) == 5  # strength 0.7 of 6 steps: the last 4
    # Uni-Inv's last evaluation is at the top sigma: read there, no extra call
    assert abs(o.capture.sigma - float(rec.sigmas[0])) < 1e-5 and not o.extra_capture_call
    assert o.model_calls == 5 + 4  # Uni-Inv N+1, Euler N
    assert str(o.layer) == "single.1" and o.capture.block == ("single", 1)
    assert o.capture.grid == (16, 16) and o.capture.factor == 2  # image tokens, 2x2 latent cells
    assert o.capture.q.shape == (1, 2, 256, 32)  # image slice only (no text tokens)
    _unchanged_outside(o)


def test_flux_edit_differs_from_reconstruction(flux_outcome, tiny_flux, tiny_cond):  # noqa: F811
    from fluxdrag.pipelines.inversion import run_sampling

    o = flux_outcome
    with torch.no_grad():
        recon = run_sampling(tiny_flux, o.info["record"], tiny_cond, start=o.z_start)
    assert not torch.equal(o.z_moved, o.z_start)
    diff = (o.latent - recon).abs().mean(dim=(0, 1))
    changed = o.moves[0].changed_region
    assert float(diff[changed].mean()) > 2 * float(diff[~changed].mean())


def test_flux_capture_reads_the_chosen_block(tiny_flux, tiny_cond):  # noqa: F811
    """single.0: per-token norms of the captured (RoPE-rotated) q equal those of that block's QK-norm
    output on some call (RoPE is a rotation), and match no call of single.1."""
    from fluxdrag.pipelines.attention_drag import run_attention_drag

    dm = tiny_flux.get_model_object("diffusion_model")
    seen = {0: [], 1: []}
    hooks = [dm.single_blocks[i].norm.register_forward_hook(
        lambda m, inp, out, i=i: seen[i].append(out[0].detach().clone())) for i in (0, 1)]
    try:
        o = run_attention_drag(tiny_flux, latent(2), DRAGS, tiny_cond, settings=_settings(layer="single.0"),
                               keep_qk=True)
    finally:
        for h in hooks:
            h.remove()
    assert o.capture.block == ("single", 0)
    n_txt = tiny_cond[0][0].shape[1]
    norms = o.capture.q.norm(dim=-1)

    def match(q):
        return q.shape[2] == n_txt + 256 and torch.allclose(q[:, :, n_txt:].norm(dim=-1), norms, atol=1e-5)

    assert any(match(q) for q in seen[0])
    assert not any(match(q) for q in seen[1])


def test_flux_fireflow_reads_with_one_extra_call(tiny_flux, tiny_cond):  # noqa: F811
    from fluxdrag.pipelines.attention_drag import run_attention_drag

    o = run_attention_drag(tiny_flux, latent(0), DRAGS, tiny_cond, settings=_settings(solver="fireflow"))
    rec = o.info["record"]
    assert o.extra_capture_call and abs(o.capture.sigma - float(rec.sigmas[0])) < 1e-5
    assert o.model_calls == (4 + 1) + 1 + (4 + 1)  # FireFlow N+1 both ways, plus the probe


# ---------------------------------------------------------------------------------------- errors
def _expect_input_error(fn, *words):
    from fluxdrag.nodes.common import FluxDragInputError

    with pytest.raises(FluxDragInputError) as e:
        fn()
    msg = str(e.value)
    assert msg.startswith("FluxDrag AttentionDrag:")
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("family", ["sd1", "flux"])
def test_zero_length_drag_is_a_clear_error(family, tiny_sd, sd_cond, tiny_flux, tiny_cond):  # noqa: F811
    from fluxdrag.pipelines.attention_drag import run_attention_drag

    model, cond, lat = (tiny_sd, sd_cond, sd_latent()) if family == "sd1" else (tiny_flux, tiny_cond, latent(0))
    before = _options_fingerprint(model)
    size = [lat["samples"].shape[-1] * 8] * 2
    same = {"version": 1, "image_size": size, "drags": [{"handle": [88, 88], "target": [88, 88]}]}
    _expect_input_error(lambda: run_attention_drag(model, lat, same, cond), "'drag_instructions'", "only anchors")
    scaled = {"version": 1, "image_size": size,
              "drags": [{"handle": [88, 88], "target": [88, 88], "mode": "move", "scale": [2, 2]}]}
    _expect_input_error(lambda: run_attention_drag(model, lat, scaled, cond), "'drag_instructions'", "zero length")
    short = {"version": 1, "image_size": size, "drags": [{"handle": [88, 88], "target": [90, 89]}]}
    _expect_input_error(lambda: run_attention_drag(model, lat, short, cond), "'drag_instructions'",
                        "no drag is left to move")
    assert _options_fingerprint(model) == before


def test_other_families_and_bad_inputs_are_refused(comfy, tiny_sd, sd_cond, tiny_flux, tiny_cond):  # noqa: F811
    import comfy.model_patcher
    import comfy.supported_models

    from fluxdrag.pipelines.attention_drag import run_attention_drag
    from tools.comfy_env import TINY_SD15

    mc = comfy.supported_models.SD20(dict(TINY_SD15))
    mc.set_inference_dtype(torch.float32, None)
    cpu = torch.device("cpu")
    sd2 = comfy.model_patcher.ModelPatcher(mc.get_model({}, device="cpu"), load_device=cpu, offload_device=cpu)
    msg = _expect_input_error(lambda: run_attention_drag(sd2, sd_latent(), SD_DRAGS, sd_cond), "input 'model'", "SD20")
    assert "FLUX.1" in msg and "SD1.x" in msg
    _expect_input_error(lambda: run_attention_drag(tiny_flux, sd_latent(), DRAGS, tiny_cond), "input 'latent'", "16")
    _expect_input_error(lambda: run_attention_drag(tiny_sd, sd_latent(), SD_DRAGS, sd_cond,
                                                   settings=_settings(layer="output.9")),
                        "input 'layer'", "output.0", "middle.0")
    _expect_input_error(lambda: run_attention_drag(tiny_sd, sd_latent(), SD_DRAGS, sd_cond,
                                                   settings=_settings(layer="single.1")), "input 'layer'")
    _expect_input_error(lambda: run_attention_drag(tiny_flux, latent(0), DRAGS, tiny_cond,
                                                   settings=_settings(layer="output.1")), "input 'layer'", "single.N")
    _expect_input_error(lambda: run_attention_drag(tiny_sd, sd_latent(), SD_DRAGS, sd_cond,
                                                   settings=_settings(mask_source="both")), "'mask_source'", "no mask")
    _expect_input_error(lambda: run_attention_drag(tiny_sd, sd_latent(), SD_DRAGS, sd_cond,
                                                   settings=_settings(cfg=3.0)), "'negative'")


def test_interrupt_stops_the_edit_and_leaves_the_model(comfy, tiny_sd, sd_cond):  # noqa: F811
    import comfy.model_management as mm

    from fluxdrag.pipelines.attention_drag import run_attention_drag

    before = _options_fingerprint(tiny_sd)
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run_attention_drag(tiny_sd, sd_latent(), SD_DRAGS, sd_cond, settings=_settings())
    finally:
        mm.interrupt_current_processing(False)
    assert _options_fingerprint(tiny_sd) == before


def test_node_schema_and_execute(tiny_sd, sd_cond):
    from fluxdrag.nodes import all_nodes
    from fluxdrag.nodes.attention_drag import AttentionDrag

    assert AttentionDrag in all_nodes()
    schema = AttentionDrag.define_schema()
    assert schema.node_id == "FluxDragAttentionDrag" and schema.display_name == "FluxDrag AttentionDrag"
    assert all(getattr(i, "tooltip", None) for i in schema.inputs)
    res = AttentionDrag.execute(tiny_sd, sd_latent(), SD_DRAGS, sd_cond, steps=3, image=torch.rand(1, 64, 64, 3))
    lat, prev = res.args
    assert lat["samples"].shape == (1, 4, 16, 16) and prev.shape == (1, 128, 128, 3)
    assert 0.0 <= float(prev.min()) and float(prev.max()) <= 1.0


def test_mask_source_auto_follows_the_instructions():
    """auto: the drawn mask when the instructions have one, else the automatic (attention) mask."""
    from fluxdrag.nodes.common import FluxDragInputError
    from fluxdrag.pipelines.attention_drag import AttentionDragSettings, resolve_mask_source
    s = AttentionDragSettings()
    assert s.mask_source == "auto"
    assert resolve_mask_source(s, torch.ones(8, 8)).mask_source == "instructions"
    assert resolve_mask_source(s, None).mask_source == "attention"
    fixed = AttentionDragSettings(mask_source="attention")
    assert resolve_mask_source(fixed, torch.ones(8, 8)) is fixed
    with pytest.raises(FluxDragInputError, match="'mask_source'"):
        resolve_mask_source(AttentionDragSettings(mask_source="drawn"), None)


# ------------------------------------------------------------------------- background lock
def _kept(o):
    """(edited, source) latents on the cells the move left alone, row 0."""
    keep = ~o.moves[0].changed_region.cpu()
    return o.latent[0][:, keep].cpu(), o.info["z_0"][0][:, keep].cpu()


def test_background_lock_keeps_the_untouched_cells_exactly(sd_outcome, flux_outcome):
    """background_lock 1 (default): every cell the move neither wrote nor vacated ends as the
    source, on both paths; the moved content is sampled freely."""
    for o in (sd_outcome, flux_outcome):
        edited, source = _kept(o)
        assert torch.equal(edited, source), o.family
        changed = o.moves[0].changed_region.cpu()
        assert not torch.equal(o.latent[0][:, changed].cpu(), o.info["z_0"][0][:, changed].cpu())


@pytest.mark.parametrize("family", ["sd1", "flux"])
def test_background_lock_off_is_the_paper(family, tiny_sd, sd_cond, tiny_flux, tiny_cond):  # noqa: F811
    from fluxdrag.pipelines.attention_drag import run_attention_drag

    if family == "sd1":
        o = run_attention_drag(tiny_sd, sd_latent(), RIGID, sd_cond,
                               settings=_settings(mask_source="instructions", rigid=True, background_lock=0.0))
    else:
        o = run_attention_drag(tiny_flux, latent(0), DRAGS, tiny_cond, settings=_settings(background_lock=0.0))
    edited, source = _kept(o)
    assert (edited - source).abs().max() > 1e-3   # the round trip alone drifts off the source
