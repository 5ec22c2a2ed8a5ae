"""Toy world v3: scenes where cut-and-paste is wrong — light, cast shadows, textured backgrounds,
occlusion and articulated objects, each with exact ground truth, in FLUX model-space latent.

Every v3 scene has a **point light** (``Light``: position x, y in image pixels, height z above the
ground) that
  * shades each object: intensity I = ambient + strength · max(0, n·l) · f, multiplying the object's
    latent value, with l the unit vector from the object's surface (at ``height`` above the
    ground) to the light and n the surface normal: a dome (the normal leans out from the centre,
    ``BULGE``) plus a tilted top facet (``SceneObject.tilt`` along the object's local a axis, so
    it turns with the object), f = 1 / (1 + (d / reach)²) a falloff with the distance d from the
    light's foot. The shading changes with the object's place and orientation;
  * lights the background: ``ground`` · cos(incidence) · f along ``LIGHT_DIR`` (the background-
    subspace direction that brightens the RGB view most), so background and light stay
    orthogonal to every object signature and detection is unchanged;
  * makes each object cast a soft shadow on the background: the ground point p is shadowed by
    the object when the ray from p to the light crosses the object at ``height`` (the object's
    mask at L + (p − L)·(z − h)/z, supersampled 4×4 per latent pixel, blurred by a Gaussian of
    ``softness`` latent pixels for the penumbra); a shadow removes ``shadow`` of the ground light.
    Shadows fall on the background only (objects stand at one height: none shadows another).
The ground truth re-renders everything at the new poses, so the object is re-shaded, its shadow
moves with it, and its old shadow's area shows lit background.

Families (cases):
  * ``lit`` ("move", "rotate"): one or two flat-coloured objects with tilted facets on a smooth
    background, long moves (64–128 px) and rotations (45–90°) of steep facets (tilt 0.8–1.4) under a
    strong, near light. Teaches
    re-shading and moving shadows; a copy carries the old light and leaves the old shadow.
  * ``texture`` ("move", "rotate"): one or two objects over a textured background
    (``BG_TEXTURES``: stripes at any angle with periods of 24–64 px from sine to square,
    checkers of 16–40 px cells, hexagonal dot tilings, brick tilings, textured gradients), lit and
    shadowed. Teaches continuing texture into the vacated area; a smooth fill is wrong. (The old
    ``textured_bg`` family stays held out of training.)
  * ``occlusion`` ("move"): a depth order. Kind "reveal": the dragged object starts 20–60 %
    hidden behind another and is dragged free, so the ground truth shows its hidden part; kind
    "hide": it is dragged behind another and ends 20–60 % hidden (``extra["kind"]``). The drag's
    handle is on the object's visible part (the visible pixel nearest to its centroid).
  * ``articulated`` ("bend"): a two-segment limb (``Limb``: a base segment and a free segment
    joined at ``joint``), optionally with one other object. One "drag"-mode drag from the free
    end's tip to its new place bends the free segment about the joint by 35–75°; the base
    segment stays (``extra["joint"]``, ``extra["bend_deg"]``).

The editable region in the JSON is what a user would paint: the dragged object's visible pixels
plus its cast shadow (for ``bend``: the free segment and its shadow) [guess].
Design values (not from a paper; documented guesses of what makes a useful toy): object height
16 px, light height 80–140 px, ambient/strength so the object's intensity stays within about
0.6–1.3 (its signature stays above the detector's threshold), ground light ≈ 1.6 along
``LIGHT_DIR``, full shadow removing 80 % of it.
Pure torch; never imports comfy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from . import scenes as S
from .latent import (
    _RGB_M,
    _TEX_DIR,
    _TINT,
    BG_BASIS,
    OBJECT_AMPLITUDE,
    PIXELS_PER_LATENT,
    SIGNATURES,
    latent_mask_to_pixels,
    pixel_grid,
    rle_encode,
)

BG_TEXTURES = ("stripes", "checker", "tiles", "bricks", "gradient")
OBJECT_HEIGHT = 16.0
BULGE = 1.2
SHADOW_THRESHOLD = 0.2


def _light_dir() -> torch.Tensor:
    lum = _RGB_M.sum(0)                           # how a latent direction brightens the RGB view
    d = BG_BASIS.T @ (BG_BASIS @ lum)
    return d / d.norm()


LIGHT_DIR = _light_dir()                          # (16,) unit, in the background subspace


@dataclass(frozen=True)
class Light:
    """A point light at (x, y) px, height z px above the ground (see module doc)."""

    x: float
    y: float
    z: float
    strength: float = 0.6
    ambient: float = 0.6
    ground: float = 1.6
    shadow: float = 0.8
    height: float = OBJECT_HEIGHT
    softness: float = 0.8
    reach: float = 120.0

    def falloff(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """1 / (1 + (d / reach)²), d the distance from the light's foot on the ground."""
        return 1.0 / (1.0 + ((self.x - x) ** 2 + (self.y - y) ** 2) / (self.reach * self.reach))


