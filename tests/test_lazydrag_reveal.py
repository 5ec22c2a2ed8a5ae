"""LazyDrag's reveal release [ours] (``reveal_release``): an object dragged out from behind another
shows only its visible part, and its hidden part lay under the object in front. That object's pixels
near the content, carried with it, are left free of the background lock so the model can draw the
hidden part there; the paper's setting (0) holds them as background."""
# the scene: test_lazydrag_occlusion's painted object (rows 10-17, cols 8-13) covered on its right by an
# object in front (rows 8-19, cols 14-19), on a smooth ground
import torch
from test_lazydrag_occlusion import H, W, _scene

from fluxdrag.attention_patches.lazydrag import LazyDragControl
from fluxdrag.core.cache import sigma_key
from fluxdrag.core.correspondence import CorrespondenceMap
from fluxdrag.core.instructions import rle_encode
from fluxdrag.pipelines.lazydrag import PAPER, PATCH_FIELDS, LazyDragSettings, build_plan
from fluxdrag.pipelines.settings import pick


def _doc(painted):
    mask = painted.repeat_interleave(8, 0).repeat_interleave(8, 1)
    # out from behind: 4 latent pixels left, 10 down
    return {"version": 1, "image_size": [8 * W, 8 * H], "mask": {"rle": rle_encode(mask)},
            "drags": [{"handle": [88.0, 112.0], "target": [56.0, 192.0], "mode": "move"}]}


def test_the_hidden_part_s_place_is_released_to_the_model():
    z, painted, _ = _scene()
    s = LazyDragSettings()
    plan = build_plan(_doc(painted), z[None], None, s)
    fine = plan.cmap.fine
    want = torch.zeros(H, W, dtype=torch.bool)
    r = s.reveal_release
    want[18:30, 10:10 + r] = True              # the front object's pixels within r of the content, carried
    assert torch.equal(fine.released, want)
    assert not (fine.released & fine.free).any()
    # the map's round trip keeps it
    assert torch.equal(CorrespondenceMap.from_dict(plan.cmap.to_dict()).fine.released, want)
    # the Patch leaves those pixels to the model: not under the background lock
    sig = torch.linspace(1.0, 0.0, 11)
    traj = {sigma_key(float(v)): z[None] for v in sig}
    ctrl = LazyDragControl(plan, None, sig, paired_batch=1, trajectory=traj, **pick(s, PATCH_FIELDS))
    assert not (ctrl.bg_pixels & want).any()
    assert ctrl.bg_pixels[0, 0] and ctrl.bg_pixels[18, 20]
    # 0 (the paper's): none, the background lock holds them
    fine0 = build_plan(_doc(painted), z[None], None, LazyDragSettings(reveal_release=0)).cmap.fine
    assert fine0.released is None
    ctrl0 = LazyDragControl(build_plan(_doc(painted), z[None], None, LazyDragSettings(reveal_release=0)), None, sig,
                            paired_batch=1, trajectory=traj, **pick(s, PATCH_FIELDS))
    assert bool(ctrl0.bg_pixels[want].all())
    assert PAPER.reveal_release == 0


def test_no_release_without_an_object_in_front():
    z, painted, front = _scene()
    z[3, front] = 0.0                          # nothing covers the painted object
    fine = build_plan(_doc(painted), z[None], None, LazyDragSettings()).cmap.fine
    assert fine.released is None


def test_the_map_preview_shows_the_released_pixels():
    from fluxdrag.core.preview import REGION_COLORS, draw_map_preview

    z, painted, _ = _scene()
    cmap = build_plan(_doc(painted), z[None], None, LazyDragSettings()).cmap
    grey = torch.full((8 * H, 8 * W, 3), 0.5)
    out = draw_map_preview(grey, cmap, arrows=False)
    released = cmap.fine.released.repeat_interleave(8, 0).repeat_interleave(8, 1)
    cmap.fine.released = None
    base = draw_map_preview(grey, cmap, arrows=False)  # the token regions' tints alone
    want = 0.55 * base[released] + 0.45 * torch.tensor(REGION_COLORS["released"])
    assert torch.allclose(out[released], want)
    assert torch.equal(out[~released], base[~released])
