"""Invert / Sample From Inversion nodes on a tiny FLUX in real ComfyUI."""
import pytest
import torch
from comfy_fixtures import comfy, latent, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2


def _nodes():
    from fluxdrag.nodes import inversion
    return inversion


def _guid1(cond):
    import node_helpers
    return node_helpers.conditioning_set_values(cond, {"guidance": 1.0})


def _roundtrip(model, cond, solver, steps):
    inv = _nodes()
    lat = latent(0)
    noise, rec = inv.Invert.execute(model, lat, cond, steps=steps, solver=solver).args
    out = inv.SampleFromInversion.execute(model, rec, _guid1(cond)).args[0]
    return (out["samples"] - lat["samples"]).abs().mean().item(), rec, noise


def test_roundtrip_solvers_ordered(tiny_flux, tiny_cond):
    e_euler, rec, noise = _roundtrip(tiny_flux, tiny_cond, "euler", 8)
    e_fire, rec_f, _ = _roundtrip(tiny_flux, tiny_cond, "fireflow", 8)
    e_uni, rec_u, _ = _roundtrip(tiny_flux, tiny_cond, "uni_inv", 8)
    assert e_fire < e_euler and e_uni < e_euler
    e_fire16 = _roundtrip(tiny_flux, tiny_cond, "fireflow", 16)[0]
    assert e_fire16 < 0.35 * e_fire  # second order: 4x less error per halving of the step
    assert rec_u.sample_solver == "euler" and rec_f.sample_solver == "fireflow"
    assert len(rec.trajectory) == 8
    assert float(rec.sigmas[0]) == pytest.approx(1.0) and float(rec.sigmas[-1]) == 0.0
    # the noise LATENT decodes back to the exact model-space z_T
    from fluxdrag.nodes.common import START_KEY
    assert torch.equal(noise[START_KEY], rec.z_T)


def test_inversion_model_calls(tiny_flux, tiny_cond):
    from fluxdrag.attention_patches.router import Controller, patch_model
    from fluxdrag.core.solvers import model_calls

    class Count(Controller):
        block_types = {"single"}
        block_indices = {"single": {0}}

        def __init__(self):
            self.sigmas = []

        def attention(self, call, next_fn):
            self.sigmas.append(call.ctx.sigma)
            return next_fn(call.q, call.k, call.v, call.mask)

    inv = _nodes()
    for solver in ("euler", "fireflow", "uni_inv"):
        c = Count()
        inv.Invert.execute(patch_model(tiny_flux, c), latent(0), tiny_cond, steps=6, solver=solver)
        assert len(c.sigmas) == model_calls(solver, 6)
        assert c.sigmas[0] == 0.0  # the first inversion evaluation is at sigma 0


def test_strength_partial(tiny_flux, tiny_cond):
    inv = _nodes()
    lat = latent(0)
    _, rec = inv.Invert.execute(tiny_flux, lat, tiny_cond, steps=10, solver="fireflow", strength=0.5).args
    assert len(rec.sigmas) == 6 and float(rec.sigmas[0]) < 1.0
    out = inv.SampleFromInversion.execute(tiny_flux, rec, _guid1(tiny_cond)).args[0]
    assert (out["samples"] - lat["samples"]).abs().mean().item() < 0.03


def test_bad_inputs_have_clear_messages(tiny_flux, tiny_cond):
    from fluxdrag.nodes.common import FluxDragInputError
    inv = _nodes()
    with pytest.raises(FluxDragInputError, match="multiple of 16"):
        inv.Invert.execute(tiny_flux, {"samples": torch.zeros(1, 16, 33, 32)}, tiny_cond)
    ctx, opts = tiny_cond[0]
    c2 = [[torch.cat([ctx] * 2), dict(opts, pooled_output=torch.cat([opts["pooled_output"]] * 2))]]
    with pytest.raises(FluxDragInputError, match="'positive' has batch 2"):
        inv.Invert.execute(tiny_flux, latent(0, b=3), c2)
    _, rec = inv.Invert.execute(tiny_flux, latent(0), tiny_cond, steps=2).args
    with pytest.raises(FluxDragInputError, match="input 'latent' has shape"):
        inv.SampleFromInversion.execute(tiny_flux, rec, tiny_cond, latent=latent(0, h=16))


def test_sd15_model_rejected(comfy, tiny_cond):
    from fluxdrag.nodes.common import FluxDragInputError
    from tools.comfy_env import build_sd15
    sd = build_sd15()
    with pytest.raises(FluxDragInputError, match="input 'model' is a BaseModel.*needs a FLUX model"):
        _nodes().Invert.execute(sd, latent(0, h=8, w=8).copy() | {"samples": torch.zeros(1, 4, 8, 8)}, tiny_cond)


def test_ordinary_sampling_with_sampler_nodes(tiny_flux, tiny_cond):
    """FireFlow / Uni-Inv SAMPLER outputs work with ComfyUI's own custom-sampling path."""
    import comfy.sample
    inv = _nodes()
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(1, 16, 32, 32, generator=g)
    from fluxdrag.nodes.common import sampling_sigmas
    sig = sampling_sigmas(tiny_flux, "simple", 6)
    outs = {}
    for name, node, kw in (("fireflow", inv.FireFlowSampler, {}), ("uni_inv", inv.UniInvSampler, {"zero_init": False})):
        sampler = node.execute(**kw).args[0]
        outs[name] = comfy.sample.sample_custom(tiny_flux, noise, 1.0, sampler, sig, tiny_cond, tiny_cond,
                                                torch.zeros(1, 16, 32, 32), disable_pbar=True, seed=3)
        assert torch.isfinite(outs[name]).all()
    ref = comfy.sample.sample(tiny_flux, noise, 60, 1.0, "euler", "simple", tiny_cond, tiny_cond,
                              torch.zeros(1, 16, 32, 32), seed=3, disable_pbar=True)
    eul = comfy.sample.sample(tiny_flux, noise, 6, 1.0, "euler", "simple", tiny_cond, tiny_cond,
                              torch.zeros(1, 16, 32, 32), seed=3, disable_pbar=True)
    # FireFlow at 6 steps is closer to the fine-step solution than Euler at 6 steps
    assert (outs["fireflow"] - ref).abs().mean() < (eul - ref).abs().mean()


def test_direct_callers_keep_no_autograd_graph(tiny_flux, tiny_cond):
    """Outside ComfyUI's executor (no inference_mode) on weights that require grad, the helpers
    must not build autograd graphs: nothing they return carries a grad_fn."""
    inv = _nodes()
    dm = tiny_flux.model.diffusion_model
    assert any(p.requires_grad for p in dm.parameters())
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    rec = inv.run_inversion(tiny_flux, latent(0), tiny_cond, steps=4, solver="fireflow")
    assert rec.z_T.grad_fn is None and not rec.z_T.requires_grad
    assert all(t.grad_fn is None for t in rec.trajectory)
    z = inv.run_sampling(tiny_flux, rec, _guid1(tiny_cond))
    assert z.grad_fn is None and not z.requires_grad
