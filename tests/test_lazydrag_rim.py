"""LazyDrag's hole rim [ours] (the Patch's ``hole_rim``): after ``hole_lock``'s steps the vacated
pixels next to the moved content stay under the hole lock as long as the content lock holds the
content; the rest of the hole is the model's; around a swing's part only with ``swing_rim`` (the
default; off, the model draws there and at the joint); the paper's settings have none."""
import torch

from fluxdrag.attention_patches.lazydrag import LazyDragControl, LazyDragRun
from fluxdrag.core.cache import sigma_key
from fluxdrag.core.correspondence import CorrespondenceMap
from fluxdrag.core.instructions import rle_encode
from fluxdrag.pipelines.lazydrag import PAPER, PATCH_FIELDS, LazyDragSettings, build_plan
from fluxdrag.pipelines.settings import pick

H = W = 32
CY, CX = 15, 14
STEPS = 10                      # hole_lock 0.8: the hole is the model's after step 8 of 10


def _scene():
    """A smooth ground with a 3 × 9 bar (channel 2) about (CX, CY); the paint: the bar."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    z = torch.zeros(16, H, W)
    z[0] = 0.02 * x + 0.01 * y
    bar = ((x - CX).abs() <= 4.5) & ((y - CY).abs() <= 1.5)
    z[2, bar] += 4.0
    return z, bar


def _doc(painted: torch.Tensor, drag: dict) -> dict:
    px = painted.repeat_interleave(8, 0).repeat_interleave(8, 1)
    return {"version": 1, "image_size": [W * 8, H * 8], "mask": {"rle": rle_encode(px)}, "drags": [drag]}


ROTATE = {"handle": [8 * CX + 4, 8 * CY + 4], "target": [8 * CX + 4, 8 * CY + 4], "mode": "move", "angle": 90}


def _late_step(settings: LazyDragSettings, doc: dict):
    """(control, the last step's output from noise, the source latent) of a run of STEPS steps."""
    z, _ = _scene()
    plan = build_plan(doc, z[None], settings=settings)
    sig = torch.linspace(1.0, 0.0, STEPS + 1)
    traj = {sigma_key(float(s)): z[None] for s in sig}
    ctrl = LazyDragControl(plan, None, sig, paired_batch=1, trajectory=traj, **pick(settings, PATCH_FIELDS))
    x = torch.randn(1, 16, H, W, generator=torch.Generator().manual_seed(0))
    return ctrl, ctrl.after_step(LazyDragRun(), STEPS - 1, 0.0, x.clone())[0], x[0]


def test_the_rim_of_a_rotation_in_place_stays_filled_to_the_last_step():
    z, bar = _scene()
    ctrl, out, noise = _late_step(LazyDragSettings(), _doc(bar, ROTATE))
    fine = ctrl.fine
    vac = fine.vacated
    near = torch.nn.functional.max_pool2d(fine.destination[None, None].float(), 3, 1, 1)[0, 0].bool()
    rim, far = vac & near, vac & ~near
    assert int(rim.sum()) >= 4 and int(far.sum()) >= 4          # the bar's ends: far from the turned bar
    fill, _ = ctrl._hole_terms(LazyDragRun(), (1, 16, H * W), out.device, out.dtype)
    fill = fill[0].reshape(16, H, W)
    assert torch.allclose(out[:, rim], fill[:, rim])            # held: the hole fill at σ 0
    assert torch.equal(out[:, far], noise[:, far])              # the rest of the hole is the model's
    # hole_rim 0 (the previous behaviour): every vacated pixel is the model's after hole_lock's steps
    ctrl0, out0, noise0 = _late_step(LazyDragSettings(hole_rim=0), _doc(bar, ROTATE))
    assert ctrl0.rim is None
    assert torch.equal(out0[:, vac], noise0[:, vac])
    assert PAPER.hole_rim == 0


def test_the_rim_around_a_swing_is_held_with_swing_rim():
    """A lone elastic drag on the painted bar swings it about its far end (the map marks the swing's
    pixels, ``FineMap.joined``, also through the map's round trip). With ``swing_rim`` (default) the
    vacated pixels next to the swung bar stay filled to the last step, where the model would extend the
    bar into the ground it left; the rest of the hole is the model's. Off (before): no rim there."""
    z, bar = _scene()
    tip = [8 * (CX + 4) + 4, 8 * CY + 4]
    swing = {"handle": tip, "target": [8 * (CX - 2) + 4, 8 * (CY + 6) + 4], "mode": "drag"}
    ctrl, out, noise = _late_step(LazyDragSettings(), _doc(bar, swing))
    fine = ctrl.fine
    assert fine.joined is not None and bool(fine.joined.any())
    near = torch.nn.functional.max_pool2d(fine.destination[None, None].float(), 3, 1, 1)[0, 0].bool()
    rim, far = fine.vacated & near, fine.vacated & ~near
    assert ctrl.rim is not None and int(rim.sum()) >= 2 and int(far.sum()) >= 2
    assert torch.equal(ctrl.rim.reshape(H, W), rim)
    fill, _ = ctrl._hole_terms(LazyDragRun(), (1, 16, H * W), out.device, out.dtype)
    fill = fill[0].reshape(16, H, W)
    assert torch.allclose(out[:, rim], fill[:, rim])              # held: the hole fill at σ 0
    assert torch.equal(out[:, far], noise[:, far])                # the rest of the hole is the model's
    ctrl0, out0, noise0 = _late_step(LazyDragSettings(swing_rim=False), _doc(bar, swing))
    assert ctrl0.rim is None
    assert torch.equal(out0[:, ctrl0.fine.vacated], noise0[:, ctrl0.fine.vacated])
    assert not PAPER.swing_rim
    back = CorrespondenceMap.from_dict(ctrl.plan.cmap.to_dict())
    assert torch.equal(back.fine.joined, fine.joined)
