"""Edit methods scored by the toy-world benchmark: ``METHODS[name](scene, model, cond) -> latent``.

``scene`` is a ``scenes.Scene`` (use ``scene.latent`` and ``scene.drags`` only — the rest is ground
truth), ``model`` the toy ModelPatcher, ``cond`` its CONDITIONING; the result is the edited
model-space latent (16, H, W). Drag methods of the pack register themselves here with
``register(name, fn, needs_model=True)`` as they land; the baselines below ship with the bench:
  * ``no_edit``: the source, unchanged;
  * ``copy_paste``: the editable-region mask of the JSON, split into connected parts, each pasted
    translated by the mean handle→target displacement of its drags (rounded to latent pixels);
    the vacated area is left as is (still shows the source object) and rotation/scale are ignored;
  * ``cut_paste``: the same parts cut out along the mask and pasted translated the same way
    (no rotation or scaling), the hole left behind filled naively from the surrounding background
    (``fill_from_surroundings``: onion-peel averaging of known neighbours) — what a user gets in
    one step with no model;
  * ``ground_truth``: the exact edit (upper bound, sanity row);
  * ``inversion_roundtrip`` / ``inversion_roundtrip_50``: Euler inversion then Euler sampling on
    the toy model (20 / 50 steps, ComfyUI's shifted FLUX σ grid), no drag: how faithfully the
    model inverts with the first-order baseline; a faithful inversion scores like ``no_edit``;
  * ``fireflow_roundtrip`` / ``uni_inv_roundtrip``: the same with the pack's inversions through
    its nodes (20 steps; Uni-Inv is what the LazyDrag row inverts with, FireFlow DragFlow's).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fluxdrag.toyworld.model import euler_invert, euler_sample
from fluxdrag.toyworld.scenes import PIXELS_PER_LATENT, Scene, _components, rle_decode

METHODS: dict[str, Callable] = {}
NEEDS_MODEL: set[str] = set()


def register(name: str, fn: Callable, needs_model: bool = True) -> Callable:
    """Add a method to the benchmark (``needs_model`` False for model-free baselines)."""
    METHODS[name] = fn
    if needs_model:
        NEEDS_MODEL.add(name)
    else:
        NEEDS_MODEL.discard(name)
    return fn


def no_edit(scene: Scene, model=None, cond=None) -> torch.Tensor:
    return scene.latent.clone()


def ground_truth(scene: Scene, model=None, cond=None) -> torch.Tensor:
    return scene.edited.clone()


def _region_latent(drags: dict, h: int, w: int) -> torch.Tensor:
    """Editable-region mask at latent resolution (a latent pixel is in if its centre pixel is)."""
    if drags.get("mask") is None:
        raise ValueError("copy_paste needs the JSON's editable-region mask")
    px = rle_decode(drags["mask"]["rle"])
    c = PIXELS_PER_LATENT // 2
    return px[c::PIXELS_PER_LATENT, c::PIXELS_PER_LATENT][:h, :w]


def _parts_and_shifts(scene: Scene) -> tuple[torch.Tensor, list[tuple[list, int, int]]]:
    """The editable region (latent res) and, per connected part with drags, (pixels, dy, dx): the
    mean handle→target displacement of the drags nearest to it, rounded to latent pixels."""
    src = scene.latent
    h, w = src.shape[-2:]
    region = _region_latent(scene.drags, h, w)
    comps = _components(region)
    groups: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(comps))}
    cents = [torch.tensor(c, dtype=torch.float32).mean(0) for c in comps]      # (row, col)
    for d in scene.drags["drags"]:
        hr = d["handle"][1] / PIXELS_PER_LATENT - 0.5
        hc = d["handle"][0] / PIXELS_PER_LATENT - 0.5
        k = min(range(len(comps)), key=lambda i: float((cents[i] - torch.tensor([hr, hc])).norm()))
        groups[k].append((d["target"][0] - d["handle"][0], d["target"][1] - d["handle"][1]))
    parts = []
    for k, comp in enumerate(comps):
        if groups[k]:
            dx = round(sum(g[0] for g in groups[k]) / len(groups[k]) / PIXELS_PER_LATENT)
            dy = round(sum(g[1] for g in groups[k]) / len(groups[k]) / PIXELS_PER_LATENT)
            parts.append((comp, dy, dx))
    return region, parts


def _paste(out: torch.Tensor, src: torch.Tensor, parts) -> torch.Tensor:
    h, w = src.shape[-2:]
    for comp, dy, dx in parts:
        for r, c in comp:
            rr, cc = r + dy, c + dx
            if 0 <= rr < h and 0 <= cc < w:
                out[:, rr, cc] = src[:, r, c]
    return out


def copy_paste(scene: Scene, model=None, cond=None) -> torch.Tensor:
    _, parts = _parts_and_shifts(scene)
    return _paste(scene.latent.clone(), scene.latent, parts)


def fill_from_surroundings(latent: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Fill ``hole`` (H, W) from outside in: each round, every hole pixel with known 8-neighbours
    takes their mean and becomes known (a naive inpainting; no model, no texture synthesis)."""
    x = latent.clone()
    known = ~hole.clone()
    if not bool(known.any()):
        return x
    kernel = torch.ones(1, 1, 3, 3)
    while not bool(known.all()):
        k = known.float()[None, None]
        cnt = F.conv2d(k, kernel, padding=1)[0, 0]
        s = F.conv2d((x * known.float())[:, None], kernel, padding=1)[:, 0]
        front = ~known & (cnt > 0)
        x[:, front] = s[:, front] / cnt[front]
        known = known | front
    return x


def cut_paste(scene: Scene, model=None, cond=None) -> torch.Tensor:
    region, parts = _parts_and_shifts(scene)
    filled = fill_from_surroundings(scene.latent, region)
    return _paste(filled, scene.latent, parts)


def inversion_roundtrip(scene: Scene, model, cond, steps: int = 20) -> torch.Tensor:
    dm = model.model.diffusion_model
    noise = euler_invert(dm, scene.latent[None], cond, steps)
    return euler_sample(dm, noise, cond, steps)[0]


def inversion_roundtrip_50(scene: Scene, model, cond) -> torch.Tensor:
    return inversion_roundtrip(scene, model, cond, steps=50)


def _pack_roundtrip(scene: Scene, model, cond, solver: str, steps: int = 20) -> torch.Tensor:
    from fluxdrag.pipelines import inversion as inv
    from fluxdrag.toyworld.model import scene_latent_to_comfy

    g = float(cond[0][1].get("guidance", 3.5))
    rec = inv.run_inversion(model, scene_latent_to_comfy(scene.latent), cond, steps=steps,
                            solver=solver, guidance=g)
    return inv.run_sampling(model, rec, cond)[0]


def fireflow_roundtrip(scene: Scene, model, cond) -> torch.Tensor:
    return _pack_roundtrip(scene, model, cond, "fireflow")


def uni_inv_roundtrip(scene: Scene, model, cond) -> torch.Tensor:
    return _pack_roundtrip(scene, model, cond, "uni_inv")


register("no_edit", no_edit, needs_model=False)
register("copy_paste", copy_paste, needs_model=False)
register("cut_paste", cut_paste, needs_model=False)
register("inversion_roundtrip", inversion_roundtrip, needs_model=True)
register("inversion_roundtrip_50", inversion_roundtrip_50, needs_model=True)
register("fireflow_roundtrip", fireflow_roundtrip, needs_model=True)
register("uni_inv_roundtrip", uni_inv_roundtrip, needs_model=True)
register("ground_truth", ground_truth, needs_model=False)
