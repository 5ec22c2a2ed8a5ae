"""A thin shape scaled down keeps its area (``core.geometry.kept_area_level``): a one-pixel ring shrunk
by 0.75 reads below ½ almost everywhere under the backward maps' bilinear membership test, and vanished
from both LazyDrag's fine map and ContextDrag's motion map (toy scene 141027: found 0, MD 7 tokens)."""
import warnings

import pytest
import torch

from fluxdrag.core import geometry
from fluxdrag.core.geometry import kept_area_level
from fluxdrag.toyworld.model import scene_latent_to_comfy
from fluxdrag.toyworld.scenes import make_scene


def test_the_level_stays_at_a_half_while_the_shape_keeps_its_area():
    soft = torch.tensor([0.9, 0.8, 0.6, 0.55, 0.3, 0.2])
    assert kept_area_level(soft, want=6.0) == 0.5                       # 4 kept of 6: at least half
    assert kept_area_level(torch.zeros(0), want=6.0) == 0.5


def test_the_level_drops_to_the_count_nearest_the_scaled_area():
    soft = torch.tensor([0.49, 0.49, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.2, 0.05])
    assert kept_area_level(soft, want=8.0) == pytest.approx(0.3)       # 8 pixels, not 9 at 0.2
    assert kept_area_level(soft, want=2.0) == pytest.approx(0.49)      # a tie group of two
    assert kept_area_level(soft, want=20.0) == pytest.approx(0.2)      # never below the floor (0.05)
    assert kept_area_level(soft, want=8.0, kept=5) == 0.5              # the map's own rule kept enough


def test_a_shape_moved_half_out_of_the_frame_keeps_only_what_lands():
    """The area wanted is what lands in the frame: a square moved mostly out of the frame is not grown
    at its edge (found in review: 81 pixels instead of 72)."""
    from fluxdrag.core.affine import translation_affine, warp_mask

    m = torch.zeros(64, 64, dtype=torch.bool)
    m[10:30, 10:30] = True
    A = translation_affine(35.4, 35.6)
    assert torch.equal(warp_mask(m, A), warp_mask(m, A, threshold=0.5 + 1e-12))


def test_lazydrags_fine_map_keeps_a_shrunk_ring(monkeypatch):
    from fluxdrag.pipelines.lazydrag import LazyDragSettings, build_plan

    sc = make_scene(141027, "large", "scale")
    gt = sc.masks_after[sc.moved].any(0)

    def fine():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build_plan(sc.drags, scene_latent_to_comfy(sc.latent)["samples"],
                              settings=LazyDragSettings()).cmap.fine

    got = fine()
    assert torch.equal(got.destination, gt)                             # the truth's eight ring pixels
    ring = sc.masks[sc.moved].any(0).reshape(-1)
    assert bool(ring[got.source[gt.reshape(-1)]].all())                 # each from a ring pixel
    monkeypatch.setattr(geometry, "AREA_KEEP", 0.0)
    assert not bool(fine().destination.any())                           # the plain ½: nothing


def test_contextdrags_motion_map_keeps_a_shrunk_ring(monkeypatch):
    from fluxdrag.core.reverse_mapping import injection_pairs
    from fluxdrag.core.reverse_tokens import moved_patch_pixels
    from fluxdrag.pipelines.contextdrag import ContextDragSettings, build_map, patched_map

    sc = make_scene(141027, "large", "scale")
    ring, gt = sc.masks[sc.moved].any(0), sc.masks_after[sc.moved].any(0)
    st = ContextDragSettings()

    def shown() -> tuple[int, int]:
        """(ring pixels shown at their destinations, of them on the truth's ring)"""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rm = build_map(sc.drags, sc.latent[None], settings=st)
            m = patched_map(rm, st)
        tok, rows, cols = moved_patch_pixels(m, subtoken=True, composite=True, warp=st.warp)
        d, s = injection_pairs(m)
        dest = {int(b): int(a) for a, b in zip(d, s)}
        n = on = 0
        for t, r, c in zip(tok.tolist(), rows, cols):
            q = dest.get(t)
            for i in range(2):
                for j in range(2):
                    if q is not None and int(r[i, j]) < 32 and bool(ring[int(r[i, j]), int(c[i, j])]):
                        n += 1
                        on += bool(gt[2 * (q // 16) + i, 2 * (q % 16) + j])
        return n, on

    assert shown() == (8, 8)
    monkeypatch.setattr(geometry, "AREA_KEEP", 0.0)
    assert shown() == (0, 0)


def test_a_shrunk_ring_spills_none_of_its_source_pixels_around_its_destination(monkeypatch):
    """A part with an exact motion spills nothing (``reverse_tokens._spill``): the source pixels of a
    ring shrunk by 0.67 that no destination pixel reads are the scale's, and the spill pasted eight of them
    at the corners around its destination (toy scene 194013: IoU 0.60, BG 0.072, scale error 0.42)."""
    from fluxdrag.core import reverse_tokens
    from fluxdrag.core.reverse_mapping import injection_pairs
    from fluxdrag.pipelines.contextdrag import ContextDragSettings, build_map, patched_map

    sc = make_scene(194013, "large", "scale")
    ring, gt = sc.masks[sc.moved].any(0), sc.masks_after[sc.moved].any(0)
    st = ContextDragSettings()

    def shown() -> tuple[int, int]:
        """(ring pixels shown on the truth's ring, shown off it); a token no pair moves shows in place"""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = patched_map(build_map(sc.drags, sc.latent[None], settings=st), st)
        tok, rows, cols = reverse_tokens.moved_patch_pixels(m, subtoken=True, composite=True, warp=st.warp,
                                                            fill_vacated=st.fill_in_place, spill_onto=st.fill_in_place)
        d, s = injection_pairs(m)
        dest = {int(b): int(a) for a, b in zip(d, s)}
        on = off = 0
        for t, r, c in zip(tok.tolist(), rows, cols):
            q = dest.get(t, t)
            for i in range(2):
                for j in range(2):
                    if int(r[i, j]) < 32 and bool(ring[int(r[i, j]), int(c[i, j])]):
                        hit = bool(gt[2 * (q // 16) + i, 2 * (q % 16) + j])
                        on, off = on + hit, off + (not hit)
        return on, off

    assert shown() == (int(gt.sum()), 0)
    monkeypatch.setattr(reverse_tokens, "_motion_pixels_of", lambda rmap, patch: torch.zeros(
        rmap.grid_hw[0] * patch, rmap.grid_hw[1] * patch, dtype=torch.bool))
    assert shown()[1] == 8                                              # before: eight, at its corners
