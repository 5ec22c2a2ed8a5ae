"""Tier-2 fixtures: real ComfyUI imported in-process, tiny FLUX models built with its classes."""
from __future__ import annotations

import pytest
import torch

from tools import comfy_env


@pytest.fixture(scope="session")
def comfy():
    path = comfy_env.import_comfy()
    import comfy.model_management  # noqa: F401

    return path


@pytest.fixture(scope="session")
def tiny_flux(comfy):
    return comfy_env.build_flux(seed=0)


@pytest.fixture(scope="session")
def tiny_cond(comfy):
    return comfy_env.tiny_conditioning(seed=0)


@pytest.fixture(scope="module")
def toy(comfy):
    """The shipped toy FLUX model and its conditioning, loaded once per test module (1 thread)."""
    torch.set_num_threads(1)
    from fluxdrag.toyworld.model import load_toy_model

    return load_toy_model()


def latent(seed=0, h=32, w=32, b=1):
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(b, 16, h, w, generator=g) * 0.5}


def sample_plain(model, cond, steps=4, seed=1, h=32, w=32):
    import comfy.sample

    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 16, h, w, generator=g)
    lat = torch.zeros(1, 16, h, w)
    return comfy.sample.sample(model, noise, steps, 1.0, "euler", "simple", cond, cond, lat,
                               seed=seed, disable_pbar=True)
