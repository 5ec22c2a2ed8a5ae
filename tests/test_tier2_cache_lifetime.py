"""Cache and run-state lifetime (issue 25).

- The edit cache belongs to the inversion record (FluxDrag Invert's output): sampling reads it and
  never frees or changes it, so the record serves any number of samplings.
- A sampling run's state is built when the run starts and dropped when it ends — on success, on an
  exception, on a ComfyUI interrupt, also through ComfyUI's own sampling path: afterwards nothing
  of the run is left on the patched MODEL, the input MODEL, the controllers or the record.
- An inversion that fails frees what it captured.
"""
import pytest
import torch
from comfy_fixtures import comfy, latent, sample_plain, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2


def _classes():
    from fluxdrag.attention_patches.router import Controller
    from fluxdrag.core.cache import sigma_key

    class Capture(Controller):
        block_types = {"single"}

        def __init__(self, cache, interrupt_at=None):
            self.cache, self.interrupt_at = cache, interrupt_at

        def attention(self, call, next_fn):
            import comfy.model_management
            if self.interrupt_at is not None and call.ctx.step == self.interrupt_at:
                comfy.model_management.interrupt_current_processing(True)
            self.cache.put(sigma_key(call.ctx.sigma), call.block_index, "k", call.k,
                           index=torch.arange(3))
            return next_fn(call.q, call.k, call.v, call.mask)

    class Map:
        cache_name = "test"

        def __init__(self, interrupt_at=None):
            self.interrupt_at = interrupt_at
            self.caches = []

        def capture_controllers(self, cache, sigmas, shape, model):
            self.caches.append(cache)
            return [Capture(cache, self.interrupt_at)]

    class Consumer(Controller):
        """Reads the cache while sampling, counting in its run state; optionally fails or
        interrupts at a given step."""
        block_types = {"single"}

        def __init__(self, cache, fail_at=None, interrupt_at=None):
            self.cache, self.fail_at, self.interrupt_at = cache, fail_at, interrupt_at

        def start_run(self, sigmas):
            return {"reads": 0, "ended": "running"}

        def end_run(self, state, error):
            state["ended"] = error

        def attention(self, call, next_fn):
            import comfy.model_management
            step = call.ctx.step
            if self.fail_at is not None and step == self.fail_at:
                raise RuntimeError("boom")
            if self.interrupt_at is not None and step == self.interrupt_at:
                comfy.model_management.interrupt_current_processing(True)
            if self.cache.has(sigma_key(call.ctx.sigma), call.block_index, "k"):
                call.state(self)["reads"] += 1
            return next_fn(call.q, call.k, call.v, call.mask)

    return Map, Consumer


def _invert(model, cond):
    from fluxdrag.nodes import inversion as inv
    Map, _ = _classes()
    _, rec = inv.Invert.execute(model, latent(0), cond, steps=4, solver="uni_inv", edit_map=Map()).args
    return rec


def _snapshot(obj) -> dict:
    """What a run could change on ``obj``: its attributes by identity and value."""
    return {k: (id(v), v if isinstance(v, (int, float, str, bool, type(None))) else None)
            for k, v in vars(obj).items()}


def _no_run_left(*models):
    from fluxdrag.attention_patches import router
    assert router._CURRENT.get() is None
    for m in models:
        assert router.RUN_KEY not in m.model_options.get("transformer_options", {})


def test_sampling_reads_the_record_and_leaves_it(tiny_flux, tiny_cond):
    from fluxdrag.attention_patches.router import patch_model, watch_runs
    from fluxdrag.nodes import inversion as inv
    rec = _invert(tiny_flux, tiny_cond)
    cache = rec.caches["test"]
    assert len(cache) == 5 * 2 and cache.nbytes > 0  # 5 evaluations (N+1) x 2 single blocks
    keys, nbytes = cache.keys(), cache.nbytes
    _, Consumer = _classes()
    cons = Consumer(cache)
    m = patch_model(tiny_flux, cons)
    with watch_runs() as runs:
        a = inv.SampleFromInversion.execute(m, rec, tiny_cond).args[0]["samples"]
        b = inv.SampleFromInversion.execute(m, rec, tiny_cond).args[0]["samples"]
    # every Euler sampling evaluation found its inversion entry, in each run, counted per run
    assert [r.of(cons)["reads"] for r in runs] == [4 * 2, 4 * 2]
    assert [r.of(cons)["ended"] for r in runs] == [None, None]
    assert cache.keys() == keys and cache.nbytes == nbytes and not cache.freed
    assert torch.equal(a, b)
    _no_run_left(m, tiny_flux)


