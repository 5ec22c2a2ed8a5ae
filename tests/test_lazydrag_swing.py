"""LazyDrag's swing rule [ours]: a lone elastic drag on a painted part rotates the part rigidly about
its far end (core.correspondence_fields.swing_lone_drags); the paper's setting leaves it elastic."""
import math

import torch

from fluxdrag.core.correspondence import build_correspondence, swing_lone_drags
from fluxdrag.core.instructions import parse_instructions, rle_encode, to_token_space


def _limb(angle_deg: float = 60.0):
    """A horizontal bar of latent pixels (a limb's free segment, joint at its left end) with one
    drag from its right end to that end swung by ``angle_deg`` about the joint."""
    size = 256
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[120:136, 64:192] = True                 # 16 px thick, 128 px long
    joint, tip = (68.0, 128.0), (188.0, 128.0)
    a = math.radians(angle_deg)
    r = tip[0] - joint[0]
    target = (joint[0] + r * math.cos(a), joint[1] + r * math.sin(a))   # clockwise on screen
    doc = {"version": 1, "image_size": [size, size], "mask": {"rle": rle_encode(mask)},
           "drags": [{"handle": list(tip), "target": list(target), "mode": "drag"}]}
    return doc, mask, joint


def _pixel_mask(mask):
    return mask.reshape(mask.shape[0] // 8, 8, mask.shape[1] // 8, 8).any(3).any(1)


def _limb_painted_past_joint():
    """(token drags, latent-pixel mask, joint (x, y) px) of a 60° limb whose paint runs past the
    joint onto the base's start (a shadow painted with the free segment)."""
    doc, mask, joint = _limb(60.0)
    mask[96:136, 24:72] = True                   # paint over the base's start, up and left of the joint
    doc = dict(doc, mask={"rle": rle_encode(mask)})
    return to_token_space(parse_instructions(doc), (256, 256)), _pixel_mask(mask), joint


def test_lone_drag_becomes_a_rotation_about_the_far_end():
    doc, mask, joint = _limb(60.0)
    td = to_token_space(parse_instructions(doc), (256, 256))
    out = swing_lone_drags(td, td.mask, _pixel_mask(mask))
    assert out.modes == ["move"]
    pivot = out.handles[0]
    assert torch.equal(out.handles[0], out.targets[0])          # a rotation in place
    jt = torch.tensor(joint, dtype=torch.float64) / 16 - 0.5
    assert float((pivot - jt).norm()) < 0.75                    # within one latent pixel and a half
    assert abs(float(out.angles[0]) - 60.0) < 8.0
    # the rotation carries the handle onto the target exactly (a rigid swing, no scaling)
    th = math.radians(float(out.angles[0]))
    rot = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
    moved = pivot + rot @ (td.handles[0] - pivot)
    assert float((moved - td.targets[0]).norm()) < 1e-6


def test_swing_is_off_for_the_paper_and_for_unpainted_or_shared_parts():
    doc, mask, _ = _limb(45.0)
    td = to_token_space(parse_instructions(doc), (256, 256))
    pm = _pixel_mask(mask)
    assert build_correspondence(td, td.grid_hw, pixel_mask=pm).drags.modes == ["drag"]      # paper
    assert build_correspondence(td, td.grid_hw, pixel_mask=pm, swing=True).drags.modes == ["move"]
    # no painted mask: the default discs are not a part to swing
    bare = dict(doc)
    del bare["mask"]
    tb = to_token_space(parse_instructions(bare), (256, 256))
    assert build_correspondence(tb, tb.grid_hw, swing=True).drags.modes == ["drag"]
    # two drags on the part: not a lone drag (rigid fusion or elastic drags decide)
    two = dict(doc, drags=doc["drags"] + [{"handle": [100, 128], "target": [100, 140], "mode": "drag"}])
    t2 = to_token_space(parse_instructions(two), (256, 256))
    assert swing_lone_drags(t2, t2.mask, pm).modes == ["drag", "drag"]


def test_content_pixels_leave_a_painted_shadow_behind():
    """content_contrast [ours]: the object moves, the weaker painted shadow beside it is only
    vacated; 0 (the paper) moves the whole painted region."""
    from fluxdrag.core.correspondence import content_pixels

    z = torch.zeros(16, 16, 16)
    z[0, 4:8, 4:8] = 2.0                       # an object
    z[1, 4:8, 8:11] = -0.5                     # its soft shadow, painted with it
    painted = torch.zeros(16, 16, dtype=torch.bool)
    painted[3:9, 3:12] = True
    keep = content_pixels(z, painted, 0.5)
    obj = torch.zeros_like(painted)
    obj[4:8, 4:8] = True
    assert torch.equal(keep & obj, obj) and not bool((keep & ~obj).any())
    assert torch.equal(content_pixels(z, painted, 0.0), painted)


def test_shaft_pivot_ignores_paint_over_the_base():
    """swing_pivot "shaft" [ours]: paint that runs past the joint onto the base's start (a shadow
    painted with the free segment) pulls the far end's centroid off the joint; the shaft's axis
    crossing the bisector stays on it."""
    td, pm, joint = _limb_painted_past_joint()
    jt = torch.tensor(joint, dtype=torch.float64) / 16 - 0.5
    far = swing_lone_drags(td, td.mask, pm).handles[0]
    shaft = swing_lone_drags(td, td.mask, pm, pivot="shaft").handles[0]
    assert float((far - jt).norm()) > 1.0                       # the far end: off by over a token
    assert float((shaft - jt).norm()) < 0.5
    out = build_correspondence(td, td.grid_hw, pixel_mask=pm, swing=True, swing_pivot="shaft")
    assert torch.allclose(out.drags.handles[0], shaft)


def test_paint_beyond_the_pivot_stays():
    """swing_base "keep" [ours]: the painted pixels beyond the pivot (the base's start) stay where they
    are — their own sources in the fine map — and nothing is carried from them; "swing" carries them
    round the joint with the part."""
    td, pm, joint = _limb_painted_past_joint()
    keep = build_correspondence(td, td.grid_hw, pixel_mask=pm, swing=True, swing_pivot="shaft",
                                swing_base="keep").fine
    swung = build_correspondence(td, td.grid_hw, pixel_mask=pm, swing=True, swing_pivot="shaft").fine
    H, W = pm.shape
    idx = torch.arange(H * W).reshape(H, W)
    base = pm.clone()
    base[:, int(joint[0] // 8):] = False           # the painted pixels left of the joint's column
    assert int(base.sum()) > 10
    stay = keep.source.reshape(H, W) == idx
    assert bool(stay[base].float().mean() > 0.8)
    assert not bool(torch.isin(keep.source[keep.source >= 0], idx[base & ~stay]).any())
    assert float((swung.source.reshape(H, W) == idx)[base].float().mean()) < 0.3
