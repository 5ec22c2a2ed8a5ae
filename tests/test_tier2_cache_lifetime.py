"""The edit cache is freed when sampling ends: on success, on an exception, on a ComfyUI interrupt."""
import pytest
import torch
from comfy_fixtures import comfy, latent, sample_plain, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2


def _classes():
    from fluxdrag.attention_patches.router import Controller
    from fluxdrag.core.cache import sigma_key

    class Capture(Controller):
        block_types = {"single"}

        def __init__(self, cache):
            self.cache = cache

        def attention(self, call, next_fn):
            self.cache.put(sigma_key(call.ctx.sigma), call.block_index, "k", call.k,
                           index=torch.arange(3))
            return next_fn(call.q, call.k, call.v, call.mask)

    class Map:
        cache_name = "test"

        def capture_controllers(self, cache, sigmas, shape, model):
            return [Capture(cache)]

    class Consumer(Controller):
        """Reads the cache while sampling; optionally fails or interrupts at a given step."""
        block_types = {"single"}

        def __init__(self, cache, fail_at=None, interrupt_at=None):
            self.cache, self.fail_at, self.interrupt_at = cache, fail_at, interrupt_at
            self.reads = 0

        def attention(self, call, next_fn):
            import comfy.model_management
            step = call.ctx.step
            if self.fail_at is not None and step == self.fail_at:
                raise RuntimeError("boom")
            if self.interrupt_at is not None and step == self.interrupt_at:
                comfy.model_management.interrupt_current_processing(True)
            if self.cache.has(sigma_key(call.ctx.sigma), call.block_index, "k"):
                self.reads += 1
            return next_fn(call.q, call.k, call.v, call.mask)

        def on_sample_end(self, error):
            self.cache.free()

    return Map, Consumer


def _invert(model, cond):
    from fluxdrag.nodes import inversion as inv
    Map, _ = _classes()
    _, rec = inv.Invert.execute(model, latent(0), cond, steps=4, solver="uni_inv", edit_map=Map()).args
    return rec


def test_cache_filled_then_freed_after_sampling(tiny_flux, tiny_cond):
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.nodes import inversion as inv
    rec = _invert(tiny_flux, tiny_cond)
    cache = rec.caches["test"]
    assert len(cache) == 5 * 2 and cache.nbytes > 0  # 5 evaluations (N+1) x 2 single blocks
    _, Consumer = _classes()
    cons = Consumer(cache)
    inv.SampleFromInversion.execute(patch_model(tiny_flux, cons), rec, tiny_cond)
    assert cons.reads == 4 * 2  # every Euler sampling evaluation found its inversion entry
    assert cache.nbytes == 0 and cache.freed


def test_cache_freed_on_exception(tiny_flux, tiny_cond):
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.nodes import inversion as inv
    rec = _invert(tiny_flux, tiny_cond)
    cache = rec.caches["test"]
    _, Consumer = _classes()
    with pytest.raises(RuntimeError, match="boom"):
        inv.SampleFromInversion.execute(patch_model(tiny_flux, Consumer(cache, fail_at=2.0)), rec, tiny_cond)
    assert cache.nbytes == 0 and cache.freed


def test_cache_freed_on_interrupt(tiny_flux, tiny_cond):
    import comfy.model_management as mm

    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.nodes import inversion as inv
    rec = _invert(tiny_flux, tiny_cond)
    cache = rec.caches["test"]
    _, Consumer = _classes()
    try:
        with pytest.raises(mm.InterruptProcessingException):
            inv.SampleFromInversion.execute(patch_model(tiny_flux, Consumer(cache, interrupt_at=1.0)), rec, tiny_cond)
    finally:
        mm.interrupt_current_processing(False)
    assert cache.nbytes == 0 and cache.freed


def test_cache_freed_through_comfy_sampling_path(tiny_flux, tiny_cond):
    """Outside our node (e.g. KSampler / SamplerCustomAdvanced) the OUTER_SAMPLE wrapper frees it."""
    from fluxdrag.attention_patches.router import patch_model
    from fluxdrag.core.cache import TokenCache
    _, Consumer = _classes()
    cache = TokenCache("cpu")
    cache.put(0, 0, "k", torch.ones(4))
    with pytest.raises(RuntimeError, match="boom"):
        sample_plain(patch_model(tiny_flux, Consumer(cache, fail_at=1.0)), tiny_cond)
    assert cache.nbytes == 0
    cache.put(0, 0, "k", torch.ones(4))
    sample_plain(patch_model(tiny_flux, Consumer(cache)), tiny_cond)
    assert cache.nbytes == 0


def test_inversion_budget_refusal_frees(tiny_flux, tiny_cond):
    from fluxdrag.core.cache import CacheBudgetError
    from fluxdrag.nodes import inversion as inv
    Map, _ = _classes()
    with pytest.raises(CacheBudgetError, match="over the budget"):
        inv.run_inversion(tiny_flux, latent(0), tiny_cond, steps=4, edit_map=Map(), cache_budget_gb=1e-9)


def test_automatic_budget_refuses_a_cache_larger_than_the_available_ram(tiny_flux, tiny_cond, monkeypatch):
    """cache_budget_gb 0 = automatic for host-RAM caches: 80 % of the RAM available now."""
    import psutil

    from fluxdrag.core.cache import CacheBudgetError
    from fluxdrag.nodes import inversion as inv

    class VM:
        available = 1000   # bytes
    monkeypatch.setattr(psutil, "virtual_memory", lambda: VM)
    from fluxdrag.pipelines.inversion import cache_budget
    assert cache_budget("cpu", 0.0)[0] == 800 and cache_budget("fp8", 0.0)[0] == 800
    assert cache_budget("device", 0.0) == (None, "")
    assert cache_budget("cpu", 2.0)[0] == 2 * 1024 ** 3
    Map, _ = _classes()
    with pytest.raises(CacheBudgetError, match="automatic: 80% of the 1000 B of RAM available"):
        inv.run_inversion(tiny_flux, latent(0), tiny_cond, steps=4, edit_map=Map())
    rec = inv.run_inversion(tiny_flux, latent(0), tiny_cond, steps=4, edit_map=Map(), cache_budget_gb=1.0)
    assert rec.caches["test"].nbytes > 1000
    rec.free_caches()
