"""Tier 2: a latent that turns NaN/Inf inside a method is an error naming the step (one shared
check, ``fluxdrag/pipelines/common.check_finite``, called after each stage), never a black image."""
from __future__ import annotations

import pytest
import torch
from comfy_fixtures import comfy, latent, tiny_cond, tiny_flux  # noqa: F401

pytestmark = pytest.mark.tier2

DOC = {"version": 1, "image_size": [256, 256],
       "drags": [{"handle": [100, 100], "target": [160, 100]}, {"handle": [40, 200], "mode": "anchor"}]}


def test_check_finite_names_the_step(comfy):  # noqa: F811
    from fluxdrag.pipelines.common import FluxDragNumericError, check_finite

    x = torch.zeros(1, 16, 4, 4)
    assert check_finite(x, "Node", "step") is x
    x[0, 0, 1, 1] = float("nan")
    x[0, 0, 2, 2] = float("inf")
    with pytest.raises(FluxDragNumericError, match=r"Node: the attention move produced 2 NaN/Inf value"):
        check_finite(x, "Node", "attention move")


def test_a_nan_after_the_move_is_reported_with_the_step(tiny_flux, tiny_cond, monkeypatch):  # noqa: F811
    import fluxdrag.pipelines.attention_drag as ad
    from fluxdrag.pipelines.common import FluxDragNumericError

    real = ad._move

    def broken(z, *a, **k):
        out, plans, moves = real(z, *a, **k)
        return out * float("nan"), plans, moves

    monkeypatch.setattr(ad, "_move", broken)
    s = ad.AttentionDragSettings(steps=2)
    with pytest.raises(FluxDragNumericError, match="attention move"):
        ad.run_attention_drag(tiny_flux, latent(0), DOC, tiny_cond, settings=s)


def test_a_nan_in_the_sampler_is_reported_with_the_step(tiny_flux, tiny_cond):  # noqa: F811
    from fluxdrag.pipelines.common import FluxDragNumericError
    from fluxdrag.pipelines.inversion import run_inversion, run_sampling

    rec = run_inversion(tiny_flux, latent(0), tiny_cond, steps=2, solver="uni_inv")
    bad = rec.z_T.clone()
    bad[..., 0, 0] = float("inf")
    with pytest.raises(FluxDragNumericError, match="Sample From Inversion: the euler sampling produced"):
        run_sampling(tiny_flux, rec, tiny_cond, start=bad)
