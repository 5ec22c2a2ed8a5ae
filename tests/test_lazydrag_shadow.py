"""LazyDrag's carried cast shadow [ours] (``cast_shadow``, core.cast_shadow): the shadow's offset
is read from the painted object and its shadow, a rotation in place turns the shadow about the
pivot's own shadow (c + d), not about the object's pivot, the Patch darkens the destination's own
ground there, a move carries nothing, and the paper's settings carry nothing."""
import math

import torch

from fluxdrag.core.cast_shadow import shadow_offset
from fluxdrag.core.instructions import rle_encode
from fluxdrag.pipelines.lazydrag import PAPER, LazyDragSettings, build_plan

H = W = 32
D = (3, 2)                     # the shadow's offset (dx, dy) in latent pixels
CY, CX = 15, 14                # the bar's centre (row, column)


def _bar(angle: float = 0.0) -> torch.Tensor:
    """A 3 × 9 bar about (CX, CY), turned by ``angle`` degrees (clockwise on screen)."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    a = math.radians(angle)
    u = (x - CX) * math.cos(a) + (y - CY) * math.sin(a)        # along the bar
    v = -(x - CX) * math.sin(a) + (y - CY) * math.cos(a)
    return (u.abs() <= 4.5) & (v.abs() <= 1.5)


def _shift(m: torch.Tensor, d=D) -> torch.Tensor:
    return torch.roll(m, shifts=(d[1], d[0]), dims=(0, 1))


def _scene():
    """A smooth ground, the bar (channel 2) and its shadow (the bar shifted by D, channel 1
    darkened where the bar does not cover it); the paint: bar and shadow."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    z = torch.zeros(16, H, W)
    z[0] = 0.02 * x + 0.01 * y                         # a gentle light gradient
    obj = _bar()
    shadow = _shift(obj) & ~obj
    z[1, shadow] -= 1.0
    z[2, obj] += 4.0
    return z, obj, shadow


def _doc(painted: torch.Tensor, drag: dict) -> dict:
    px = painted.repeat_interleave(8, 0).repeat_interleave(8, 1)
    return {"version": 1, "image_size": [W * 8, H * 8], "mask": {"rle": rle_encode(px)}, "drags": [drag]}


ROTATE = {"handle": [8 * CX + 4, 8 * CY + 4], "target": [8 * CX + 4, 8 * CY + 4], "mode": "move", "angle": 90}


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return int((a & b).sum()) / max(int((a | b).sum()), 1)


def test_shadow_offset_is_read_from_object_and_shadow():
    _, obj, shadow = _scene()
    dx, dy = shadow_offset(obj, shadow)
    assert math.hypot(dx - D[0], dy - D[1]) <= 0.5
    # an enlarged shadow (a near light): the offset of the centroid's shadow all the same
    big = torch.nn.functional.max_pool2d(_shift(obj)[None, None].float(), 3, 1, 1)[0, 0].bool() & ~obj
    dx, dy = shadow_offset(obj, big)
    assert math.hypot(dx - D[0], dy - D[1]) <= 1.0
    assert shadow_offset(obj, torch.zeros_like(obj)) is None


def test_a_rotation_turns_the_shadow_about_the_pivots_shadow():
    """Turned by 90° about its centre c, the bar's new shadow is the turned bar shifted by D: the
    old shadow turned about c + D, with the part the bar hid at its source (which shows now) taken
    from the nearest visible shadow. Turned about c (``object``, no offset) it swings away."""
    z, obj, shadow = _scene()
    turned = _bar(90)
    truth = _shift(turned) & ~turned                   # the new shadow where the new bar leaves it visible
    got = {}
    for rule in ("offset", "object"):
        plan = build_plan(_doc(obj | shadow, ROTATE), z[None], settings=LazyDragSettings(cast_shadow=rule))
        fine = plan.cmap.fine
        assert torch.equal(fine.destination, turned)   # the bar itself turns as before
        assert fine.shadow is not None
        got[rule] = (fine.shadow >= 0).reshape(H, W)
        assert not bool((got[rule] & turned).any())    # no shadow on the object
        src = fine.shadow[fine.shadow >= 0]
        assert bool(shadow.reshape(-1)[src].all())     # every source is a painted shadow pixel
    assert _iou(got["offset"], truth) >= 0.9
    assert _iou(got["object"], truth) <= 0.5


