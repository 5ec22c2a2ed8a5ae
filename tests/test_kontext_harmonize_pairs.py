"""The toy Kontext's ``harmonize`` training pairs (bench/toybench/train_kontext.py): the reference
differs from the consistent target only on one object's pixels, by its shading, and ``misshade``
is the shading a copy moved by a rigid motion carries (checked against re-rendering the moved
object)."""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from bench.toybench import train_kontext as tk
from fluxdrag.toyworld import scenes as ts
from fluxdrag.toyworld import scenes_v3 as v3


def test_harmonize_pair_changes_only_one_objects_light():
    g = torch.Generator().manual_seed(5)
    for _ in range(4):
        ref, tgt, hidden, fam = tk.make_pair(g, "harmonize", 32, ("lit", "occlusion"))
        assert ts.FAMILIES[fam] in ("lit", "occlusion") and not hidden.any()
        diff = (ref - tgt).abs().amax(0) > 1e-6
        assert diff.sum() >= 4                                   # the object's light is wrong
        ratio = ref[:, diff] / tgt[:, diff]                      # a change of intensity, same colour
        assert torch.allclose(ratio, ratio[:1].expand_as(ratio), rtol=1e-3, atol=1e-3)


def test_moved_light_gives_the_shading_a_moved_copy_carries():
    """An object shifted by t (whole latent pixels) and shaded there, read back at its own place,
    equals its shading under ``moved_light`` (exact, pixel for pixel); a turn of 0 and 2π agree."""
    sc = ts.make_scene(3, "lit")
    obj, light = sc.objects[0], sc.light
    dx, dy = 2 * ts.PIXELS_PER_LATENT, -1 * ts.PIXELS_PER_LATENT
    moved = replace(obj, cx=obj.cx + dx, cy=obj.cy + dy)
    there = v3.intensity(moved, light, 32, 32).roll((-dy // ts.PIXELS_PER_LATENT, -dx // ts.PIXELS_PER_LATENT), (0, 1))
    _, m = v3._value(obj, 32, 32)
    want = v3.intensity(obj, tk.moved_light(light, obj, (dx, dy), 0.0), 32, 32)
    assert torch.allclose(there[m], want[m], atol=1e-5)
    assert not torch.allclose(there[m], v3.intensity(obj, light, 32, 32)[m], atol=1e-2)   # the light differs
    turned = v3.intensity(obj, tk.moved_light(light, obj, (dx, dy), 2 * math.pi), 32, 32)
    assert torch.allclose(turned, want, atol=1e-4)
