"""Deterministic DDIM sampling and inversion against an ε callable and an ᾱ table (pure torch).

DDIM (Song et al., ICLR 2021, eq. 12 with η = 0), the sampler AttentionDrag (docs/attentiondrag.md) and the
SD1.5 drag methods it builds on (DragDiffusion, FastDrag) invert and denoise with. For a step
from noise level ᾱ_a to ᾱ_b with the prediction ε = ε_θ(x_a, t):

    x̂₀ = (x_a − √(1 − ᾱ_a) · ε) / √ᾱ_a,        x_b = √ᾱ_b · x̂₀ + √(1 − ᾱ_b) · ε

(:func:`ddim_step`); sampling runs it down the schedule, inversion up it.

Spaces. Here ``x`` is DDIM's variance-preserving latent ``x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε``.
ComfyUI keeps the variance-exploding form ``x = x₀ + σ·ε`` with ``σ = √((1 − ᾱ)/ᾱ)``, so

    ᾱ = 1 / (1 + σ²),    x_ddim = √ᾱ · x_comfy = x_comfy / √(1 + σ²)

(:func:`alphas_from_sigmas`, :func:`to_ddim`, :func:`from_ddim`); ComfyUI's EPS ``calculate_input``
divides by √(σ² + 1), i.e. the UNet sees exactly ``x_ddim``. In ComfyUI's space the DDIM step is
Euler in σ: ``x_b = x_a + (σ_b − σ_a)·ε``.

Schedule (:func:`ddim_schedule`): "leading" spacing with an offset, t_i = offset + i·⌊T/N⌋ (SD1.5's
``steps_offset = 1``; ComfyUI's ``ddim_uniform`` uses the same timesteps); the clean end has
``final_alpha`` = 1 [guess: ComfyUI's final σ = 0; diffusers' SD1.5 config uses ᾱ_0 instead].

Inversion label [guess, parameter ``eps_at``]: "next" (default; diffusers' DDIMInverseScheduler,
DragDiffusion, Null-text inversion) evaluates ε at the *target* timestep's label on the current
latent, ε_θ(x_a, t_b); "current" evaluates ε_θ(x_a, t_a), which for the first step from the clean
latent (no label) falls back to t_b. With an exact ε of a point-mass data distribution "current"
inverts exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, Optional

import torch

Eps = Callable[[torch.Tensor, int], torch.Tensor]
Callback = Optional[Callable[[dict], Optional[torch.Tensor]]]

EPS_AT = ("next", "current")


# ----------------------------------------------------------------------------- schedule


class DDIMSchedule(NamedTuple):
    """Timesteps in sampling order (decreasing) and ᾱ at each, plus ᾱ of the clean end.

    ``alphas[i]`` belongs to ``timesteps[i]``; ``alphas[-1]`` is the clean end, so
    ``len(alphas) == len(timesteps) + 1``.
    """

    timesteps: list[int]
    alphas: list[float]

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def tail(self, strength: float) -> DDIMSchedule:
        """The last ``max(1, round(strength·N))`` steps (a partial inversion / img2img of
        ``strength`` ∈ (0, 1], like KSampler's ``denoise`` and ``solvers.strength_slice``)."""
        if not (0.0 < strength <= 1.0):
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        n = self.steps
        keep = max(1, int(round(strength * n)))
        return DDIMSchedule(self.timesteps[n - keep:], self.alphas[n - keep:])


def alphas_from_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """ᾱ = 1 / (1 + σ²) for ComfyUI's discrete σ table (index = timestep)."""
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    return 1.0 / (1.0 + s * s)


def sigma_from_alpha(alpha: float) -> float:
    """σ = √((1 − ᾱ)/ᾱ); 0 for ᾱ = 1."""
    return math.sqrt(max(0.0, (1.0 - alpha) / alpha))


def to_ddim(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """ComfyUI latent ``x₀ + σ·ε`` → DDIM latent ``√ᾱ·x₀ + √(1 − ᾱ)·ε``."""
    return x * math.sqrt(alpha)


def from_ddim(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """DDIM latent → ComfyUI latent (inverse of :func:`to_ddim`)."""
    return x / math.sqrt(alpha)


def ddim_timesteps(steps: int, num_train: int = 1000, offset: int = 1) -> list[int]:
    """Leading-spaced timesteps in sampling order: ``offset + i·⌊T/N⌋`` for i = N−1 … 0."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if steps > num_train:
        raise ValueError(f"steps ({steps}) cannot exceed the {num_train} training timesteps")
    stride = num_train // steps
    ts = [offset + i * stride for i in range(steps)]
    if ts[-1] >= num_train or ts[0] < 0:
        raise ValueError(f"offset {offset} puts timesteps outside [0, {num_train})")
    return ts[::-1]


def ddim_schedule(alphas_cumprod: torch.Tensor | Sequence[float], steps: int, offset: int = 1,
                  final_alpha: float = 1.0) -> DDIMSchedule:
    """The DDIM schedule of ``steps`` steps over a table of ᾱ_t (t = 0 … T−1)."""
    table = torch.as_tensor(alphas_cumprod, dtype=torch.float64).reshape(-1)
    ts = ddim_timesteps(steps, int(table.numel()), offset)
    return DDIMSchedule(ts, [float(table[t]) for t in ts] + [float(final_alpha)])


# ----------------------------------------------------------------------------- steps


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha_from: float, alpha_to: float) -> torch.Tensor:
    """One deterministic DDIM step from level ᾱ_from to ᾱ_to (either direction)."""
    x0 = (x - math.sqrt(1.0 - alpha_from) * eps) / math.sqrt(alpha_from)
    return math.sqrt(alpha_to) * x0 + math.sqrt(1.0 - alpha_to) * eps


def ddim_sample(eps_fn: Eps, x: torch.Tensor, schedule: DDIMSchedule,
                callback: Callback = None) -> torch.Tensor:
    """Denoise ``x`` (DDIM latent at ``schedule.timesteps[0]``) to the clean end.

    Calls ``eps_fn(x, t)`` once per step; ``callback({"i", "x", "t", "alpha"})`` after each
    step (``alpha``: the level reached); a tensor it returns replaces ``x`` (a latent-level
    control, e.g. AttentionDrag's background lock).
    """
    ts, al = schedule
    for i, t in enumerate(ts):
        eps = eps_fn(x, t)
        x = ddim_step(x, eps, al[i], al[i + 1])
        if callback is not None:
            r = callback({"i": i, "x": x, "t": t, "alpha": al[i + 1]})
            if r is not None:
                x = r
    return x


def ddim_invert(eps_fn: Eps, x: torch.Tensor, schedule: DDIMSchedule, eps_at: str = "next",
                callback: Callback = None) -> torch.Tensor:
    """Invert the clean ``x`` up the schedule to the level of ``schedule.timesteps[0]``.

    Step i (i = 0 … N−1) goes from ``alphas[N−i]`` to ``alphas[N−1−i]``; ε is evaluated at
    the label ``eps_at`` says (module docstring). Calls ``eps_fn(x, t)`` once per step;
    ``callback({"i", "x", "t", "alpha"})`` after each (``t``: the label used).
    """
    ts, al = schedule
    labels = inversion_labels(schedule, eps_at)
    n = len(ts)
    for i, t in enumerate(labels):
        j = n - 1 - i  # target index in sampling order
        eps = eps_fn(x, t)
        x = ddim_step(x, eps, al[j + 1], al[j])
        if callback is not None:
            callback({"i": i, "x": x, "t": t, "alpha": al[j]})
    return x


def inversion_labels(schedule: DDIMSchedule, eps_at: str = "next") -> list[int]:
    """The timestep labels :func:`ddim_invert` evaluates ε at, in call order."""
    if eps_at not in EPS_AT:
        raise ValueError(f"eps_at must be one of {EPS_AT}, got {eps_at!r}")
    ts = schedule.timesteps
    n = len(ts)
    # step i reaches index j = n−1−i; "current" labels it with the level it starts from
    return [ts[j] if eps_at == "next" or j + 1 >= n else ts[j + 1] for j in range(n - 1, -1, -1)]


__all__ = [
    "DDIMSchedule",
    "EPS_AT",
    "alphas_from_sigmas",
    "ddim_invert",
    "ddim_sample",
    "ddim_schedule",
    "ddim_step",
    "ddim_timesteps",
    "from_ddim",
    "inversion_labels",
    "sigma_from_alpha",
    "to_ddim",
]
