"""LazyDrag's content test [ours] (core.correspondence_latent.content_pixels): a painted texture
cell under a cast shadow stands out from the membrane fill but not from the texture continued
(``texture``, :func:`texture_fill`), and a stray piece standing out apart from the object is not
carried (``one_piece``); the paper's settings never run the test."""
import torch

from fluxdrag.core.correspondence import content_pixels, harmonic_fill, texture_fill
from fluxdrag.pipelines.lazydrag import PAPER, LazyDragSettings

H = W = 32


def _checker(period: int = 8) -> torch.Tensor:
    """A checkerboard background (16, H, W) of cells ``period // 2`` wide in channel 0."""
    y, x = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    z = torch.zeros(16, H, W)
    z[0] = 3.0 * (((x // (period // 2)) + (y // (period // 2))) % 2).float()
    return z


def _scene():
    """An object (channel 2) painted together with a shadow over the checkerboard below it."""
    z = _checker()
    obj = torch.zeros(H, W, dtype=torch.bool)
    obj[8:14, 10:16] = True
    painted = obj.clone()
    painted[14:20, 9:18] = True                     # the painted shadow, over checker cells
    z[1, 14:20, 9:18] -= 0.3                        # a shallow shadow along another channel
    z[2, obj] += 3.0
    return z, obj, painted


def test_texture_fill_continues_the_checkerboard():
    z = _checker()
    hole = torch.zeros(H, W, dtype=torch.bool)
    hole[12:20, 12:20] = True
    got = texture_fill(z, hole)
    assert got is not None
    assert float((got - z)[:, hole].abs().max()) < 1e-4           # the cells, exactly
    assert float((harmonic_fill(z[None], hole)[0] - z)[:, hole].abs().max()) > 0.5   # the membrane blurs them


def test_checker_cells_under_a_painted_shadow_stay():
    z, obj, painted = _scene()
    membrane = content_pixels(z, painted, 0.5)
    assert bool((membrane & ~obj).any())            # the membrane reads cells as content
    got = content_pixels(z, painted, 0.5, texture=True)
    assert torch.equal(got, obj)
    # the paper (contrast 0): the whole painted region
    assert torch.equal(content_pixels(z, painted, 0.0, texture=True, one_piece=True), painted)


def test_only_the_largest_piece_moves():
    z, obj, painted = _scene()
    stray = torch.zeros(H, W, dtype=torch.bool)
    stray[18, 16] = True                              # a lone bright pixel in the painted shadow
    z[3, stray] += 4.0
    both = content_pixels(z, painted, 0.5, texture=True)
    assert torch.equal(both, obj | stray)
    assert torch.equal(content_pixels(z, painted, 0.5, texture=True, one_piece=True), obj)
    # a piece split from the object only by an object in front of it counts with the object
    front = torch.zeros(H, W, dtype=torch.bool)
    front[16:19, 13:16] = True
    z2 = z.clone()
    z2[4, front] += 4.0
    near = torch.zeros(H, W, dtype=torch.bool)
    near[14:16, 14] = True                            # joins the object's bottom row to the front
    z2[2, near] += 4.0
    z2[3, stray] -= 4.0
    z2[2, stray] += 4.0                               # the stray now touches the front object too
    got = content_pixels(z2, painted & ~front, 0.5, behind=front, texture=True, one_piece=True)
    assert bool(got[18, 16]) and bool(got[15, 14])


def test_a_piece_a_drag_holds_moves_with_the_largest():
    """One paint over two dragged objects: the largest-piece rule kept only the larger, and the
    smaller (its drag's handle on it) was filled as ground. A piece under a handle is content too;
    a stray piece no handle holds is still dropped."""
    z, obj, painted = _scene()
    small = torch.zeros(H, W, dtype=torch.bool)
    small[18, 16] = True
    z[3, small] += 4.0
    on_obj = torch.nonzero(obj)[0].flip(0).double()[None]          # (x, y) of an object pixel
    on_small = torch.tensor([[16.0, 18.0]], dtype=torch.float64)
    assert torch.equal(content_pixels(z, painted, 0.5, texture=True, one_piece=True, anchors=on_obj), obj)
    both = content_pixels(z, painted, 0.5, texture=True, one_piece=True, anchors=torch.cat([on_obj, on_small]))
    assert torch.equal(both, obj | small)


def test_a_shadow_painted_apart_from_its_object_is_no_content():
    """[ours] ``anchors``: a shadow painted as its own part, apart from the object (no drag near it),
    is judged against the strongest part of the whole paint: its darkest pixels are no object. A dim
    object painted apart with a drag of its own still moves."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    z = torch.zeros(16, H, W)
    z[0] = 0.05 * x
    obj = torch.zeros(H, W, dtype=torch.bool)
    obj[6:12, 6:12] = True
    z[2, obj] += 3.0
    shadow = torch.zeros(H, W, dtype=torch.bool)
    shadow[15:22, 8:16] = True                        # apart from the object: a gap of three rows
    z[1, shadow] -= 0.2 + 0.1 * ((y - 15).clamp(min=0) / 6)[shadow]   # deepest at its far edge
    painted = obj | shadow
    handle = torch.tensor([[9.0, 9.0]])               # (x, y) on the object
    assert bool((content_pixels(z, painted, 0.5) & shadow).any())     # per part: its darkest rows
    assert torch.equal(content_pixels(z, painted, 0.5, anchors=handle), obj)
    dim = torch.zeros(H, W, dtype=torch.bool)
    dim[6:12, 22:28] = True
    z[3, dim] += 1.2                                  # 0.4 × the bright object's contrast
    handles = torch.tensor([[9.0, 9.0], [25.0, 9.0]])
    got = content_pixels(z, painted | dim, 0.5, anchors=handles)
    assert torch.equal(got, obj | dim)


def test_defaults_and_paper_values():
    s = LazyDragSettings()
    assert (s.content_piece, s.content_reference) == ("largest", "texture")
    assert (PAPER.content_piece, PAPER.content_reference) == ("all", "membrane")


def test_texture_offset_is_the_loops_offset():
    """The FFT search picks the offset the one-at-a-time rule picks (random latents, masks and
    objects in front, a texture with exact repeats)."""
    from bench.texture_fill import offset_by_loop
    from fluxdrag.core.correspondence import texture_offset

    g = torch.Generator().manual_seed(3)
    for i in range(12):
        h, w = 14 + 2 * (i % 4), 16 + 3 * (i % 3)
        noise = torch.randn(16, h, w, generator=g)
        z = noise if i % 2 else _checker()[:, :h, :w] + 0.01 * noise
        region = torch.zeros(h, w, dtype=torch.bool)
        region[3 + i % 4:7 + i % 5, 4:8 + i % 3] = True
        avoid = (torch.rand(h, w, generator=g) > 0.9) & ~region if i % 3 == 0 else None
        assert texture_offset(z, region, avoid, reach=6) == offset_by_loop(z, region, avoid, reach=6)


def test_hole_lock_follows_the_texture_continued():
    """hole_fill "texture" [ours]: under the hole lock the vacated pixels follow the image's own
    continuation (a checker continues with its cells, exactly); "membrane" smooths them."""
    from fluxdrag.attention_patches.lazydrag import LazyDragControl, LazyDragRun
    from fluxdrag.core.cache import sigma_key
    from fluxdrag.core.instructions import rle_encode
    from fluxdrag.pipelines.lazydrag import PATCH_FIELDS, build_plan
    from fluxdrag.pipelines.settings import pick

    ground = _checker()
    z = ground.clone()
    z[2, 10:16, 8:14] += 4.0                       # an object over the checker
    paint = torch.zeros(H * 8, W * 8, dtype=torch.bool)
    paint[80:128, 64:112] = True
    doc = {"version": 1, "image_size": [W * 8, H * 8], "mask": {"rle": rle_encode(paint)},
           "drags": [{"handle": [88, 104], "target": [200, 200], "mode": "move"}]}
    err = {}
    for fill in ("texture", "membrane"):
        s = LazyDragSettings(hole_fill=fill, hole_lock=1.0)
        plan = build_plan(doc, z[None], settings=s)
        traj = {sigma_key(0.0): z[None], sigma_key(0.5): z[None]}
        ctrl = LazyDragControl(plan, None, torch.tensor([1.0, 0.5, 0.0]), paired_batch=1, trajectory=traj,
                               **pick(s, PATCH_FIELDS))
        out = ctrl.after_step(LazyDragRun(), 1, 0.0, torch.randn(1, 16, H, W))   # the last step: σ 0
        vac = plan.cmap.fine.vacated
        assert int(vac.sum()) > 20
        err[fill] = float((out[0] - ground)[:, vac].abs().max())
    assert err["texture"] < 1e-4 and err["membrane"] > 1.0
    assert PAPER.hole_fill == "membrane"