@dataclass(frozen=True)
class Limb:
    """A two-segment articulated object: base end (x0, y0), base segment of ``len1`` px along
    ``angle``, joint, free segment of ``len2`` px along ``angle + bend``; capsules of half width
    ``width`` px. The free segment is painted one shade lighter than the base (two parts)."""

    palette: int
    x0: float
    y0: float
    len1: float
    len2: float
    angle: float
    bend: float
    width: float = 10.0
    tilt: float = 0.0
    tex_amp: float = 1.0
    shape: str = "limb"

    @property
    def joint(self) -> tuple[float, float]:
        return (self.x0 + self.len1 * math.cos(self.angle), self.y0 + self.len1 * math.sin(self.angle))

    @property
    def tip(self) -> tuple[float, float]:
        jx, jy = self.joint
        a = self.angle + self.bend
        return (jx + self.len2 * math.cos(a), jy + self.len2 * math.sin(a))

    @property
    def cx(self) -> float:
        return (self.x0 + self.tip[0]) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.tip[1]) / 2

    @property
    def radius(self) -> float:
        pts = [(self.x0, self.y0), self.joint, self.tip]
        return max(math.hypot(px - self.cx, py - self.cy) for px, py in pts) + self.width

    @property
    def signature(self) -> torch.Tensor:
        return SIGNATURES[self.palette]

    def free_part(self) -> Limb:
        """The free segment alone (a limb with no base segment, based at the joint)."""
        jx, jy = self.joint
        return replace(self, x0=jx, y0=jy, len1=0.0)


def _seg_closest(x, y, a: tuple[float, float], b: tuple[float, float]):
    """Closest points (qx, qy) on segment a–b to points (x, y), and the distances."""
    ax, ay = a
    bx, by = b
    vx, vy = bx - ax, by - ay
    n2 = vx * vx + vy * vy
    t = ((x - ax) * vx + (y - ay) * vy) / n2 if n2 > 0 else torch.zeros_like(x)
    t = t.clamp(0, 1)
    qx, qy = ax + t * vx, ay + t * vy
    return qx, qy, torch.sqrt((x - qx) ** 2 + (y - qy) ** 2)


def _limb_parts(limb: Limb, x, y):
    """(mask, on_free, axis point x, axis point y) of a limb at image points (x, y)."""
    q1x, q1y, d1 = _seg_closest(x, y, (limb.x0, limb.y0), limb.joint)
    q2x, q2y, d2 = _seg_closest(x, y, limb.joint, limb.tip)
    free = d2 <= d1
    mask = torch.minimum(d1, d2) <= limb.width
    return mask, free, torch.where(free, q2x, q1x), torch.where(free, q2y, q1y)


