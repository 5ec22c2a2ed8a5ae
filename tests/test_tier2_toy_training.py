"""Tier 2: the memorisation check of the generation diagnosis (bench/toybench/generation.py) on the
runtime toy v3 model: a few fine-tuning steps on two fixed lit scenes raise ``knows`` on those
scenes (the consistency task is learnable by this architecture), and the check leaves the weights it
was not given alone."""
from __future__ import annotations

import pytest

from tests.comfy_fixtures import comfy  # noqa: F401


@pytest.mark.usefixtures("comfy")
def test_memorisation_check_learns_the_seen_scenes():
    import torch

    from bench.toybench.generation import memorisation_check
    from fluxdrag.toyworld.model import HERE, load_toy_model

    torch.manual_seed(0)
    path = HERE / "toyflux_v3.safetensors"
    model, cond = load_toy_model(path)
    other, _ = load_toy_model(path)
    before = {k: v.clone() for k, v in other.model.diffusion_model.state_dict().items()}
    m = memorisation_check(model, cond, "lit", n=2, steps=12)
    assert set(m) == {"seen_before", "seen_after", "unseen_before", "unseen_after"}
    assert all(torch.isfinite(torch.tensor(v)) for v in m.values())
    assert m["seen_after"] > m["seen_before"] + 0.05, m
    assert all(torch.equal(v, before[k]) for k, v in other.model.diffusion_model.state_dict().items())


@pytest.mark.usefixtures("comfy")
def test_training_attention_masks_boolean_keys_and_is_restored():
    """trainable_flux: PyTorch attention on every device (a boolean key mask hides those keys, as on
    a GPU; CPU sub-quadratic attention would add it as a bias) with gradients, restored afterwards."""
    import comfy.ldm.flux.math as fm
    import torch

    from bench.toybench.train import trainable_flux

    before = fm.optimized_attention
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 16, generator=g, requires_grad=True) for _ in range(3))
    mask = torch.tensor([True, True, True, True, False, False])[None, None, None]
    with trainable_flux():
        masked = fm.attention(q, k, v, pe=None, mask=mask)
        kept = fm.attention(q, k[:, :, :4], v[:, :, :4], pe=None)
        masked.sum().backward()
    assert torch.allclose(masked, kept, atol=1e-5)
    assert q.grad is not None and torch.isfinite(q.grad).all()
    assert fm.optimized_attention is before


@pytest.mark.usefixtures("comfy")
def test_kontext_key_mask_hides_on_every_attention():
    """train_kontext.call: hidden reference keys are hidden alike under ComfyUI's default attention
    on this machine and under the training's SDPA (an additive −inf mask, not a boolean one), and
    hiding every reference token differs from showing them."""
    import torch

    from bench.toybench import train_kontext as tk
    from bench.toybench.train import trainable_flux
    from fluxdrag.toyworld.model import HERE, load_toy_model, read_meta

    path = HERE / "toykontext.safetensors"
    dm = load_toy_model(path)[0].model.diffusion_model
    cond = tk._conditioning(read_meta(path.with_suffix(".json")))
    g = torch.Generator().manual_seed(0)
    x, ref = torch.randn(1, 16, 16, 16, generator=g), torch.randn(1, 16, 16, 16, generator=g)
    hidden = torch.zeros(1, 64, dtype=torch.bool)
    hidden[0, :20] = True
    args = (torch.tensor([0.5]), cond, cond["pooled"], torch.tensor([3.5]), ref)
    with torch.no_grad():
        plain = tk.call(dm, x, *args, hidden)
        with trainable_flux():
            sdpa = tk.call(dm, x, *args, hidden)
        shown = tk.call(dm, x, *args)
    assert torch.allclose(plain, sdpa, atol=1e-4)
    assert (plain - shown).abs().max() > 1e-3
