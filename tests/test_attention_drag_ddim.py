"""Tier 1: deterministic DDIM sampling/inversion (fluxdrag/core/ddim.py) with analytic ε."""
from __future__ import annotations

import math

import pytest
import torch

from fluxdrag.core.ddim import (
    DDIMSchedule,
    alphas_from_sigmas,
    ddim_invert,
    ddim_sample,
    ddim_schedule,
    ddim_step,
    ddim_timesteps,
    from_ddim,
    inversion_labels,
    sigma_from_alpha,
    to_ddim,
)


def _sd_alphas() -> torch.Tensor:
    """SD1.5's ᾱ table: scaled-linear betas 0.00085 … 0.012 over 1000 steps."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


ALPHAS = _sd_alphas()
MU = torch.tensor([[0.7, -1.2, 0.3, 2.0]], dtype=torch.float64)


def point_mass_eps(x: torch.Tensor, t: int) -> torch.Tensor:
    """Exact ε for data = δ(μ): x_t = √ᾱ μ + √(1−ᾱ) ε."""
    a = float(ALPHAS[t])
    return (x - math.sqrt(a) * MU) / math.sqrt(1 - a)


def gaussian_eps(x: torch.Tensor, t: int, s2: float = 0.25) -> torch.Tensor:
    """Exact E[ε | x_t] for data ~ N(μ, s²): √(1−ᾱ)(x − √ᾱ μ) / (ᾱ s² + 1 − ᾱ)."""
    a = float(ALPHAS[t])
    return math.sqrt(1 - a) * (x - math.sqrt(a) * MU) / (a * s2 + 1 - a)


def test_leading_timesteps_and_schedule():
    assert ddim_timesteps(4) == [751, 501, 251, 1]
    assert ddim_timesteps(50)[:3] == [981, 961, 941] and ddim_timesteps(50)[-1] == 1
    sch = ddim_schedule(ALPHAS, 4)
    assert sch.timesteps == [751, 501, 251, 1]
    assert sch.alphas[:4] == [float(ALPHAS[t]) for t in (751, 501, 251, 1)] and sch.alphas[-1] == 1.0
    tail = ddim_schedule(ALPHAS, 10).tail(0.7)
    assert tail.steps == 7 and tail.timesteps[0] == 601 and len(tail.alphas) == 8
    assert ddim_schedule(ALPHAS, 10).tail(0.01).steps == 1
    with pytest.raises(ValueError):
        ddim_schedule(ALPHAS, 10).tail(0.0)
    with pytest.raises(ValueError):
        ddim_timesteps(0)


def test_inversion_labels():
    sch = ddim_schedule(torch.linspace(0.99, 0.1, 30), 3)  # timesteps [21, 11, 1]
    assert sch.timesteps == [21, 11, 1]
    assert inversion_labels(sch, "next") == [1, 11, 21]
    assert inversion_labels(sch, "current") == [1, 1, 11]
    with pytest.raises(ValueError):
        inversion_labels(sch, "middle")


def test_step_is_its_own_inverse_for_fixed_eps():
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    y = ddim_step(x, eps, 0.9, 0.3)
    torch.testing.assert_close(ddim_step(y, eps, 0.3, 0.9), x, rtol=0, atol=1e-12)


def test_comfy_sigma_mapping_makes_ddim_euler_in_sigma():
    """x_ddim = √ᾱ·x_comfy and ᾱ = 1/(1+σ²): a DDIM step is x_b = x_a + (σ_b − σ_a)·ε in ComfyUI space."""
    sig = torch.tensor([0.03, 1.0, 14.6], dtype=torch.float64)
    a = alphas_from_sigmas(sig)
    torch.testing.assert_close(a, 1 / (1 + sig ** 2))
    assert abs(sigma_from_alpha(float(a[1])) - 1.0) < 1e-12 and sigma_from_alpha(1.0) == 0.0
    g = torch.Generator().manual_seed(1)
    xc, eps = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    a_from, a_to = float(a[2]), float(a[1])
    xd_to = ddim_step(to_ddim(xc, a_from), eps, a_from, a_to)
    torch.testing.assert_close(from_ddim(xd_to, a_to), xc + (1.0 - 14.6) * eps, rtol=0, atol=1e-12)
    # and to the clean end (ᾱ = 1): x₀ = x − σ·ε, ComfyUI's EPS calculate_denoised
    torch.testing.assert_close(ddim_step(to_ddim(xc, a_from), eps, a_from, 1.0), xc - 14.6 * eps,
                               rtol=0, atol=1e-12)


def test_sampling_point_mass_lands_on_the_data():
    g = torch.Generator().manual_seed(2)
    x_t = torch.randn(1, 4, generator=g, dtype=torch.float64)
    out = ddim_sample(point_mass_eps, x_t, ddim_schedule(ALPHAS, 7))
    torch.testing.assert_close(out, MU, rtol=0, atol=1e-10)


def test_current_label_inverts_point_mass_exactly():
    """With the exact ε of δ(μ) the DDIM path keeps ε constant: inversion with eps_at="current"
    retraces the sampling path exactly, step for step."""
    sch = ddim_schedule(ALPHAS, 8).tail(0.75)
    up, down = [], []
    x_T = ddim_invert(point_mass_eps, MU.clone(), sch, eps_at="current",
                      callback=lambda d: up.append(d["x"]))
    x_0 = ddim_sample(point_mass_eps, x_T, sch, callback=lambda d: down.append(d["x"]))
    torch.testing.assert_close(x_0, MU, rtol=0, atol=1e-10)
    for a, b in zip(up[:-1][::-1], down[:-1]):  # the same latents at every level
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    # "next" evaluates ε at another level than the latent's: not exact, but the error is small
    x_T_next = ddim_invert(point_mass_eps, MU.clone(), sch, eps_at="next")
    assert (x_T_next - x_T).abs().max() > 1e-6


@pytest.mark.parametrize("eps_at", ["next", "current"])
def test_round_trip_on_gaussian_data_converges(eps_at):
    g = torch.Generator().manual_seed(3)
    x0 = MU + 0.5 * torch.randn(16, 4, generator=g, dtype=torch.float64)
    errs = []
    for steps in (10, 50, 250):
        sch = ddim_schedule(ALPHAS, steps)
        x_T = ddim_invert(gaussian_eps, x0, sch, eps_at=eps_at)
        errs.append(float((ddim_sample(gaussian_eps, x_T, sch) - x0).abs().max()))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.02 * float(x0.abs().max())


def test_deterministic_and_calls_once_per_step():
    calls = []

    def eps(x, t):
        calls.append(t)
        return gaussian_eps(x, t)

    sch = ddim_schedule(ALPHAS, 6)
    x0 = MU.repeat(2, 1)
    a = ddim_invert(eps, x0, sch)
    b = ddim_invert(eps, x0, sch)
    assert torch.equal(a, b)
    assert calls == inversion_labels(sch) * 2
    calls.clear()
    ddim_sample(eps, a, sch)
    assert calls == sch.timesteps


def test_schedule_is_a_namedtuple_of_lists():
    sch = DDIMSchedule([5, 1], [0.5, 0.9, 1.0])
    assert sch.steps == 2 and sch.tail(0.5) == DDIMSchedule([1], [0.9, 1.0])


def test_sample_callback_may_replace_the_latent():
    """A tensor returned by the callback replaces x (AttentionDrag's background lock)."""
    from fluxdrag.core.ddim import ddim_sample, ddim_schedule

    sched = ddim_schedule(torch.linspace(0.99, 0.01, 1000), 4)
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    seen = []

    def cb(d):
        seen.append(d["x"].clone())
        return torch.zeros_like(d["x"]) if d["i"] == 1 else None

    def eps(z, t):
        return 0.1 * z

    ddim_sample(eps, x, sched, callback=cb)
    # the step after the replacement starts from zeros, so eps = 0 and the latent stays 0
    assert torch.equal(seen[2], torch.zeros_like(x)) and not torch.equal(seen[1], torch.zeros_like(x))
