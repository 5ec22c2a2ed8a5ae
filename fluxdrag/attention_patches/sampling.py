"""The one place where ``core.solvers`` meet ComfyUI's sampler machinery.

- :func:`velocity_function` turns ComfyUI's denoiser (``model(x, σ)`` returning x₀) into the
  velocity callable the solvers want: v = (x − x₀)/σ. At σ = 0 (the first inversion evaluation)
  x₀ = x carries no velocity, so the raw FLUX output is read through a ``DIFFUSION_MODEL`` wrapper
  on the run's own options copy (combined with CFG like ComfyUI does when cfg ≠ 1).
- :func:`sampler_function` is a k-diffusion style sampler function (``comfy/k_diffusion/sampling.py``
  shape) running one of ``core.solvers``; handed to ComfyUI's own ``comfy.samplers.KSAMPLER``
  (:func:`solver_sampler`). Besides ordinary sampling it inverts (sigmas increasing: it starts at
  the clean latent the guider was given, ``model.latent_image``) and samples from an inverted
  latent exactly (``exact_start``: the noise the guider was given *is* x at σ₀, also for σ₀ < 1;
  ``model.noise``).
- :func:`direct_sampler` hands any function of ComfyUI's denoiser and an exact start latent to a
  plain ``KSAMPLER`` — our DDIM loops, one-off probe calls and DragFlow's edit steps run through
  ComfyUI's guider (conditioning, CFG, model loading, wrappers) this way.

``KSAMPLER.sample`` rescales what a sampler function returns for the last sigma and the guider
maps it out of model space; neither is exact for an inversion (σ_last = 1 would divide by 0), so
each function also leaves its model-space result in a :class:`SamplerRun`, which is what the
pipelines read.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
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


@dataclass
class SamplerRun:
    """The model-space latent a sampler function ended with (None until it ran)."""

    latent: Optional[torch.Tensor] = None


def sampler_function(solver: str, exact_start: bool = False,
                     on_step: Optional[Callable[[int, int, torch.Tensor], None]] = None,
                     run: Optional[SamplerRun] = None, **solver_kwargs) -> Callable:
    """A k-diffusion style sampler function (for ``comfy.samplers.KSAMPLER``) running ``solver``.

    Inverts when the sigmas increase (from ``model.latent_image``, σ₀ must be 0); with
    ``exact_start`` samples from ``model.noise`` as given. ``on_step(i, total, x)`` after every
    step; the final latent also goes to ``run``."""
    fn = solvers.get_solver(solver)

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        if float(sigmas[-1]) > float(sigmas[0]):
            if float(sigmas[0]) != 0.0:
                raise ValueError("FluxDrag: an inversion schedule must start at sigma 0")
            x = model.latent_image
        elif exact_start:
            x = model.noise
        cfg = float(getattr(getattr(model, "inner_model", None), "cfg", 1.0) or 1.0)
        vel = velocity_function(model, extra_args, cfg)
        hooks = after_step_hooks(extra_args.get("model_options"))
        total = len(sigmas) - 1

        def cb(d):
            x = d["x"]
            for hook in hooks:   # latent-level controllers (e.g. LazyDrag's background lock)
                r = hook(d["i"], d["sigma_next"], x)
                if r is not None:
                    x = r
            if on_step is not None:
                on_step(d["i"], total, x)
            if callback is not None:
                sigma = d["sigma_next"]
                denoised = x - sigma * d["v"]
                callback({"i": d["i"], "x": x, "sigma": sigma, "sigma_hat": sigma,
                          "denoised": denoised})
            return x if hooks else None

        out = fn(vel, x, sigmas, callback=cb, **solver_kwargs)
        if run is not None:
            run.latent = out
        return out

    return sample


def solver_sampler(solver: str, exact_start: bool = False,
                   on_step: Optional[Callable[[int, int, torch.Tensor], None]] = None,
                   **solver_kwargs) -> tuple:
    """(``comfy.samplers.KSAMPLER`` running ``solver``, its :class:`SamplerRun`)."""
    import comfy.samplers

    run = SamplerRun()
    return comfy.samplers.KSAMPLER(sampler_function(solver, exact_start, on_step, run, **solver_kwargs)), run


def direct_sampler(fn: Callable) -> tuple:
    """(``KSAMPLER``, :class:`SamplerRun`) running ``fn(model_k, x_start, sigmas, extra_args) -> x``
    from the exact start latent (the ``noise`` the guider is given, in model space; no noise
    scaling), ``model_k`` being ComfyUI's denoiser (``KSamplerX0Inpaint``)."""
    import comfy.samplers

    run = SamplerRun()

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        run.latent = fn(model, model.noise, sigmas, {} if extra_args is None else extra_args)
        return run.latent

    return comfy.samplers.KSAMPLER(sample), run
