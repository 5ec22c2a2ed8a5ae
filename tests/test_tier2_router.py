"""The attention router on a tiny FLUX in real ComfyUI: identity when idle, context, no mutation."""
import pytest
import torch
from comfy_fixtures import comfy, sample_plain, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2


def _router():
    from fluxdrag.attention_patches import router
    return router


class Recorder:
    def __init__(self):
        from fluxdrag.attention_patches.router import Controller

        class _R(Controller):
            name = "recorder"

            def __init__(s):
                s.calls = []

            def attention(s, call, next_fn):
                ctx = call.ctx
                s.calls.append((call.block_type, call.block_index, ctx.step, ctx.sigma, ctx.n_txt,
                                ctx.n_img, ctx.grid, ctx.direction, tuple(call.q.shape),
                                call.slices()["img"]))
                return next_fn(call.q, call.k, call.v, call.mask)
        self.c = _R()


def test_idle_router_is_bitwise_identical(tiny_flux, tiny_cond):
    r = _router()
    base = sample_plain(tiny_flux, tiny_cond)
    empty = sample_plain(r.patch_model(tiny_flux), tiny_cond)
    rec = Recorder().c
    passthrough = sample_plain(r.patch_model(tiny_flux, rec), tiny_cond)

    class Never(r.Controller):
        def claims(self, call):
            return False
    never = sample_plain(r.patch_model(tiny_flux, Never()), tiny_cond)
    assert torch.equal(base, empty)
    assert torch.equal(base, passthrough)
    assert torch.equal(base, never)
    assert len(rec.calls) == 4 * (2 + 2)  # 4 steps x (2 double + 2 single blocks)


def test_context_layout_and_steps(tiny_flux, tiny_cond):
    r = _router()
    rec = Recorder().c
    sample_plain(r.patch_model(tiny_flux, rec), tiny_cond)
    steps = sorted({c[2] for c in rec.calls})
    assert steps == [0.0, 1.0, 2.0, 3.0]
    for *_, n_txt, n_img, grid, direction, qshape, img in rec.calls:
        assert (n_txt, n_img, grid, direction) == (8, 256, (16, 16), -1)
        assert qshape == (1, 2, 8 + 256, 32)
        assert img == slice(8, 264)
    assert {(c[0], c[1]) for c in rec.calls} == {("double", 0), ("double", 1), ("single", 0), ("single", 1)}
    assert rec.calls[0][3] == pytest.approx(1.0)


def test_input_model_is_never_mutated(tiny_flux, tiny_cond):
    r = _router()
    before = sample_plain(tiny_flux, tiny_cond)
    opts_before = repr(tiny_flux.model_options)

    class Scale(r.Controller):
        block_types = {"single"}

        def attention(self, call, next_fn):
            return next_fn(call.q, call.k, call.v * 0.5, call.mask)

    patched = r.patch_model(tiny_flux, Scale())
    edited = sample_plain(patched, tiny_cond)
    assert not torch.equal(edited, before)
    again = r.patch_model(patched, Recorder().c)  # extending makes a new router, old one intact
    assert len(r.router_of_model(patched).controllers) == 1
    assert len(r.router_of_model(again).controllers) == 2
    assert torch.equal(sample_plain(tiny_flux, tiny_cond), before)
    assert repr(tiny_flux.model_options) == opts_before
    assert r.router_of_model(tiny_flux) is None


def test_foreign_override_stays_end_of_chain(tiny_flux, tiny_cond):
    r = _router()
    seen = []

    def foreign(func, *args, **kwargs):
        seen.append(1)
        return func(*args, **kwargs)

    m = tiny_flux.clone()
    m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = foreign
    base = sample_plain(m, tiny_cond)
    n = len(seen)
    out = sample_plain(r.patch_model(m, Recorder().c), tiny_cond)
    assert torch.equal(base, out)
    assert len(seen) == 2 * n


def test_rope_reencode_roundtrip(tiny_flux, tiny_cond):
    """Un-rotating k with the context's rotary table and rotating it back changes nothing
    (up to float rounding) — the table is the one FLUX used."""
    r = _router()
    from fluxdrag.attention_patches.rope import rope_rotate, rope_unrotate
    errs = []

    class ReRope(r.Controller):
        def attention(self, call, next_fn):
            pe = call.ctx.pe()
            raw = rope_unrotate(call.k, pe)
            k2 = rope_rotate(raw, pe)
            errs.append((k2 - call.k).abs().max().item())
            # un-rotated keys differ from rotated ones except at position 0
            assert not torch.allclose(raw, call.k)
            return next_fn(call.q, k2, call.v, call.mask)

    base = sample_plain(tiny_flux, tiny_cond)
    out = sample_plain(r.patch_model(tiny_flux, ReRope()), tiny_cond)
    assert max(errs) < 1e-5
    assert (out - base).abs().max().item() < 1e-4
