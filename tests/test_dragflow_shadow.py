"""DragFlow's cast shadow [ours] (``shadow_carry``): by default the painted rest of a region (its
shadow) is filled as ground and left to the sampler; ``in_place`` carries it only when the region
keeps its content where it stands (a rotation in place), turned about the shadow's own pivot
(LazyDrag's ``cast_shadow`` rule: T_s(y) = T(y − d) + d), and only on a smooth ground; ``rigid``
(the paper's region, and before) carries it with the region's own motion."""
import math

import pytest
import torch

from fluxdrag.core.affine import Region
from fluxdrag.core.dragflow_proposal import carried_proposal, shadow_motion

H = W = 40


def _scene(ground: torch.Tensor | None = None):
    """A 6×6 object (rows/cols 8-13) with its shadow to the right (cols 14-16): offset d = (3, 0)."""
    z = torch.zeros(16, H, W) if ground is None else ground.clone()
    z[:, 8:14, 8:14] = 2.0
    z[:, 8:14, 14:17] += -0.6
    painted = torch.zeros(H, W, dtype=torch.bool)
    painted[8:14, 8:17] = True
    return z, painted


def _up(m: torch.Tensor) -> torch.Tensor:
    return m.repeat_interleave(8, 0).repeat_interleave(8, 1)


def _turn(painted, deg: float = 90.0) -> Region:
    cx = cy = 88.0                                   # the object's centre (latent 11) in image pixels
    a = math.radians(deg)
    bx, by = cx + 16.0, cy
    return Region(_up(painted), "rotate", begin=(bx, by), anchor=(cx, cy),
                  target=(cx + 16.0 * math.cos(a), cy + 16.0 * math.sin(a)))


def _dark(z: torch.Tensor) -> torch.Tensor:
    return z[0] < -0.3


def test_a_turned_shadow_turns_about_its_own_pivot_and_a_rigid_one_about_the_object_s():
    z, painted = _scene()
    r = _turn(painted)
    ours = carried_proposal(z[None], [r], 0.5, "smooth", shadow="in_place")[0]
    rigid = carried_proposal(z[None], [r], 0.5, "smooth", shadow="rigid")[0]
    # ours: the shadow stays on the light's side (cols 14-16) beside the turned square
    assert _dark(ours).any() and not _dark(ours)[:, :14].any()
    # rigid: turned about the object's centre, it swings above or below the object (cols 8-13)
    assert _dark(rigid)[:, 8:14].any() and not _dark(rigid)[:, 14:].any()


def test_a_moved_object_s_shadow_is_filled_as_ground_and_rigid_carries_it():
    z, painted = _scene()
    r = Region(_up(painted), "relocate", begin=(88.0, 88.0), target=(88.0 - 48.0, 88.0 + 48.0))   # 6 cells
    ours = carried_proposal(z[None], [r], 0.5, "smooth", shadow="in_place")[0]
    none = carried_proposal(z[None], [r], 0.5, "smooth", shadow="none")[0]
    rigid = carried_proposal(z[None], [r], 0.5, "smooth", shadow="rigid")[0]
    assert torch.equal(ours, none) and not _dark(ours).any()
    assert _dark(rigid)[14:20, 8:11].all()                          # the shadow moved with the region
    assert (ours[0, 14:20, 2:8] > 1.5).all()                       # the object arrived either way


def test_on_a_texture_nothing_is_carried():
    xs = torch.arange(W, dtype=torch.float32)
    stripes = (0.8 * torch.sign(torch.sin(2 * math.pi * (xs + 0.5) / 4)))[None, None, :].expand(16, H, W)
    z, painted = _scene(stripes)
    r = _turn(painted)
    ours = carried_proposal(z[None], [r], 0.5, "shifted", shadow="in_place")
    assert torch.equal(ours, carried_proposal(z[None], [r], 0.5, "shifted", shadow="none"))
    assert not torch.equal(ours, carried_proposal(z[None], [r], 0.5, "shifted", shadow="rigid"))
    z0, _ = _scene()       # the same turn on a smooth ground carries the shadow
    assert not torch.equal(carried_proposal(z0[None], [r], 0.5, "smooth", shadow="in_place"),
                           carried_proposal(z0[None], [r], 0.5, "smooth", shadow="none"))


