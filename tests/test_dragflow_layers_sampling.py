"""Tier 1: DragFlow K/V layer sets (fluxdrag/core/dragflow_layers.py) and lockstep sampling with the hard
constraint (fluxdrag/core/dragflow.py)."""
from __future__ import annotations

import pytest
import torch

from fluxdrag.core import solvers
from fluxdrag.core.dragflow import paired_fireflow
from fluxdrag.core.dragflow_layers import KV_PRESETS, kv_layers, map_block_indices, parse_layer_list


def test_presets_on_flux1_are_the_notes_lists():
    sel = kv_layers("non-ridge", 19, 38)
    assert sel.double == (0, 7, 8, 9, 10, 18) and sel.single == (6, 9, 18, 23, 26, 31, 37)
    assert sel.notes == () and sel.count == 13
    # the same sets in FreeFlux's global indices (g = 19 + single index)
    glob = sorted(sel.double + tuple(19 + i for i in sel.single))
    assert glob == [0, 7, 8, 9, 10, 18, 25, 28, 37, 42, 45, 50, 56]
    pos = kv_layers("position", 19, 38)
    assert sorted(pos.double + tuple(19 + i for i in pos.single)) == [1, 2, 4, 26, 30, 54, 55]
    assert kv_layers("none", 19, 38).count == 0
    assert set(KV_PRESETS) == {"non-ridge", "position", "none"}


def test_proportional_mapping():
    assert map_block_indices([0, 18], 19, 19) == (0, 18)
    assert map_block_indices([0, 9, 18], 19, 10, keep_fraction=False) == (0, 5, 9)  # 9·9/18 = 4.5 → 5 (half up)
    assert map_block_indices([0, 9, 18], 19, 10) == (0, 5)  # share 3/19 of 10 → 2 blocks; ties: earlier
    # 0,7,8 → 0 and 9,10,18 → 1 (3 hits each); the share 6/19 of 2 blocks rounds to 1 block: the earlier
    assert map_block_indices([0, 7, 8, 9, 10, 18], 19, 2) == (0,)
    assert map_block_indices([0, 7, 8, 9, 10, 18], 19, 2, keep_fraction=False) == (0, 1)
    assert map_block_indices([37], 38, 8) == (7,) and map_block_indices([0], 38, 1) == (0,)
    # a larger model: no thinning (every mapped index kept)
    assert map_block_indices([0, 9, 18], 19, 38) == (0, 19, 37)
    sel = kv_layers("non-ridge", 2, 2)
    # single on 2 blocks: 0 ← 6, 9, 18; 1 ← the other four
    assert sel.double == (0,) and sel.single == (1,) and "proportionally" in sel.notes[0]
    # single 6,9,18,23,26,31,37 on 4 blocks → hits 0:1, 1:2, 2:2, 3:2; share 7/38·4 → 1 block: 1
    toy = kv_layers("non-ridge", 2, 4)
    assert toy.double == (0,) and toy.single == (1,)


def test_custom_lists_are_literal_and_drop_out_of_range():
    sel = parse_layer_list("double: 0, 7; single: 6, 37, 40", 19, 38)
    assert sel.double == (0, 7) and sel.single == (6, 37)
    assert sel.notes == ("single block 40 dropped: the model has 38 single blocks",)
    glob = kv_layers("custom", 19, 38, "0, 18, 19, 56, 57")
    assert glob.double == (0, 18) and glob.single == (0, 37)
    assert glob.notes == ("global block 57 dropped: the model has 57 blocks",)
    assert kv_layers("custom", 2, 2, "  ").count == 0
    with pytest.raises(ValueError, match="not an integer"):
        parse_layer_list("double: a", 19, 38)
    with pytest.raises(ValueError, match="unknown label"):
        parse_layer_list("triple: 1; double: 2", 19, 38)
    with pytest.raises(ValueError, match="unknown K/V preset"):
        kv_layers("ridge", 19, 38)


def _velocities():
    a = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)

    def v_edit(z, s):
        return 0.5 * z + a * s

    def v_orig(z, s):
        return -0.3 * z + (1 - s) * a.flip(-1)
    return v_edit, v_orig


def test_paired_fireflow_background_is_the_original_branch_bitwise():
    v_edit, v_orig = _velocities()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 4, 4, generator=g)
    zo = torch.randn(2, 3, 4, 4, generator=g)
    M = torch.zeros(4, 4, dtype=torch.bool)
    M[1:3, 0:2] = True
    sig = [1.0, 0.7, 0.4, 0.0]
    seen = []
    ze, zo_end = paired_fireflow(v_edit, v_orig, z, zo, sig, M, callback=seen.append)
    assert len(seen) == 3
    for d in seen:
        assert torch.equal(d["z"][..., ~M], d["z_orig"][..., ~M])
    # the original branch is plain FireFlow, untouched by the edited one
    assert torch.equal(zo_end, solvers.fireflow(v_orig, zo, sig))
    assert torch.equal(ze[..., ~M], zo_end[..., ~M])
    # an all-editable mask leaves the edited branch plain FireFlow as well
    ze_all, _ = paired_fireflow(v_edit, v_orig, z, zo, sig, torch.ones(4, 4, dtype=torch.bool))
    assert torch.equal(ze_all, solvers.fireflow(v_edit, z, sig))


def test_paired_fireflow_reuses_given_initial_velocities():
    v_edit, v_orig = _velocities()
    calls = []

    def counting(fn, name):
        def f(z, s):
            calls.append((name, s))
            return fn(z, s)
        return f
    z = torch.ones(2, 3, 4, 4)
    M = torch.ones(4, 4, dtype=torch.bool)
    v0 = v_orig(z, 1.0)
    paired_fireflow(counting(v_edit, "e"), counting(v_orig, "o"), z, z, [1.0, 0.5, 0.0], M,
                    v_orig_init=v0)
    # N + 1 calls for the edited branch, N for the original one (its first velocity was given)
    assert [c for c in calls if c[0] == "e"] == [("e", 1.0), ("e", 0.75), ("e", 0.25)]
    assert [c for c in calls if c[0] == "o"] == [("o", 0.75), ("o", 0.25)]
    with pytest.raises(ValueError, match="differ in shape"):
        paired_fireflow(v_edit, v_orig, z, z[:1], [1.0, 0.0], M)
