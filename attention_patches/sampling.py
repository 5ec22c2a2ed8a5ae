"""The one place where ``core.solvers`` meet ComfyUI's sampler machinery.

- :func:`velocity_function` turns ComfyUI's denoiser (``model(x, σ)`` returning x₀) into the
  velocity callable the solvers want: v = (x − x₀)/σ. At σ = 0 (the first inversion evaluation)
  x₀ = x carries no velocity, so the raw FLUX output is read through a ``DIFFUSION_MODEL`` wrapper
  on the run's own options copy (combined with CFG like ComfyUI does when cfg ≠ 1).
- :class:`FluxDragKSampler` is a ``comfy.samplers.KSAMPLER`` that, besides ordinary sampling,
  inverts (sigmas increasing: starts at the clean latent, no noise scaling) and samples from an
  inverted latent exactly (``exact_start``: the given noise *is* x at σ₀, also for σ₀ < 1).
  It keeps the final latent in model space (``result``) so an inversion record is exact.
"""
from __future__ import annotations

import contextvars
from typing import Callable, Optional

import torch

from ..core import solvers
from .router import after_step_hooks

CAPTURE_KEY = "fluxdrag_velocity"
_CAPTURE: contextvars.ContextVar = contextvars.ContextVar("fluxdrag_capture", default=None)


def _capture_wrapper(executor, x, timestep, context, *args, **kwargs):
    out = executor(x, timestep, context, *args, **kwargs)
    sink = _CAPTURE.get()
    if sink is not None:
        to = args[4] if len(args) > 4 else kwargs.get("transformer_options", {})
        sink.append((list(to.get("cond_or_uncond", [])), out))
    return out


def _install_capture(extra_args: dict) -> None:
    import comfy.patcher_extension as pe

    mo = extra_args.setdefault("model_options", {})
    wrappers = mo.setdefault("transformer_options", {}).setdefault("wrappers", {})
    lst = wrappers.setdefault(pe.WrappersMP.DIFFUSION_MODEL, {}).setdefault(CAPTURE_KEY, [])
    if _capture_wrapper not in lst:
        lst.append(_capture_wrapper)


def _combine_raw(captured: list, cfg: float, x: torch.Tensor) -> torch.Tensor:
    cond, uncond = [], []
    for labels, out in captured:
        for lab, chunk in zip(labels, out.chunk(len(labels))):
            (cond if lab == 0 else uncond).append(chunk)
    if len(cond) != 1 or len(uncond) > 1:
        raise RuntimeError(
            "FluxDrag: evaluating the velocity at sigma 0 needs exactly one positive conditioning "
            "(no area/multi-cond mixes); combine the conditioning first or invert with one prompt.")
    v = cond[0]
    if uncond and abs(cfg - 1.0) > 1e-9:
        v = uncond[0] + cfg * (cond[0] - uncond[0])
    return v.to(x.dtype).reshape(x.shape)


def velocity_function(model, extra_args: dict, cfg: float = 1.0) -> Callable:
    """Velocity callable v(x, σ) over ComfyUI's denoiser ``model`` (a k-diffusion style wrapper)."""
    import comfy.model_management

    _install_capture(extra_args)

    def v(x: torch.Tensor, sigma: float) -> torch.Tensor:
        comfy.model_management.throw_exception_if_processing_interrupted()
        s = x.new_ones([x.shape[0]]) * sigma
        if sigma > 0:
            return (x - model(x, s, **extra_args)) / sigma
        sink: list = []
        token = _CAPTURE.set(sink)
        try:
            model(x, s, **extra_args)
        finally:
            _CAPTURE.reset(token)
        return _combine_raw(sink, cfg, x)

    return v


def sampler_function(solver: str, **solver_kwargs) -> Callable:
    """A k-diffusion style sampler function (for ``comfy.samplers.KSAMPLER``) running ``solver``."""
    fn = solvers.get_solver(solver)

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        cfg = float(getattr(getattr(model, "inner_model", None), "cfg", 1.0) or 1.0)
        vel = velocity_function(model, extra_args, cfg)
        hooks = after_step_hooks(extra_args.get("model_options"))

        def cb(d):
            x = d["x"]
            for hook in hooks:   # latent-level controllers (e.g. LazyDrag's background lock)
                r = hook(d["i"], d["sigma_next"], x)
                if r is not None:
                    x = r
            if callback is not None:
                sigma = d["sigma_next"]
                denoised = x - sigma * d["v"]
                callback({"i": d["i"], "x": x, "sigma": sigma, "sigma_hat": sigma,
                          "denoised": denoised})
            return x if hooks else None

        return fn(vel, x, sigmas, callback=cb, **solver_kwargs)

    return sample


def _ksampler_base():
    import comfy.samplers

    return comfy.samplers.KSAMPLER


class FluxDragKSampler:
    """Factory for a KSAMPLER subclass instance (ComfyUI is imported lazily)."""

    def __new__(cls, solver: str, exact_start: bool = False, step_callback: Optional[Callable] = None,
                **solver_kwargs):
        base = _ksampler_base()

        class _Sampler(base):
            def __init__(self):
                super().__init__(sampler_function(solver, **solver_kwargs))
                self.solver = solver
                self.exact_start = exact_start
                self.step_callback = step_callback
                self.result: Optional[torch.Tensor] = None

            def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None,
                       denoise_mask=None, disable_pbar=False):
                inverting = float(sigmas[-1]) > float(sigmas[0])
                if not inverting and not self.exact_start:
                    out = super().sample(model_wrap, sigmas, extra_args, callback, noise, latent_image,
                                         denoise_mask, disable_pbar)
                    self.result = out
                    return out
                import comfy.samplers

                extra_args["denoise_mask"] = None
                model_k = comfy.samplers.KSamplerX0Inpaint(model_wrap, sigmas)
                model_k.latent_image = latent_image
                model_k.noise = noise
                if inverting:
                    if float(sigmas[0]) != 0.0:
                        raise ValueError("FluxDrag: an inversion schedule must start at sigma 0")
                    x = latent_image
                else:
                    x = noise
                total = len(sigmas) - 1

                def cb(d):
                    if self.step_callback is not None:
                        self.step_callback(d["i"], total, d["x"])
                    if callback is not None:
                        callback(d["i"], d["denoised"], d["x"], total)

                x = self.sampler_function(model_k, x, sigmas, extra_args=extra_args,
                                          callback=cb, disable=disable_pbar)
                self.result = x
                if inverting:
                    return x
                return model_wrap.inner_model.model_sampling.inverse_noise_scaling(sigmas[-1], x)

        return _Sampler()
