"""Training scenes for the toy models (dev tooling: the runtime keeps only what the toy nodes and
the benchmark need). Scene seeds are drawn in a range (≥ 10**8) that benchmarks never use."""
from __future__ import annotations

import torch

from fluxdrag.toyworld.scenes import (
    FAMILIES,
    NEW_FAMILIES,
    PALETTE_SIZE,
    PIXELS_PER_LATENT,
    V3_FAMILIES,
    SceneObject,
    _randint,
    _random_object,
    compose,
    make_scene,
    render_background,
)

#: families whose ground-truth edits are drawn as training latents half the time
EDIT_FAMILIES = NEW_FAMILIES + V3_FAMILIES


def sample_scene_latents(n: int, seed: int, families: tuple[str, ...] = ("single", "multi"),
                         size: int = 32, fix_frac: float = 0.0):
    """``n`` source latents (n, 16, H, W) and family indices into ``FAMILIES`` (n,) for training.

    Scene seeds are drawn from ``seed`` in a range (≥ 10**8) that benchmarks never use. The
    default families leave "textured_bg" out: the shipped model never saw it (a held-out family).
    For the later families (``EDIT_FAMILIES``) half the draws are the scene's ground-truth edit
    instead of its source, so the model also sees what an edit must produce (an object on top of
    another, an object cut by the border, a re-shaded object with its moved shadow, a revealed or
    hidden part, a bent limb); the first four families draw sources only, as before. A family
    listed twice in ``families`` is drawn twice as often.

    ``fix_frac`` > 0 also returns a third tensor, the *starts*: for that share of the v3
    ground-truth edits drawn, the naive copy of the same drag blended toward it (``fix_start``),
    elsewhere the latent itself (the consistency task of ``train.py --fix-frac``).
    """
    g = torch.Generator().manual_seed(int(seed))
    lat, fam, start = [], [], []
    g_fix = torch.Generator().manual_seed(int(seed) + 7)   # own stream: the latents do not depend on fix_frac
    for _ in range(n):
        f = families[_randint(g, 0, len(families) - 1)]
        use_edit = f in EDIT_FAMILIES and _randint(g, 0, 1) == 1
        while True:
            s = 10**8 + _randint(g, 0, 10**8)
            try:
                sc = make_scene(s, f, size=size, mask_in_json=fix_frac > 0)   # the copy needs the mask
                lat.append(sc.edited if use_edit else sc.latent)
                break
            except RuntimeError:   # no placement found for this seed: draw another
                continue
        fam.append(FAMILIES.index(f))
        if fix_frac > 0:
            fix = use_edit and f in V3_FAMILIES and float(torch.rand((), generator=g_fix)) < fix_frac
            start.append(fix_start(sc, g_fix) if fix else lat[-1])
    if fix_frac > 0:
        return torch.stack(lat), torch.tensor(fam), torch.stack(start)
    return torch.stack(lat), torch.tensor(fam)


def fix_start(sc, g: torch.Generator) -> torch.Tensor:
    """A start that is wrong where a copy is wrong: the naive ``cut_paste`` (or, one time in four,
    ``copy_paste``) of the scene's drag, blended toward the ground truth by a share in [0, 0.5):
    the object carries its old light, the old shadow stays and no new one falls, the hole is a
    smooth fill, the hidden part is missing, the limb is moved whole (docs/toyworld_v3.md)."""
    from .methods import copy_paste, cut_paste

    naive = copy_paste(sc) if float(torch.rand((), generator=g)) < 0.25 else cut_paste(sc)
    share = 0.5 * float(torch.rand((), generator=g))
    return naive + share * (sc.edited - naive)


def sample_small_latents(n: int, seed: int, size: int = 16) -> torch.Tensor:
    """``n`` small source scenes (n, 16, size, size) for multi-resolution training.

    One or two objects of the default scenes' pixel size (radius 18–30 px) on a smooth background
    in a ``size``·8-pixel image: many object pixels per token, cheap steps (64 tokens at 16×16).
    No drags, no edits. Seeds are drawn in the training range (≥ 10**8).
    """
    g = torch.Generator().manual_seed(int(seed) + 10**8)
    width = height = size * PIXELS_PER_LATENT
    out = []
    while len(out) < n:
        background = render_background(g, size, size)
        palette = torch.randperm(PALETTE_SIZE, generator=g)[: _randint(g, 1, 2)].tolist()
        objects: list[SceneObject] = []
        for k in palette:
            obj = _random_object(g, k, (18.0, 30.0), width, height, objects)
            if obj is not None:
                objects.append(obj)
        if objects:
            out.append(compose(background, objects)[0])
    return torch.stack(out)