@pytest.mark.parametrize("how", ["exception", "interrupt"])
def test_failed_sampling_leaves_no_run_state(tiny_flux, tiny_cond, how):
    import comfy.model_management as mm

    from fluxdrag.attention_patches.router import patch_model, watch_runs
    from fluxdrag.nodes import inversion as inv
    rec = _invert(tiny_flux, tiny_cond)
    cache = rec.caches["test"]
    nbytes = cache.nbytes
    _, Consumer = _classes()
    cons = Consumer(cache, **({"fail_at": 2.0} if how == "exception" else {"interrupt_at": 1.0}))
    m = patch_model(tiny_flux, cons)
    before, opts = _snapshot(cons), repr(m.model_options)
    expected = RuntimeError if how == "exception" else mm.InterruptProcessingException
    try:
        with watch_runs() as runs, pytest.raises(expected):
            inv.SampleFromInversion.execute(m, rec, tiny_cond)
    finally:
        mm.interrupt_current_processing(False)
    [run] = runs
    assert isinstance(run.error, expected) and isinstance(run.of(cons)["ended"], expected)
    assert _snapshot(cons) == before and repr(m.model_options) == opts
    assert cache.nbytes == nbytes and not cache.freed   # the record still serves
    _no_run_left(m, tiny_flux)
    ok = inv.SampleFromInversion.execute(patch_model(tiny_flux, Consumer(cache)), rec, tiny_cond)
    assert torch.isfinite(ok.args[0]["samples"]).all()


def test_comfy_sampling_path_ends_the_run_too(tiny_flux, tiny_cond):
    """Outside our nodes (KSampler / SamplerCustomAdvanced) the OUTER_SAMPLE wrapper ends the run."""
    from fluxdrag.attention_patches.router import patch_model, watch_runs
    from fluxdrag.core.cache import TokenCache
    _, Consumer = _classes()
    cache = TokenCache("cpu")
    cache.put(0, 0, "k", torch.ones(4))
    failing, fine = Consumer(cache, fail_at=1.0), Consumer(cache)
    with watch_runs() as runs:
        with pytest.raises(RuntimeError, match="boom"):
            sample_plain(patch_model(tiny_flux, failing), tiny_cond)
        sample_plain(patch_model(tiny_flux, fine), tiny_cond)
    assert isinstance(runs[0].of(failing)["ended"], RuntimeError) and runs[1].of(fine)["ended"] is None
    assert cache.nbytes > 0   # a cache the controllers only read is theirs to keep
    _no_run_left(tiny_flux)


def test_interrupted_inversion_frees_what_it_captured(tiny_flux, tiny_cond):
    import comfy.model_management as mm

    from fluxdrag.nodes import inversion as inv
    Map, _ = _classes()
    edit_map = Map(interrupt_at=2.0)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            inv.Invert.execute(tiny_flux, latent(0), tiny_cond, steps=4, solver="uni_inv", edit_map=edit_map)
    finally:
        mm.interrupt_current_processing(False)
    [cache] = edit_map.caches
    assert cache.freed and cache.nbytes == 0 and len(cache) == 0
    _no_run_left(tiny_flux)


def test_inversion_budget_refusal_frees(tiny_flux, tiny_cond):
    from fluxdrag.core.cache import CacheBudgetError
    from fluxdrag.nodes import inversion as inv
    Map, _ = _classes()
    edit_map = Map()
    with pytest.raises(CacheBudgetError, match="over the budget"):
        inv.run_inversion(tiny_flux, latent(0), tiny_cond, steps=4, edit_map=edit_map, cache_budget_gb=1e-9)
    assert edit_map.caches[0].freed and edit_map.caches[0].nbytes == 0


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


def test_invert_has_no_fingerprint():
    """Invert's output is an ordinary cached node output: no process-wide counter re-runs it."""
    from fluxdrag.core.cache import TokenCache
    from fluxdrag.nodes.inversion import Invert
    assert "fingerprint_inputs" not in vars(Invert) and not hasattr(TokenCache, "free_count")