def test_the_patch_darkens_the_ground_under_the_turned_shadow():
    from fluxdrag.attention_patches.lazydrag import LazyDragControl, LazyDragRun
    from fluxdrag.core.cache import sigma_key
    from fluxdrag.pipelines.lazydrag import PATCH_FIELDS
    from fluxdrag.pipelines.settings import pick

    z, obj, shadow = _scene()
    painted = obj | shadow
    turned = _bar(90)
    truth = _shift(turned) & ~turned
    s = LazyDragSettings()
    plan = build_plan(_doc(painted, ROTATE), z[None], settings=s)
    traj = {sigma_key(0.0): z[None], sigma_key(0.5): z[None]}
    ctrl = LazyDragControl(plan, None, torch.tensor([1.0, 0.5, 0.0]), paired_batch=1, trajectory=traj,
                           **pick(s, PATCH_FIELDS))
    out = ctrl.after_step(LazyDragRun(), 1, 0.0, torch.randn(1, 16, H, W))[0]   # the last step: σ 0
    outside = truth & ~painted                        # new shadow on ground the paint never touched
    assert int(outside.sum()) >= 5
    assert float((out[1] - z[1])[outside].mean()) < -0.7          # darkened by the carried shadow
    rest = ~painted & ~turned & ~(ctrl.fine.shadow >= 0).reshape(H, W)
    assert torch.equal(out[:, rest], z[:, rest])                  # the rest of the ground stays the source's
    # the paper's settings (and "off"): nothing carried, the darkening is the source's alone
    off = build_plan(_doc(painted, ROTATE), z[None], settings=LazyDragSettings(cast_shadow="off"))
    assert off.cmap.fine.shadow is None
    assert PAPER.cast_shadow == "off"


def test_a_move_carries_no_shadow():
    """A move changes the object's place relative to the light: the shadow's new offset is not
    known, so it is vacated and filled, not carried (``IN_PLACE``)."""
    z, obj, shadow = _scene()
    move = {"handle": [8 * CX + 4, 8 * CY + 4], "target": [8 * CX + 4 - 64, 8 * CY + 4 + 40], "mode": "move"}
    plan = build_plan(_doc(obj | shadow, move), z[None], settings=LazyDragSettings())
    assert plan.cmap.fine.shadow is None


def test_the_carried_shadow_survives_the_maps_round_trip():
    from fluxdrag.core.correspondence import CorrespondenceMap

    z, obj, shadow = _scene()
    fine = build_plan(_doc(obj | shadow, ROTATE), z[None], settings=LazyDragSettings()).cmap
    back = CorrespondenceMap.from_dict(fine.to_dict())
    assert torch.equal(back.fine.shadow, fine.fine.shadow)


def test_a_shadow_the_frame_cuts_is_carried_whole(monkeypatch):
    """``BEYOND_FRAME``: the bar stands by the right border and its shadow runs out of the image.
    Turned by 90° in place, the shadow's cut part comes back into the image; it is carried from the
    silhouette's shadow continued beyond the frame. With 0 (the earlier rule) that end is lit ground."""
    import fluxdrag.core.cast_shadow as cs

    cx = 26
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")

    def bar(turned: bool) -> torch.Tensor:
        u, v = (y - CY, x - cx) if turned else (x - cx, y - CY)
        return (u.abs() <= 4.5) & (v.abs() <= 1.5)

    def shadow_of(m: torch.Tensor) -> torch.Tensor:     # shifted by D, cut by the frame (no wrap)
        s = torch.zeros_like(m)
        s[D[1]:, D[0]:] = m[:H - D[1], :W - D[0]]
        return s & ~m

    obj = bar(False)
    shadow = shadow_of(obj)
    assert bool(shadow[:, -1].any())                  # the frame cuts it
    z = torch.zeros(16, H, W)
    z[0] = 0.02 * x.float()
    z[1, shadow] -= 1.0
    z[2, obj] += 4.0
    rotate = {"handle": [8 * cx + 4, 8 * CY + 4], "target": [8 * cx + 4, 8 * CY + 4], "mode": "move", "angle": 90}
    turned = bar(True)
    truth = shadow_of(turned)
    got, reach = {}, cs.BEYOND_FRAME
    assert reach > 0
    for m in (reach, 0):
        monkeypatch.setattr(cs, "BEYOND_FRAME", m)
        fine = build_plan(_doc(obj | shadow, rotate), z[None], settings=LazyDragSettings()).cmap.fine
        assert torch.equal(fine.destination, turned)
        got[m] = (fine.shadow >= 0).reshape(H, W)
        assert bool(shadow.reshape(-1)[fine.shadow[fine.shadow >= 0]].all())   # sources: painted shadow
    missing = truth & ~got[0]
    assert int(missing.sum()) >= 4                    # the end that came from beyond the frame
    assert _iou(got[reach], truth) >= 0.9
    assert int((got[reach] & missing).sum()) >= int(missing.sum()) - 1