def mask_at(obj, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bool: image points (x, y) inside ``obj`` (a ``SceneObject`` or a ``Limb``)."""
    if isinstance(obj, Limb):
        return _limb_parts(obj, x, y)[0]
    return S.shape_mask_at(obj, x, y)


def _value(obj, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unlit latent values (16, H, W) and mask (H, W) of ``obj``."""
    if not isinstance(obj, Limb):
        return S.render_object(obj, h, w)
    x, y = pixel_grid(h, w)
    mask, free, _, _ = _limb_parts(obj, x, y)
    t = torch.where(free, 1.0, -1.0)
    k = obj.palette
    colour = OBJECT_AMPLITUDE * SIGNATURES[k] + _TINT[k]
    tex_dir = 0.15 * OBJECT_AMPLITUDE * SIGNATURES[k] + 0.5 * _TEX_DIR[k]
    return colour[:, None, None] + obj.tex_amp * t[None] * tex_dir[:, None, None], mask


def intensity(obj, light: Light, h: int, w: int) -> torch.Tensor:
    """(H, W) light intensity on ``obj``'s surface at the latent pixel centres (module doc)."""
    x, y = pixel_grid(h, w)
    if isinstance(obj, Limb):                      # a cylinder: the normal leans off the axis
        _, _, ax, ay = _limb_parts(obj, x, y)
        rad = obj.width
        tx = ty = 0.0
    else:
        ax, ay = obj.cx, obj.cy
        rad = obj.size * max(obj.sx, obj.sy)
        tx, ty = obj.tilt * math.cos(obj.angle), obj.tilt * math.sin(obj.angle)
    nx = (BULGE * (x - ax) / rad).clamp(-1, 1) + tx
    ny = (BULGE * (y - ay) / rad).clamp(-1, 1) + ty
    lx, ly, lz = light.x - x, light.y - y, torch.full_like(x, light.z - light.height)
    dot = (nx * lx + ny * ly + lz) / (torch.sqrt(nx * nx + ny * ny + 1) * torch.sqrt(lx * lx + ly * ly + lz * lz))
    return light.ambient + light.strength * dot.clamp(min=0) * light.falloff(x, y)


def _gauss_blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return m
    r = max(1, math.ceil(2 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma * sigma))
    k = k / k.sum()
    x = F.pad(m[None, None], (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x[0, 0]


def cast_shadow(obj, light: Light, h: int, w: int, sub: int = 4) -> torch.Tensor:
    """(H, W) soft shadow of ``obj`` on the ground, in [0, 1] (module doc)."""
    step = PIXELS_PER_LATENT / sub
    off = (torch.arange(sub, dtype=torch.float32) + 0.5) * step
    xs = (torch.arange(w, dtype=torch.float32)[:, None] * PIXELS_PER_LATENT + off[None]).reshape(-1)
    ys = (torch.arange(h, dtype=torch.float32)[:, None] * PIXELS_PER_LATENT + off[None]).reshape(-1)
    gx, gy = xs[None, :].expand(h * sub, w * sub), ys[:, None].expand(h * sub, w * sub)
    f = (light.z - light.height) / light.z
    cov = mask_at(obj, light.x + (gx - light.x) * f, light.y + (gy - light.y) * f).float()
    cov = cov.reshape(h, sub, w, sub).mean((1, 3))
    return _gauss_blur(cov, light.softness).clamp(0, 1)


def ground_light(light: Light, h: int, w: int) -> torch.Tensor:
    """(H, W) the light's strength on the ground: ``ground`` · cos(incidence)."""
    x, y = pixel_grid(h, w)
    cos = light.z / torch.sqrt((light.x - x) ** 2 + (light.y - y) ** 2 + light.z ** 2)
    return light.ground * cos * light.falloff(x, y)


def compose_lit(background: torch.Tensor, objects: list, light: Light, order: list[int] | None = None,
                shadows: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Light the background, cast the objects' shadows on it, paint the shaded objects (in
    ``order``, later on top). Returns the latent, the (K, H, W) visible masks and the (K, H, W)
    per-object shadows (zeros when ``shadows`` is False)."""
    h, w = background.shape[-2:]
    sh = [cast_shadow(o, light, h, w) if shadows else torch.zeros(h, w) for o in objects]
    total = torch.ones(h, w)
    for s in sh:
        total = total * (1 - s)
    lit = ground_light(light, h, w) * (1 - light.shadow * (1 - total))
    out = background + lit[None] * LIGHT_DIR[:, None, None]
    masks = [torch.zeros(h, w, dtype=torch.bool) for _ in objects]
    for i in (range(len(objects)) if order is None else order):
        val, m = _value(objects[i], h, w)
        out = torch.where(m[None], val * intensity(objects[i], light, h, w)[None], out)
        for j in range(len(masks)):
            masks[j] = masks[j] & ~m
        masks[i] = m
    empty = torch.zeros(0, h, w)
    return (out, torch.stack(masks) if masks else empty.bool(), torch.stack(sh) if sh else empty)


# ----------------------------------------------------------------------------- backgrounds

def render_texture_background(g: torch.Generator, h: int = 32, w: int = 32) -> tuple[torch.Tensor, str]:
    """A smooth background plus one of ``BG_TEXTURES`` along a random background direction
    (amplitude 1.3–1.9); returns the background (16, H, W) and the texture's name."""
    base = S.render_background(g, h, w)
    kind = BG_TEXTURES[S._randint(g, 0, len(BG_TEXTURES) - 1)]
    x, y = pixel_grid(h, w)
    theta = S._rand(g, 0, math.pi)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    period = S._rand(g, 24, 64)
    phase = S._rand(g, 0, 2 * math.pi)
    nb = BG_BASIS.shape[0]
    if kind == "stripes":                      # from sine (sharp 0.5) to nearly square (3)
        sharp = S._rand(g, 0.5, 3.0)
        t = torch.tanh(sharp * torch.sin(2 * math.pi * u / period + phase)) / math.tanh(sharp)
    elif kind == "checker":
        cell = S._rand(g, 16, 40)
        t = torch.sign(torch.sin(math.pi * u / cell + phase) * torch.sin(math.pi * v / cell + 0.7 * phase))
    elif kind == "tiles":                      # hexagonal lattice of dots
        p = S._rand(g, 28, 56)
        row = torch.round(v / (0.866 * p))
        du = torch.remainder(u - (row % 2) * p / 2 + phase * p, p) - p / 2
        dv = v - row * 0.866 * p
        t = torch.where(du * du + dv * dv <= (0.32 * p) ** 2, 1.0, -1.0)
    elif kind == "bricks":
        hb = S._rand(g, 16, 32)
        row = torch.floor(v / hb)
        du = torch.remainder(u + (row % 2) * hb + phase * hb, 2 * hb)
        dv = torch.remainder(v, hb)
        mortar = (du < 0.3 * hb) | (dv < 0.3 * hb)
        t = torch.where(mortar, -1.0, 1.0)
    else:                                      # gradient: stripes fading in, over a colour ramp
        psi = S._rand(g, 0, 2 * math.pi)
        r = x * math.cos(psi) + y * math.sin(psi)
        ramp = (r - r.min()) / (r.max() - r.min())
        t = (0.2 + 0.8 * ramp) * torch.sin(2 * math.pi * u / period + phase)
        d2 = torch.randn(nb, generator=g)
        base = base + torch.einsum("hw,c->chw", 1.2 * (ramp - 0.5), (d2 / d2.norm()) @ BG_BASIS)
    d = torch.randn(nb, generator=g)
    amp = S._rand(g, 1.3, 1.9)
    return base + torch.einsum("hw,c->chw", amp * t, (d / d.norm()) @ BG_BASIS), kind


def random_light(g: torch.Generator, width: int, height: int, strong: bool = False) -> Light:
    """A point light whose foot lies 60–180 px from the image centre, 70–130 px high; ``strong``:
    the ``lit`` family's near (30–120 px from the centre, 60–110 px high), strong light with a
    reach of 130 px: intensities of about 0.55–2."""
    a = S._rand(g, 0, 2 * math.pi)
    d = S._rand(g, 30, 120) if strong else S._rand(g, 60, 180)
    z = S._rand(g, 60, 110) if strong else S._rand(g, 70, 130)
    strength = S._rand(g, 1.3, 1.5) if strong else S._rand(g, 0.35, 0.55)
    return Light(width / 2 + d * math.cos(a), height / 2 + d * math.sin(a), z,
                 strength=strength, ambient=0.55 if strong else 1.2 - strength,
                 reach=130.0 if strong else 120.0)


# ----------------------------------------------------------------------------- generation

def _hidden_share(front, back, h: int, w: int) -> float:
    m = S.object_mask(back, h, w)
    n = int(m.sum())
    return int((m & S.object_mask(front, h, w)).sum()) / n if n else 0.0


def _limb_inside(limb: Limb, width: int, height: int, margin: float = 4.0) -> bool:
    pts = [(limb.x0, limb.y0), limb.joint, limb.tip]
    r = limb.width + margin
    return all(r <= px <= width - r and r <= py <= height - r for px, py in pts)


def _random_limb(g: torch.Generator, palette: int, width: int, height: int) -> Limb | None:
    for _ in range(50):
        lim = Limb(palette, S._rand(g, 24, width - 24), S._rand(g, 24, height - 24),
                   S._rand(g, 40, 64), S._rand(g, 40, 60), angle=S._rand(g, 0, 2 * math.pi),
                   bend=math.radians(S._rand(g, 15, 55)) * (1 if S._rand(g, 0, 1) < 0.5 else -1),
                   width=S._rand(g, 9, 12))
        if _limb_inside(lim, width, height):
            return lim
    return None


def _far(obj, others: list, gap: float = 8.0) -> bool:
    return all(math.hypot(obj.cx - o.cx, obj.cy - o.cy) >= obj.radius + o.radius + gap for o in others)


def try_v3_scene(g, seed, family, case, size, width, height, mask_in_json) -> S.Scene | None:
    """One try at a v3 scene (None: placement failed, the caller draws again)."""
    if case is None:
        allowed = S.NEW_FAMILY_CASES[family]
        case = allowed[S._randint(g, 0, len(allowed) - 1)]
    light = random_light(g, width, height, strong=family == "lit")
    kind = None
    if family == "texture":
        background, kind = render_texture_background(g, size, size)
    else:
        background = S.render_background(g, size, size)
    scale_px = size * PIXELS_PER_LATENT / 256.0
    order_src = order_gt = None
    extra: dict = {}
    objects: list = []
    if family == "articulated":
        k0, k1 = torch.randperm(S.PALETTE_SIZE, generator=g)[:2].tolist()
        limb = _random_limb(g, k0, width, height)
        if limb is None:
            return None
        delta = math.radians(S._rand(g, 35, 75)) * (1 if S._rand(g, 0, 1) < 0.5 else -1)
        if abs(limb.bend + delta) > math.radians(140):
            delta = -delta
        bent = replace(limb, bend=limb.bend + delta)
        if not _limb_inside(bent, width, height):
            return None
        objects = [limb]
        if S._rand(g, 0, 1) < 0.5:
            other = S._random_object(g, k1, (22 * scale_px, 30 * scale_px), width, height, others=[])
            if other is None or not (_far(other, [limb]) and _far(other, [bent])):
                return None
            objects.append(other)
        after = [bent, *objects[1:]]
        moved = [0]
        hx, hy = limb.tip
        tx, ty = bent.tip
        drags = [S._drag((hx, hy), (tx, ty), "drag")]
        extra = {"joint": list(limb.joint), "bend_deg": math.degrees(delta), "kind": "bend"}
    elif family == "occlusion":
        k0, k1 = torch.randperm(S.PALETTE_SIZE, generator=g)[:2].tolist()
        rng = (24 * scale_px, 34 * scale_px)
        front = S._random_object(g, k1, rng, width, height, others=[])
        if front is None:
            return None
        kind = "reveal" if S._rand(g, 0, 1) < 0.5 else "hide"
        h, w = size, size
        if kind == "reveal":    # the dragged object starts partly behind ``front``, ends free
            shape_obj = S._random_object(g, k0, rng, width, height, others=[])
            if shape_obj is None:
                return None
            back = S._overlap_target(g, shape_obj, front, width, height, min_px=0)
            if back is None or not 0.2 <= _hidden_share(front, back, h, w) <= 0.6:
                return None
            new = S._move_target(g, back, [front], width, height)
            if new is None:
                return None
        else:                   # the dragged object starts free, ends partly behind ``front``
            back = S._random_object(g, k0, rng, width, height, others=[front])
            if back is None:
                return None
            new = S._overlap_target(g, back, front, width, height)
            if new is None or not 0.2 <= _hidden_share(front, new, h, w) <= 0.6:
                return None
        objects, after = [back, front], [new, front]
        order_src = order_gt = [0, 1]             # the dragged object is behind ``front``
        moved = [0]
        # the handle on what the user sees: the visible pixel nearest to the visible part's centroid
        vis = S.object_mask(back, h, w) & ~S.object_mask(front, h, w)
        px, py = pixel_grid(h, w)
        vx, vy = px[vis], py[vis]
        j = int(torch.argmin((vx - vx.mean()) ** 2 + (vy - vy.mean()) ** 2))
        hx, hy = float(vx[j]), float(vy[j])
        drags = [S._drag((hx, hy), (hx + new.cx - back.cx, hy + new.cy - back.cy), "move")]
        extra = {"kind": kind}
    else:                                          # lit, texture
        n_obj = S._randint(g, 1, 2)
        palette = torch.randperm(S.PALETTE_SIZE, generator=g)[:n_obj].tolist()
        rng = (28 * scale_px, 40 * scale_px) if n_obj == 1 else (22 * scale_px, 32 * scale_px)
        for k in palette:
            shapes = S.SHAPES if case != "rotate" or objects else ("square", "triangle", "bar")
            obj = S._random_object(g, k, rng, width, height, others=objects, shapes=shapes,
                                   textures=("flat",) if family == "lit" else S.TEXTURES[:4])
            if obj is None:
                return None
            lo, hi = (0.8, 1.4) if family == "lit" else (0.0, 0.4)
            tilt = S._rand(g, lo, hi) * (1 if S._rand(g, 0, 1) < 0.5 else -1)
            objects.append(replace(obj, tilt=tilt))
        after = list(objects)
        moved = [0]
        o = objects[0]
        if case == "rotate":
            lo_deg, hi_deg = (45, 90) if family == "lit" else (30, 75)
            theta = S._rand(g, math.radians(lo_deg), math.radians(hi_deg)) * (1 if S._rand(g, 0, 1) < 0.5 else -1)
            new = replace(o, angle=o.angle + theta)
            if not S._fits(new, objects[1:], width, height):
                return None
            drags = S.rotation_drags(o, theta)
        else:
            lo_px, hi_px = (64, 128) if family == "lit" else (48, 112)
            new = S._move_target(g, o, objects[1:], width, height, min_px=lo_px, max_px=hi_px)
            if new is None:
                return None
            drags = [S._drag((o.cx, o.cy), (new.cx, new.cy), "move")]
        after[0] = new
    for d in drags:
        if d["handle"] == d["target"]:
            return None
    if kind is not None:
        extra.setdefault("kind", kind)
    latent, masks, shadows = compose_lit(background, objects, light, order_src)
    edited, masks_after, shadows_after = compose_lit(background, after, light, order_gt)
    mask_json = None
    if mask_in_json:
        if family == "articulated":          # the free segment and its shadow
            part = objects[0].free_part()
            region = mask_at(part, *pixel_grid(size, size)) | (cast_shadow(part, light, size, size) > SHADOW_THRESHOLD)
        else:
            region = masks[moved].any(0) | (shadows[moved].amax(0) > SHADOW_THRESHOLD)
        static = [j for j in range(len(objects)) if j not in moved]
        if static:
            region = region & ~masks[static].any(0)
        mask_json = {"rle": rle_encode(latent_mask_to_pixels(region))}
    doc = {"version": 1, "image_size": [width, height], "drags": drags, "mask": mask_json}
    return S.Scene(seed=int(seed), family=family, case=case, latent=latent, edited=edited,
                   background=background, objects=objects, objects_after=after, masks=masks,
                   masks_after=masks_after, moved=moved, drags=doc, light=light, shadows=shadows,
                   shadows_after=shadows_after, extra=extra)
