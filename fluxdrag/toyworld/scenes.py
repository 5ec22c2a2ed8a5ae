"""Synthetic drag scenes with exact ground truth, generated directly in FLUX model-space latent.

A scene is a 16-channel latent (default 32×32 latent = 16×16 tokens = a 256×256 "image"): a
smooth or textured background plus one to five objects (disc, square, triangle, bar, ring), each
painted with one of ``PALETTE_SIZE`` fixed 16-channel signatures and a texture drawn in the
object's own coordinates (so it moves, rotates and stretches with the object). Every scene comes
with drag instructions in the pack's JSON (image pixels) and the ground-truth edited latent: the
same background, the object re-rendered at its new pose, the vacated area showing the background.

Layout of the latent space (a fixed orthonormal basis of R^16, seeded):
  * rows 0..PALETTE_SIZE-1 are the object signatures s_k; an object of palette k has
    <x, s_k> ≈ OBJECT_AMPLITUDE on its pixels;
  * the remaining rows span the background subspace; backgrounds live only there, so
    ``detect_objects`` finds objects by correlation with s_k without being fooled by background.

Geometry conventions (the pack's): points are (x, y) = (column, row) in image pixels; a latent
pixel (r, c) covers image pixels [8c, 8c+8) × [8r, 8r+8) and is rendered at its centre
(8c+4, 8r+4). Object centres are integer pixels and translations of a "move" are multiples of 8 px,
so the ground truth of a move is an exact shift of latent pixels.

Families (``make_scene``): "single", "multi", "crowded" (the shipped model was trained on these,
with scene seeds ≥ 10**8) and "textured_bg" (never seen in training: a held-out family). Added
later, with their own names so the first four families' seeds give the same scenes as before:
"parts" (textured or two-part objects — stripes, checker, a dot on the body — at double texture
amplitude: identity that a blur destroys; cases move, rotate, scale), "border" (the dragged object
touches an image side and ends partly outside the image), "overlap" (the dragged object ends on
top of the other one; masks are the visible parts), "large" (drags of 40–75 % of the image side;
cases move, scale). The case "scale" is a uniform scale up (1.3–1.5) or down (0.6–0.75) with a move.

Design choices (not from a paper; documented guesses of what makes a useful toy):
  * amplitudes (``OBJECT_AMPLITUDE`` = 2.0, background ≈ 0.8) put the latent at std ≈ 0.7,
    near real FLUX model-space latents [guess];
  * the editable-region ``mask`` of the JSON is the union of the dragged objects' source pixels
    [guess: what a user would paint].
Pure torch; never imports comfy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from .latent import (  # noqa: F401  (re-exported: the scene API users import from here)
    _RGB_M,
    _TEX_DIR,
    _TINT,
    BASIS_SEED,
    BG_BASIS,
    LATENT_CHANNELS,
    OBJECT_AMPLITUDE,
    PALETTE_SIZE,
    PIXELS_PER_LATENT,
    SIGNATURES,
    Detection,
    _components,
    detect_all,
    detect_objects,
    latent_mask_to_pixels,
    pixel_grid,
    rle_decode,
    rle_encode,
    signature_map,
    to_rgb,
)

SHAPES = ("disc", "square", "triangle", "bar", "ring")
TEXTURES = ("flat", "stripes", "checker", "radial", "dot")
_BASIC_TEXTURES = TEXTURES[:4]          # the first four families draw from these (seeds unchanged)
PART_TEXTURES = ("stripes", "checker", "dot")
#: the v3 families (``scenes_v3``): light and cast shadows, textured backgrounds, occlusion, joints
V3_FAMILIES = ("lit", "texture", "occlusion", "articulated")
FAMILIES = ("single", "multi", "textured_bg", "crowded", "parts", "border", "overlap", "large",
            *V3_FAMILIES)
NEW_FAMILIES = ("parts", "border", "overlap", "large")
CASES = ("move", "rotate", "stretch", "multi_move", "scale", "bend")
# the cases each later family is drawn with (the first four families: move/rotate/stretch/multi_move)
NEW_FAMILY_CASES = {"parts": ("move", "rotate", "scale"), "border": ("move",),
                    "overlap": ("move",), "large": ("move", "scale"),
                    "lit": ("move", "rotate"), "texture": ("move", "rotate"), "occlusion": ("move",),
                    "articulated": ("bend",)}

# bounding radius of each shape in units of its size (for placement without overlap)
_BOUND = {"disc": 1.0, "square": 1.21, "triangle": 1.0, "bar": 1.27, "ring": 1.0}


@dataclass(frozen=True)
class SceneObject:
    """One object: shape, palette entry, pose (centre px, size px, angle rad, image-axis scale)."""

    shape: str
    palette: int
    cx: float
    cy: float
    size: float
    angle: float = 0.0
    sx: float = 1.0
    sy: float = 1.0
    texture: str = "flat"
    tex_freq: float = 1.5
    tex_phase: float = 0.0
    tex_amp: float = 1.0
    tilt: float = 0.0               # v3 light: slope of the top facet along local a (0 = flat top)

    @property
    def radius(self) -> float:
        """Bounding radius in pixels."""
        return _BOUND[self.shape] * self.size * max(self.sx, self.sy)

    @property
    def signature(self) -> torch.Tensor:
        return SIGNATURES[self.palette]


@dataclass
class Scene:
    """A source latent, its drags and the ground-truth edit. Masks are (K, H, W) bool, latent res."""

    seed: int
    family: str
    case: str
    latent: torch.Tensor            # (16, H, W) model-space
    edited: torch.Tensor            # (16, H, W) ground truth after the drags
    background: torch.Tensor        # (16, H, W) background alone
    objects: list[SceneObject]
    objects_after: list[SceneObject]
    masks: torch.Tensor             # (K, H, W) before
    masks_after: torch.Tensor       # (K, H, W) after
    moved: list[int]                # indices of the dragged objects
    drags: dict = field(default_factory=dict)
    # v3 families (``scenes_v3``): the light, each object's soft cast shadow (K, H, W) in [0, 1]
    # before and after, family-specific ground truth (``extra``: joint, occlusion kind…); None /
    # empty for the unlit families
    light: object | None = None
    shadows: torch.Tensor | None = None
    shadows_after: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    def render(self, objects: list, order: list[int] | None = None,
               shadows: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent, visible masks) of ``objects`` on this scene's background, lit and shadowed
        like the scene (``shadows`` False: no cast shadows, the objects' pixels are the same)."""
        if self.light is None:
            return compose(self.background, objects, order)
        from .scenes_v3 import compose_lit

        lat, masks, _ = compose_lit(self.background, objects, self.light, order, shadows)
        return lat, masks

    def moved_shadow_area(self, threshold: float = 0.2) -> torch.Tensor:
        """(H, W) bool: where a dragged object's cast shadow (> ``threshold``) shows on the
        background before or after the edit (empty for unlit scenes)."""
        h, w = self.latent.shape[-2:]
        if self.shadows is None or self.shadows_after is None:
            return torch.zeros(h, w, dtype=torch.bool)
        before = (self.shadows[self.moved].amax(0) > threshold) & ~self.masks.any(0)
        after = (self.shadows_after[self.moved].amax(0) > threshold) & ~self.masks_after.any(0)
        return before | after

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (self.latent.shape[-1] * PIXELS_PER_LATENT, self.latent.shape[-2] * PIXELS_PER_LATENT)

    @property
    def vacated(self) -> torch.Tensor:
        """(H, W) bool: pixels a dragged object leaves that no object covers afterwards."""
        before = self.masks[self.moved].any(0)
        return before & ~self.masks_after.any(0)


