"""Tier 1: the toy model's training tasks and the generation check (dev tooling in bench/toybench):
the consistency task's starts are the naive copy blended toward the truth, its velocity target
lands on the truth in one step, grown blocks start as the identity (zero ``linear2``, the rest
copied), and the pull measure reads 1 / 0 / a blind model's symmetry correctly."""
from __future__ import annotations

import torch

from bench.toybench import generation as G
from bench.toybench.methods import copy_paste, cut_paste
from bench.toybench.sampling import fix_start, sample_scene_latents
from bench.toybench.train import consistency_target, fix_weights, grow_single_blocks
from fluxdrag.toyworld.scenes import FAMILIES, make_scene


def test_fix_starts_differ_only_for_v3_edits():
    lat, fam, start = sample_scene_latents(12, seed=5, families=("single", "lit", "texture"), fix_frac=1.0)
    fixed = (start != lat).flatten(1).any(1)
    assert fixed.any(), "with fix_frac 1 some v3 edits start from a copy"
    for i in torch.nonzero(fixed).flatten().tolist():
        assert FAMILIES[int(fam[i])] in ("lit", "texture")
    assert not fixed[fam == FAMILIES.index("single")].any()
    lat2, fam2 = sample_scene_latents(12, seed=5, families=("single", "lit", "texture"))
    assert torch.equal(fam, fam2) and torch.equal(lat, lat2), "fix_frac draws the same latents"


def test_fix_start_is_the_copy_blended_toward_the_truth():
    sc = make_scene(101, "lit", "move")
    gt = sc.edited
    for k in range(8):
        s = fix_start(sc, torch.Generator().manual_seed(k))
        fits = []
        for naive in (cut_paste(sc), copy_paste(sc)):   # start = naive + share · (truth − naive)
            d = gt - naive
            share = float(((s - naive) * d).sum() / d.pow(2).sum())
            fits.append(float((s - naive - share * d).abs().max()) < 1e-4 and -1e-6 <= share < 0.5)
        assert any(fits), k


def test_consistency_target_lands_on_the_truth():
    """train.py's target ε − x0 + (1 − t)/t · (start − x0): one Euler step to σ 0 gives x0."""
    g = torch.Generator().manual_seed(0)
    x0, start, eps = (torch.randn(2, 16, 8, 8, generator=g) for _ in range(3))
    t = torch.tensor([0.35, 0.8])
    xt = (1 - t)[:, None, None, None] * start + t[:, None, None, None] * eps
    target = consistency_target(x0, start, eps, t)
    assert torch.allclose(xt - t[:, None, None, None] * target, x0, atol=1e-5)
    assert torch.allclose(consistency_target(x0, x0, eps, t), eps - x0)   # a plain sample


def test_fix_weights_mark_where_the_copy_is_wrong():
    """--fix-weight: the weight lies on the pixels where a consistency start differs from its truth
    (grown by one pixel), 1 elsewhere and on plain samples; weight 1 is the plain loss."""
    x0 = torch.zeros(2, 16, 8, 8)
    start = x0.clone()
    start[0, 3, 4, 4] = 0.5                      # sample 0: one wrong pixel; sample 1: plain
    w = fix_weights(x0, start, 6.0)
    assert w.shape == (2, 1, 8, 8)
    assert w[0, 0, 3:6, 3:6].eq(6.0).all() and int(w[0].gt(1).sum()) == 9
    assert w[1].eq(1.0).all()
    assert fix_weights(x0, start, 1.0).eq(1.0).all()


def test_grown_state_dict_adds_identity_blocks():
    cfg = {"depth_single_blocks": 2}
    sd = {"single_blocks.1.linear1.weight": torch.ones(3, 2), "single_blocks.1.linear2.weight": torch.ones(2, 3),
          "single_blocks.1.linear2.bias": torch.ones(2), "double_blocks.0.x": torch.ones(1)}
    out, cfg2 = grow_single_blocks(sd, cfg, 2)
    assert cfg2["depth_single_blocks"] == 4 and cfg["depth_single_blocks"] == 2
    for j in (2, 3):
        assert torch.equal(out[f"single_blocks.{j}.linear1.weight"], sd["single_blocks.1.linear1.weight"])
        assert not out[f"single_blocks.{j}.linear2.weight"].any() and not out[f"single_blocks.{j}.linear2.bias"].any()


def test_pull_reads_landing_staying_and_blindness(monkeypatch):
    import fluxdrag.toyworld.model as tm

    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(16, 8, 8, generator=g), torch.randn(16, 8, 8, generator=g)
    eps = torch.randn(1, 16, 8, 8, generator=g)
    full = {"all": torch.ones(8, 8, dtype=torch.bool)}

    def ratio(p):
        num, den = p["all"]
        return num / den

    def oracle(target):   # a velocity whose one-step estimate is ``target``
        return lambda dm, xs, s, c: (xs - target[None]) / s

    monkeypatch.setattr(tm, "velocity", oracle(b))
    assert abs(ratio(G.pulls(None, None, a, b, 0.6, eps, full)) - 1) < 1e-4
    monkeypatch.setattr(tm, "velocity", oracle(a))
    assert abs(ratio(G.pulls(None, None, a, b, 0.6, eps, full))) < 1e-4
    # blind: shrinks whatever it sees toward 0 by the same share → pull(a→b) = pull(b→a) when
    # |a| = |b| (b a shuffle of a); otherwise the norms differ and so do the pulls: generation.py
    # reports the gain over a reference model for that reason
    b = a.flatten()[torch.randperm(a.numel(), generator=g)].reshape(a.shape)
    monkeypatch.setattr(tm, "velocity", lambda dm, xs, s, c: (xs - 0.7 * (xs - s * eps) / (1 - s)) / s)
    fwd = ratio(G.pulls(None, None, a, b, 0.5, eps, full))
    back = ratio(G.pulls(None, None, b, a, 0.5, eps, full))
    assert abs(fwd - back) < 1e-4 and 0 < fwd < 1
