"""ODE solvers for rectified-flow models, written against a velocity callable.

A solver integrates dx/dσ = v(x, σ) along a sigma schedule. The same function inverts (image →
noise, sigmas increasing) and samples (noise → image, sigmas decreasing); only the sign of
Δ = σ_next − σ_cur differs. Shapes follow k-diffusion (``comfy/k_diffusion/sampling.py``): a
solver is a small function of a velocity callable, a state and a sigma list.

- ``euler``: the baseline, one velocity evaluation per step (N calls for N steps).
- ``fireflow``: FireFlow (Deng et al., ICML 2025, arXiv 2412.07517): the midpoint
  method whose first evaluation of each step reuses the previous step's midpoint velocity —
  N + 1 calls for N steps, second order.
- ``uni_inv``: Uni-Inv of UniEdit-Flow (Jiao et al., arXiv 2504.13109): a full
  Euler predictor, then the step is re-taken with the velocity at the predicted end point;
  that end-point velocity is reused as the next step's predictor velocity (N + 1 calls).
  ``zero_init`` (UniEdit-Flow's ``--zero_init``) starts from v = 0 instead (N calls).

Callbacks receive ``{"i", "x", "sigma", "sigma_next", "v"}`` after every step.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

Velocity = Callable[[torch.Tensor, float], torch.Tensor]
Callback = Optional[Callable[[dict], Optional[torch.Tensor]]]  # may return a replacement x

SOLVERS = ("euler", "fireflow", "uni_inv")

#: The sampling solver that reconstructs what each inversion solver inverted. Uni-Inv pairs with
#: plain Euler sampling, which evaluates at the same (σ, latent) pairs.
MATCHING_SAMPLER = {"euler": "euler", "fireflow": "fireflow", "uni_inv": "euler"}


def _sigma_list(sigmas: torch.Tensor | list[float]) -> list[float]:
    s = [float(x) for x in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    if len(s) < 2:
        raise ValueError(f"a sigma schedule needs at least 2 values, got {len(s)}")
    return s


def _after(callback: Callable, d: dict, x: torch.Tensor) -> torch.Tensor:
    """Run a step callback; a tensor it returns replaces x (latent-level control after a step,
    e.g. a background lock); ``None`` keeps x."""
    r = callback(d)
    return x if r is None else r


def euler(velocity: Velocity, x: torch.Tensor, sigmas, callback: Callback = None) -> torch.Tensor:
    """Explicit Euler: x ← x + Δ·v(x, σ)."""
    s = _sigma_list(sigmas)
    for i in range(len(s) - 1):
        v = velocity(x, s[i])
        x = x + (s[i + 1] - s[i]) * v
        if callback is not None:
            x = _after(callback, {"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "v": v}, x)
    return x


def fireflow(velocity: Velocity, x: torch.Tensor, sigmas, callback: Callback = None,
             v_init: torch.Tensor | None = None) -> torch.Tensor:
    """FireFlow midpoint step with reuse of the previous midpoint velocity (arXiv 2412.07517).

    v_c = v(x, σ) on the first step (or ``v_init``), else the previous v_mid;
    x_mid = x + Δ/2·v_c; v_mid = v(x_mid, σ + Δ/2); x ← x + Δ·v_mid.
    """
    s = _sigma_list(sigmas)
    v_prev = v_init
    for i in range(len(s) - 1):
        d = s[i + 1] - s[i]
        v_c = velocity(x, s[i]) if v_prev is None else v_prev
        x_mid = x + (d / 2) * v_c
        v_mid = velocity(x_mid, s[i] + d / 2)
        x = x + d * v_mid
        v_prev = v_mid
        if callback is not None:
            x = _after(callback, {"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "v": v_mid}, x)
    return x


def uni_inv(velocity: Velocity, x: torch.Tensor, sigmas, callback: Callback = None,
            zero_init: bool = False) -> torch.Tensor:
    """Uni-Inv predictor–corrector (UniEdit-Flow, arXiv 2504.13109).

    v_c = v(x, σ) on the first step (0 with ``zero_init``), else the previous v_n;
    x_pred = x + Δ·v_c; v_n = v(x_pred, σ_next); x ← x + Δ·v_n.
    """
    s = _sigma_list(sigmas)
    v_prev = torch.zeros_like(x) if zero_init else None
    for i in range(len(s) - 1):
        d = s[i + 1] - s[i]
        v_c = velocity(x, s[i]) if v_prev is None else v_prev
        x_pred = x + d * v_c
        v_n = velocity(x_pred, s[i + 1])
        x = x + d * v_n
        v_prev = v_n
        if callback is not None:
            x = _after(callback, {"i": i, "x": x, "sigma": s[i], "sigma_next": s[i + 1], "v": v_n}, x)
    return x


def get_solver(name: str) -> Callable[..., torch.Tensor]:
    """Solver function by name (``euler``, ``fireflow``, ``uni_inv``)."""
    table = {"euler": euler, "fireflow": fireflow, "uni_inv": uni_inv}
    if name not in table:
        raise ValueError(f"unknown solver {name!r}: choose one of {', '.join(SOLVERS)}")
    return table[name]


def model_calls(name: str, steps: int, zero_init: bool = False) -> int:
    """Velocity evaluations a solver makes for ``steps`` steps, as the papers state."""
    if name == "euler":
        return steps
    if name == "fireflow":
        return steps + 1
    if name == "uni_inv":
        return steps if zero_init else steps + 1
    raise ValueError(f"unknown solver {name!r}: choose one of {', '.join(SOLVERS)}")


def strength_slice(sigmas: torch.Tensor, strength: float) -> torch.Tensor:
    """The tail of a decreasing schedule that a partial inversion of ``strength`` ∈ (0, 1] covers.

    Like KSampler's ``denoise``: of N steps, the last round(strength·N) are kept (at least 1).
    """
    if not (0.0 < strength <= 1.0):
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    n = len(sigmas) - 1
    keep = max(1, int(round(strength * n)))
    return sigmas[n - keep:]