# ----------------------------------------------------------------------------- rendering


def _local_at(obj: SceneObject, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Object-local coordinates (a, b) in units of size of image points (x, y): inverse of
    centre + S·R·size·local."""
    dx = (x - obj.cx) / obj.sx
    dy = (y - obj.cy) / obj.sy
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    a = (c * dx + s * dy) / obj.size
    b = (-s * dx + c * dy) / obj.size
    return a, b


def _local(obj: SceneObject, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Object-local coordinates of the latent pixel centres."""
    return _local_at(obj, *pixel_grid(h, w))


def shape_mask_at(obj: SceneObject, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bool: image points (x, y) inside the object."""
    a, b = _local_at(obj, x, y)
    if obj.shape == "disc":
        return a * a + b * b <= 1.0
    if obj.shape == "square":
        return (a.abs() <= 0.85) & (b.abs() <= 0.85)
    if obj.shape == "triangle":   # apex up (y down), centroid at the origin
        return (b <= 0.5) & (a.abs() <= (b + 1.0) * (0.866 / 1.5))
    if obj.shape == "bar":
        return (a.abs() <= 1.2) & (b.abs() <= 0.4)
    if obj.shape == "ring":
        r2 = a * a + b * b
        return (r2 <= 1.0) & (r2 >= 0.36)
    raise ValueError(f"unknown shape {obj.shape!r}; expected one of {SHAPES}")


def object_mask(obj: SceneObject, h: int = 32, w: int = 32) -> torch.Tensor:
    """(H, W) bool: latent pixels whose centre lies inside the object."""
    return shape_mask_at(obj, *pixel_grid(h, w))


def _texture(obj: SceneObject, h: int, w: int) -> torch.Tensor:
    a, b = _local(obj, h, w)
    f, p = obj.tex_freq, obj.tex_phase
    if obj.texture == "flat":
        return torch.zeros_like(a)
    if obj.texture == "stripes":
        return torch.sin(2 * math.pi * f * a + p)
    if obj.texture == "checker":
        return torch.sign(torch.sin(math.pi * f * a + p) * torch.sin(math.pi * f * b + p))
    if obj.texture == "radial":
        return torch.cos(2 * math.pi * f * torch.sqrt(a * a + b * b) + p)
    if obj.texture == "dot":      # a second part: a dot off the centre (+1) on the body (−1)
        return torch.where((a - 0.45) ** 2 + b * b <= 0.4 ** 2, 1.0, -1.0)
    raise ValueError(f"unknown texture {obj.texture!r}; expected one of {TEXTURES}")


def render_object(obj: SceneObject, h: int = 32, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The object's latent values (16, H, W) and mask (H, W)."""
    mask = object_mask(obj, h, w)
    t = _texture(obj, h, w)                                            # (H, W) in [-1, 1]
    k = obj.palette
    colour = OBJECT_AMPLITUDE * SIGNATURES[k] + _TINT[k]               # (16,)
    tex_dir = 0.15 * OBJECT_AMPLITUDE * SIGNATURES[k] + 0.5 * _TEX_DIR[k]
    val = colour[:, None, None] + obj.tex_amp * t[None] * tex_dir[:, None, None]
    return val, mask


def compose(background: torch.Tensor, objects: list[SceneObject],
            order: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint objects over the background (in list order, or in ``order``: later ones on top);
    returns the latent and the (K, H, W) *visible* masks in list order (a mask loses what an
    object painted later covers; without overlaps these are the full object masks)."""
    h, w = background.shape[-2:]
    out = background.clone()
    masks = [torch.zeros(h, w, dtype=torch.bool) for _ in objects]
    for i in (range(len(objects)) if order is None else order):
        val, m = render_object(objects[i], h, w)
        out = torch.where(m[None], val, out)
        for j in range(len(masks)):
            masks[j] = masks[j] & ~m
        masks[i] = m
    masks_t = torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.bool)
    return out, masks_t


def render_background(g: torch.Generator, h: int = 32, w: int = 32, textured: bool = False) -> torch.Tensor:
    """Smooth (and optionally textured) background in the background subspace, (16, H, W)."""
    nb = BG_BASIS.shape[0]
    mean = torch.randn(nb, generator=g) * 0.8
    low = torch.randn(1, nb, 4, 4, generator=g) * 0.6
    field_ = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=True)[0]   # (nb, H, W)
    coef = mean[:, None, None] + field_
    if textured:
        x, y = pixel_grid(h, w)
        theta = float(torch.rand((), generator=g)) * math.pi
        freq = 1.0 / (24 + 24 * float(torch.rand((), generator=g)))                   # per px
        phase = float(torch.rand((), generator=g)) * 2 * math.pi
        wave = torch.sin(2 * math.pi * freq * (x * math.cos(theta) + y * math.sin(theta)) + phase)
        d = torch.randn(nb, generator=g)
        d = 0.5 * d / d.norm()
        fine = torch.randn(1, nb, 8, 8, generator=g) * 0.2
        coef = coef + d[:, None, None] * wave[None] + F.interpolate(fine, size=(h, w), mode="nearest")[0]
    return torch.einsum("nhw,nc->chw", coef, BG_BASIS)

# ----------------------------------------------------------------------------- generation

def _rand(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (), generator=g))


def _fits(obj: SceneObject, others: list[SceneObject], width: int, height: int, gap: float = 8.0) -> bool:
    r = obj.radius
    if obj.cx - r < 0 or obj.cy - r < 0 or obj.cx + r > width or obj.cy + r > height:
        return False
    return all(math.hypot(obj.cx - o.cx, obj.cy - o.cy) >= r + o.radius + gap for o in others)


def _random_object(g: torch.Generator, palette: int, size_range: tuple[float, float],
                   width: int, height: int, others: list[SceneObject], shapes=SHAPES,
                   textures=_BASIC_TEXTURES, tex_amp: float = 1.0,
                   at_border: bool = False) -> SceneObject | None:
    """A random object that fits; ``at_border``: its bounding circle touches an image side
    (within 4 px) instead of lying anywhere."""
    shape = shapes[_randint(g, 0, len(shapes) - 1)]
    size = float(round(_rand(g, *size_range)))
    angle = 0.0 if shape in ("disc", "ring") else _rand(g, -0.5, 0.5)
    texture = textures[_randint(g, 0, len(textures) - 1)]
    freq, phase = _rand(g, 0.5, 1.2), _rand(g, 0.0, 2 * math.pi)
    for _ in range(50):
        cx = 4.0 * _randint(g, 0, width // 4)
        cy = 4.0 * _randint(g, 0, height // 4)
        obj = SceneObject(shape, palette, cx, cy, size, angle=angle, texture=texture, tex_freq=freq,
                          tex_phase=phase, tex_amp=tex_amp)
        if at_border:
            r = 4.0 * math.ceil(obj.radius / 4.0)
            side = _randint(g, 0, 3)
            obj = replace(obj, cx=r if side == 0 else width - r if side == 1 else cx,
                          cy=r if side == 2 else height - r if side == 3 else cy)
        if _fits(obj, others, width, height):
            return obj
    return None


def _border_target(g: torch.Generator, obj: SceneObject, others: list[SceneObject], width: int,
                   height: int, min_px: int = 48, max_px: int = 160) -> SceneObject | None:
    """A move that leaves the object partly outside the image: its centre stays inside, between
    0.35 and 0.85 of its bounding radius from the nearest side (about a fifth to half cut off)."""
    for _ in range(200):
        dx = 8 * _randint(g, -max_px // 8, max_px // 8)
        dy = 8 * _randint(g, -max_px // 8, max_px // 8)
        if not min_px <= math.hypot(dx, dy) <= max_px:
            continue
        new = replace(obj, cx=obj.cx + dx, cy=obj.cy + dy)
        edge = min(new.cx, new.cy, width - new.cx, height - new.cy)
        if not 0.35 * new.radius <= edge <= 0.85 * new.radius:
            continue
        if all(math.hypot(new.cx - o.cx, new.cy - o.cy) >= new.radius + o.radius + 8 for o in others):
            return new
    return None


def _overlap_target(g: torch.Generator, obj: SceneObject, under: SceneObject, width: int,
                    height: int, min_px: int = 48) -> SceneObject | None:
    """A move that ends on top of ``under``: centres 0.35–0.75 of the summed radii apart, at least
    3 latent pixels of the two shapes overlapping, the moved object inside the image."""
    for _ in range(200):
        ang = _rand(g, 0.0, 2 * math.pi)
        dist = _rand(g, 0.35, 0.75) * (obj.radius + under.radius)
        cx = 8 * round((under.cx + dist * math.cos(ang) - obj.cx) / 8) + obj.cx
        cy = 8 * round((under.cy + dist * math.sin(ang) - obj.cy) / 8) + obj.cy
        new = replace(obj, cx=cx, cy=cy)
        if math.hypot(cx - obj.cx, cy - obj.cy) >= min_px and _fits(new, [], width, height):
            h, w = height // PIXELS_PER_LATENT, width // PIXELS_PER_LATENT
            if int((object_mask(new, h, w) & object_mask(under, h, w)).sum()) >= 3:
                return new
    return None


def _move_target(g: torch.Generator, obj: SceneObject, others: list[SceneObject], width: int,
                 height: int, min_px: int = 48, max_px: int = 112) -> SceneObject | None:
    for _ in range(100):
        dx = 8 * _randint(g, -max_px // 8, max_px // 8)
        dy = 8 * _randint(g, -max_px // 8, max_px // 8)
        if math.hypot(dx, dy) < min_px or math.hypot(dx, dy) > max_px:
            continue
        new = replace(obj, cx=obj.cx + dx, cy=obj.cy + dy)
        if _fits(new, others, width, height):
            return new
    return None


def _drag(handle, target, mode: str = "move", scale=(1.0, 1.0)) -> dict:
    return {"handle": [round(handle[0]), round(handle[1])],
            "target": [round(target[0]), round(target[1])],
            "mode": mode, "scale": [float(scale[0]), float(scale[1])]}


def rotation_drags(o: SceneObject, theta: float) -> list[dict]:
    """The drags of a rotation of ``o`` by ``theta`` about its centre: two or three elastic
    ("drag") drags on points of the object towards its vertices."""
    arm = o.size * {"bar": 0.96, "triangle": 0.7}.get(o.shape, 0.75)
    n_handles = 2 if o.shape == "bar" else 3
    phi0 = -math.pi / 2 if o.shape == "triangle" else 0.0   # towards the vertices
    out = []
    for j in range(n_handles):
        phi = o.angle + phi0 + 2 * math.pi * j / n_handles
        hp = (o.cx + arm * math.cos(phi), o.cy + arm * math.sin(phi))
        tp = (o.cx + arm * math.cos(phi + theta), o.cy + arm * math.sin(phi + theta))
        out.append(_drag(hp, tp, "drag"))
    return out


def make_scene(seed: int, family: str = "single", case: str | None = None, size: int = 32,
               mask_in_json: bool = True) -> Scene:
    """A seeded scene of ``family`` with an edit ``case`` (random among allowed ones when None).

    Families: "single" (1 object, smooth background), "multi" (2–3 objects, smooth),
    "textured_bg" (1–3 objects over a textured background), "crowded" (4–5 smaller objects,
    smooth; dense in objects, used to train the model). Cases: "move" (one object, one
    move-mode drag from its centre), "rotate" (two or three elastic drags on points of one object
    rotated about its centre), "stretch" (move-mode drag with axis scale), "multi_move" (two
    objects, one drag each; needs ≥ 2 objects).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    if case is not None and case not in CASES:
        raise ValueError(f"unknown case {case!r}; expected one of {CASES}")
    fam_idx = FAMILIES.index(family)
    case_idx = 0 if case is None else 1 + CASES.index(case)
    g = torch.Generator().manual_seed(1_000_003 * fam_idx + 7919 * case_idx + int(seed))
    width = height = size * PIXELS_PER_LATENT
    if family in V3_FAMILIES:
        from .scenes_v3 import try_v3_scene as try_scene
        if case is not None and case not in NEW_FAMILY_CASES[family]:
            raise ValueError(f"case {case!r} is not drawn for family {family!r}; use one of "
                             f"{NEW_FAMILY_CASES[family]}")
    else:
        try_scene = _try_scene
        if case == "bend":
            raise ValueError(f"case 'bend' needs an articulated object; family {family!r} has none "
                             "(use family 'articulated')")
    for _attempt in range(20):
        scene = try_scene(g, seed, family, case, size=size, width=width, height=height, mask_in_json=mask_in_json)
        if scene is not None:
            return scene
    raise RuntimeError(f"could not place a scene for seed={seed} family={family} case={case}")


def _try_scene(g, seed, family, case, size, width, height, mask_in_json) -> Scene | None:
    new_family = family in NEW_FAMILIES
    if family == "single":
        n_obj = 1
    elif family == "multi":
        n_obj = _randint(g, 2, 3)
    elif family == "crowded":
        n_obj = _randint(g, 4, 5)
    elif family == "overlap":
        n_obj = 2
    elif family == "large":
        n_obj = 1
    elif new_family:            # parts, border
        n_obj = _randint(g, 1, 2)
    else:
        n_obj = _randint(g, 1, 3)
    if case is None:
        if new_family:
            allowed = list(NEW_FAMILY_CASES[family])
        else:
            allowed = ["move", "rotate", "stretch"] + (["multi_move"] if n_obj >= 2 else [])
        case = allowed[_randint(g, 0, len(allowed) - 1)]
    if case == "multi_move" and n_obj < 2:
        if family in ("single", "large"):
            raise ValueError(f"case 'multi_move' needs two objects; family {family!r} has one")
        n_obj = 2
    scale_px = size * PIXELS_PER_LATENT / 256.0
    if family == "crowded":
        size_range = (20 * scale_px, 28 * scale_px)
    elif family == "large":
        size_range = (20 * scale_px, 28 * scale_px)
    elif n_obj == 1:
        size_range = (28 * scale_px, 42 * scale_px)
    else:
        size_range = (22 * scale_px, 32 * scale_px)
    background = render_background(g, size, size, textured=(family == "textured_bg"))
    palette = torch.randperm(PALETTE_SIZE, generator=g)[:n_obj].tolist()
    objects: list[SceneObject] = []
    for k in palette:
        rot_shapes = ("square", "triangle", "bar") + (("disc",) if family == "parts" else ())
        shapes = SHAPES if case != "rotate" or objects else rot_shapes
        if family == "parts":
            obj = _random_object(g, k, size_range, width, height, others=objects, shapes=shapes,
                                 textures=PART_TEXTURES, tex_amp=2.0)
        elif family == "border":
            obj = _random_object(g, k, size_range, width, height, others=objects, shapes=shapes,
                                 at_border=not objects)
        else:
            obj = _random_object(g, k, size_range, width, height, others=objects, shapes=shapes)
        if obj is None:
            return None
        objects.append(obj)

    after = list(objects)
    drags = []
    order = None
    if case in ("move", "multi_move"):
        moved = [0] if case == "move" else [0, 1]
        for i in moved:
            others = [after[j] for j in range(len(after)) if j != i]
            if family == "border":
                new = _border_target(g, after[i], others, width, height)
            elif family == "overlap":
                new = _overlap_target(g, after[i], after[1], width, height)
                order = list(range(1, len(after))) + [0]      # the dragged object ends on top
            elif family == "large":
                new = _move_target(g, after[i], others, width, height,
                                   min_px=math.ceil(0.4 * width / 8) * 8, max_px=int(0.75 * width))
            else:
                new = _move_target(g, after[i], others, width, height)
            if new is None:
                return None
            after[i] = new
            drags.append(_drag((objects[i].cx, objects[i].cy), (new.cx, new.cy), "move"))
    elif case == "rotate":
        moved = [0]
        o = objects[0]
        theta = _rand(g, math.radians(30), math.radians(75)) * (1 if _rand(g, 0, 1) < 0.5 else -1)
        new = replace(o, angle=o.angle + theta)
        if not _fits(new, objects[1:], width, height):
            return None
        after[0] = new
        drags.extend(rotation_drags(o, theta))
    elif case == "scale":   # uniform scale up or down with a move from the centre
        moved = [0]
        o = objects[0]
        s = _rand(g, 1.3, 1.5) if _rand(g, 0, 1) < 0.5 else _rand(g, 0.6, 0.75)
        s = round(s, 3)
        lo, hi = (104, 184) if family == "large" else (16, 64)
        new = _move_target(g, replace(o, sx=s, sy=s), objects[1:], width, height, min_px=lo, max_px=hi)
        if new is None:
            return None
        after[0] = new
        drags.append(_drag((o.cx, o.cy), (new.cx, new.cy), "move", (s, s)))
    else:  # stretch
        moved = [0]
        o = objects[0]
        s = _rand(g, 1.3, 1.6)
        sx, sy = (s, 1.0) if _rand(g, 0, 1) < 0.5 else (1.0, s)
        others = objects[1:]
        stretched = replace(o, sx=sx, sy=sy)   # image-axis stretch of the posed object (S·R)
        new = _move_target(g, stretched, others, width, height, min_px=16, max_px=64)
        if new is None:
            return None
        after[0] = new
        drags.append(_drag((o.cx, o.cy), (new.cx, new.cy), "move", (sx, sy)))
    for d in drags:
        if d["handle"] == d["target"]:
            return None

    latent, masks = compose(background, objects)
    edited, masks_after = compose(background, after, order)
    mask_json = None
    if mask_in_json:
        mask_json = {"rle": rle_encode(latent_mask_to_pixels(masks[moved].any(0)))}
    doc = {"version": 1, "image_size": [width, height], "drags": drags, "mask": mask_json}
    return Scene(seed=int(seed), family=family, case=case, latent=latent, edited=edited,
                 background=background, objects=objects, objects_after=after, masks=masks,
                 masks_after=masks_after, moved=moved, drags=doc)