def test_shadow_motion_fixes_the_pivot_s_shadow_and_refuses_a_move():
    content = torch.zeros(H, W, dtype=torch.bool)
    content[8:14, 8:14] = True
    shadow = torch.zeros(H, W, dtype=torch.bool)
    shadow[8:14, 14:17] = True
    c = torch.tensor([11.0, 11.0], dtype=torch.float64)
    R = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    A = torch.cat([R, (c - R @ c)[:, None]], 1)                     # 90° about the centroid
    As = shadow_motion(A, content, shadow)
    p = c + torch.tensor([3.0, 0.0], dtype=torch.float64)           # the centroid's shadow
    assert As is not None and torch.allclose(As[:, :2] @ p + As[:, 2], p)
    T = torch.tensor([[1.0, 0.0, 6.0], [0.0, 1.0, 0.0]], dtype=torch.float64)   # a move by 6 > ½ radius
    assert shadow_motion(T, content, shadow) is None
    assert shadow_motion(A, torch.zeros_like(content), shadow) is None


@pytest.mark.parametrize("field,ours,paper", [("shadow_carry", "none", "rigid"),
                                              ("content_reference", "texture", "membrane"),
                                              ("content_piece", "largest", "all")])
def test_settings_default_ours_and_paper_one_setting_away(field, ours, paper):
    from fluxdrag.pipelines.dragflow_inputs import PAPER, DragFlowSettings

    assert getattr(DragFlowSettings(), field) == ours and getattr(PAPER, field) == paper


def test_touching_regions_each_keep_their_object_with_the_largest_piece_rule():
    z = torch.zeros(16, H, W)
    z[:, 8:14, 8:14] = 2.0                     # a 6×6 object
    z[:, 9:12, 16:19] = 2.0                    # a 3×3 one, in a second region whose paint touches the first's
    p1 = torch.zeros(H, W, dtype=torch.bool)
    p1[8:14, 8:15] = True
    p2 = torch.zeros(H, W, dtype=torch.bool)
    p2[8:14, 15:20] = True
    down = [Region(_up(p), "relocate", begin=(100.0, 88.0), target=(100.0, 88.0 + 96.0)) for p in (p1, p2)]
    for one_piece in (False, True):
        out = carried_proposal(z[None], down, 0.5, "smooth", one_piece=one_piece, shadow="none")[0]
        assert (out[0, 20:26, 8:14] > 1.5).all() and (out[0, 21:24, 16:19] > 1.5).all()


def test_the_pipeline_s_proposal_passes_its_content_and_shadow_settings():
    from fluxdrag.pipelines.dragflow import proposal

    z, painted = _scene()
    z[:, 8, 16] = 2.0                          # a stray bright cell in the painted shadow: no object
    r = Region(_up(painted), "relocate", begin=(88.0, 88.0), target=(88.0 - 48.0, 88.0 + 48.0))
    kw = dict(hole_texture="smooth", content_contrast=0.5, occluder_contrast=0.0, depth="over",
              content_reference="texture", content_growth="split")
    ours = proposal(z[None], [r], content_piece="largest", shadow_carry="none", **kw)[0]
    rigid = proposal(z[None], [r], content_piece="largest", shadow_carry="rigid", **kw)[0]
    every = proposal(z[None], [r], content_piece="all", shadow_carry="none", **kw)[0]
    assert not _dark(ours).any() and _dark(rigid)[14:20, 8:11].any()
    assert ours[0, 14, 10] < 1.0 and every[0, 14, 10] > 1.5        # the stray cell moves only with "all"
    with pytest.raises(ValueError, match="shadow"):
        carried_proposal(z[None], [r], 0.5, "smooth", shadow="dragged")


def test_the_continued_hole_fill_continues_a_texture_and_keeps_a_smooth_ground_smooth():
    """``hole_texture`` continued (LazyDrag's fill): a striped ground's hole gets stripes, a smooth
    one the membrane; cells off the hole are never touched (the fill's ring correction stays inside)."""
    from fluxdrag.core.dragflow_proposal import hole_filled

    xs = torch.arange(W, dtype=torch.float32)
    stripes = (0.8 * torch.sign(torch.sin(2 * math.pi * (xs + 0.5) / 4)))[None, None, :].expand(1, 16, H, W).clone()
    hole = torch.zeros(H, W, dtype=torch.bool)
    hole[14:20, 12:22] = True
    out = hole_filled(stripes, hole, None, "continued")
    assert torch.allclose(out, stripes, atol=1e-4)                  # the stripes continue
    assert torch.equal(out[:, :, ~hole], stripes[:, :, ~hole])
    ys = torch.arange(H, dtype=torch.float32)[:, None]
    ramp = (0.05 * ys + 0.02 * xs[None, :])[None, None].expand(1, 16, H, W).clone()
    assert torch.allclose(hole_filled(ramp, hole, None, "continued"), ramp, atol=1e-3)   # a plane stays a plane
    with pytest.raises(ValueError, match="hole_texture"):
        hole_filled(stripes, hole, None, "blurred")

