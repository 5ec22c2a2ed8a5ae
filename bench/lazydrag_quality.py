"""LazyDrag edit quality on the toy world (issue 18): the artefact metrics next to the bench's own.

    python -m bench.lazydrag_quality [--seed 0] [--n 12] [--steps 20] [--set key=value ...]

Runs the LazyDrag row of the toy-world benchmark (``bench/toybench/pack_methods.lazydrag``, the
real nodes) on the seed's fixed scenes and prints, per case and overall, the benchmark metrics
(MD, BG, hole, ID error) plus the ones issue 18 targets, defined here (pure torch, latent pixels;
an object's signature amplitude A = 2.0):

* ``iou``: shape IoU per dragged object — the largest blob of its signature in the edit
  (``detect_objects``) against its ground-truth mask after the edit;
* ``orient``: orientation error in degrees on ``rotate`` scenes — the rotation of the source
  object's signature template about its centre that best matches the edit (grid search, 1°),
  minus the same for the ground truth, modulo the shape's symmetry (square 90°, triangle 120°,
  bar 180°);
* ``residue``: the benchmark's source residue (``bench/toybench/metrics.py``) — the share of the
  vacated pixels (source object minus every object after) where the dragged object's signature is
  still above A/2, every vacated pixel counted (the issue's target); ``residue_far`` (a
  diagnostic, not the target) counts only vacated pixels that do not touch (8-neighbourhood) an
  object after the edit: fragments left behind, not the one-pixel slivers where a rotated outline
  is rasterised a pixel off;
* ``seam_ratio`` (a diagnostic; ``seam`` is the benchmark's relative excess over the whole
  background): seam energy ratio — mean squared step between 4-adjacent latent pixels that straddle
  the outline of the object masks (before ∪ after) grown to the token grid by 0, 1 and 2 tokens
  (where an editing method's region boundary lies), only pairs with both pixels at least one
  latent pixel away from every object before and after (so an object's outline drawn a pixel off
  is not a seam), divided by the same on the ground truth (1.0 = no seam; a tinted box raises it);
* ``bg_far``: the benchmark's BG error restricted to pixels at least one latent pixel away from
  every object before and after (the background itself, without the outline pixels where a
  rotated or stretched object is rasterised a pixel off the ground truth);
* ``cut_hole``: hole error of a naive cut-and-paste, for comparison: the editable mask is cut
  out and filled with the mean of the one-pixel background ring around it, then its source
  pixels are pasted back translated by the mean drag of their part, as ``copy_paste`` does
  (rotation and scale ignored).

``--set key=value`` passes options to the LazyDrag row (e.g. ``--set background_lock=0``).
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from fluxdrag.toyworld.scenes import (
    OBJECT_AMPLITUDE,
    Scene,
    detect_objects,
    signature_map,
)

from .toybench.methods import copy_paste
from .toybench.metrics import edit_metrics

SYMMETRY_DEG = {"square": 90.0, "triangle": 120.0, "bar": 180.0, "disc": 360.0, "ring": 360.0}


def shape_iou(scene: Scene, edited: torch.Tensor) -> float:
    """Mean over dragged objects of IoU(detected blob, ground-truth mask after)."""
    out = []
    for i in scene.moved:
        det = detect_objects(edited, scene.objects[i].palette).mask
        gt = scene.masks_after[i]
        u = (det | gt).sum()
        out.append(float((det & gt).sum() / u) if u else 1.0)
    return sum(out) / len(out)


def _best_angle(scene: Scene, latent: torch.Tensor, i: int, span: float = 90.0) -> float:
    """Rotation (deg, image y down: positive = clockwise on screen) of object i's source template
    that best matches ``latent`` around the object's detected centre there."""
    k = scene.objects[i].palette
    src = signature_map(scene.latent, k).clamp(0, OBJECT_AMPLITUDE) * scene.masks[i]
    det = detect_objects(latent, k)
    if det.centre is None:
        return float("nan")
    tgt = signature_map(latent, k).clamp(0, OBJECT_AMPLITUDE)
    H, W = src.shape
    o = scene.objects[i]
    # source centre / target centre in latent pixel coordinates (pixel centres at 8c+4)
    sx, sy = (o.cx - 4) / 8, (o.cy - 4) / 8
    tx, ty = (det.centre[0] - 4) / 8, (det.centre[1] - 4) / 8
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    best, best_a = -1e9, 0.0
    for a in torch.arange(-span, span + 0.5, 1.0).tolist():
        c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
        dx, dy = xs - tx, ys - ty           # target pixel relative to the target centre
        ux = c * dx + s * dy + sx           # inverse rotation -> source pixel
        uy = -s * dx + c * dy + sy
        grid = torch.stack([ux / (W - 1) * 2 - 1, uy / (H - 1) * 2 - 1], -1)[None]
        rot = F.grid_sample(src[None, None], grid, align_corners=True)[0, 0]
        score = float((rot * tgt).sum())
        if score > best:
            best, best_a = score, a
    return best_a


def orientation_error(scene: Scene, edited: torch.Tensor) -> float:
    """Degrees between the edit's and the ground truth's best-matching rotation (rotate scenes)."""
    i = scene.moved[0]
    period = SYMMETRY_DEG[scene.objects[i].shape]
    a_gt = _best_angle(scene, scene.edited, i)
    a_ed = _best_angle(scene, edited, i)
    if math.isnan(a_ed):
        return 90.0
    d = (a_ed - a_gt) % period
    return min(d, period - d)


def source_residue(scene: Scene, edited: torch.Tensor, outline: bool = False) -> float:
    """Share of the vacated pixels still showing a dragged object (see module doc); ``outline``
    True counts the vacated pixels next to an object after the edit too."""
    vac = scene.vacated
    if not outline:
        after = scene.masks_after.any(0).float()[None, None]
        vac = vac & ~F.max_pool2d(after, 3, 1, 1)[0, 0].bool()
    if not bool(vac.any()):
        return float("nan")
    hit = torch.zeros_like(vac)
    for i in scene.moved:
        hit |= signature_map(edited, scene.objects[i].palette) > 0.5 * OBJECT_AMPLITUDE
    return float((hit & vac).sum() / vac.sum())


def _token_grow(mask: torch.Tensor, tokens: int) -> torch.Tensor:
    """Latent-pixel mask grown to the 2x2 token grid ("any"), then by ``tokens`` tokens."""
    H, W = mask.shape
    t = mask.reshape(H // 2, 2, W // 2, 2).any(3).any(1).float()
    if tokens:
        t = F.max_pool2d(t[None, None], 2 * tokens + 1, 1, tokens)[0, 0]
    return t.bool().repeat_interleave(2, 0).repeat_interleave(2, 1)


def _seam_pairs(scene: Scene) -> list[tuple[torch.Tensor, int]]:
    objs = scene.masks.any(0) | scene.masks_after.any(0)
    free = ~F.max_pool2d(objs.float()[None, None], 3, 1, 1)[0, 0].bool()
    out = []
    for k in (0, 1, 2):
        g = _token_grow(scene.masks[scene.moved].any(0) | scene.masks_after[scene.moved].any(0), k)
        for dim in (0, 1):
            a = g.narrow(dim, 0, g.shape[dim] - 1)
            b = g.narrow(dim, 1, g.shape[dim] - 1)
            fa = free.narrow(dim, 0, g.shape[dim] - 1)
            fb = free.narrow(dim, 1, g.shape[dim] - 1)
            out.append(((a != b) & fa & fb, dim))
    return out


def seam_energy(scene: Scene, latent: torch.Tensor) -> float:
    """Mean squared neighbour step across the token-grid outlines (see module doc)."""
    tot, n = 0.0, 0
    for sel, dim in _seam_pairs(scene):
        d = latent.narrow(dim + 1, 1, latent.shape[dim + 1] - 1) - latent.narrow(
            dim + 1, 0, latent.shape[dim + 1] - 1)
        e = d.pow(2).sum(0)
        tot += float(e[sel].sum())
        n += int(sel.sum())
    return tot / max(n, 1)


def cut_paste(scene: Scene, model=None, cond=None) -> torch.Tensor:
    """Naive cut-and-paste (see module doc): cut the editable mask, fill it with the mean of the
    background ring around it, paste each part's pixels translated by the mean drag of the drags
    whose handle is nearest that part (as ``copy_paste`` groups them)."""
    from fluxdrag.toyworld.scenes import PIXELS_PER_LATENT, _components

    from .toybench.methods import _region_latent

    src = scene.latent
    H, W = src.shape[-2:]
    region = _region_latent(scene.drags, H, W)
    ring = F.max_pool2d(region.float()[None, None], 3, 1, 1)[0, 0].bool() & ~region
    fill = src[:, ring].mean(1) if bool(ring.any()) else src.mean((1, 2))
    out = src.clone()
    out[:, region] = fill[:, None]
    comps = _components(region)
    cents = [torch.tensor(c, dtype=torch.float32).mean(0) for c in comps]      # (row, col)
    groups: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(comps))}
    for d in scene.drags["drags"]:
        hr = d["handle"][1] / PIXELS_PER_LATENT - 0.5
        hc = d["handle"][0] / PIXELS_PER_LATENT - 0.5
        k = min(range(len(comps)), key=lambda i: float((cents[i] - torch.tensor([hr, hc])).norm()))
        groups[k].append((d["target"][0] - d["handle"][0], d["target"][1] - d["handle"][1]))
    for k, comp in enumerate(comps):
        g = groups[k] or [(0.0, 0.0)]
        dx = round(sum(v[0] for v in g) / len(g) / PIXELS_PER_LATENT)
        dy = round(sum(v[1] for v in g) / len(g) / PIXELS_PER_LATENT)
        for r, c in comp:
            if 0 <= r + dy < H and 0 <= c + dx < W:
                out[:, r + dy, c + dx] = src[:, r, c]
    return out


def quality(scene: Scene, edited: torch.Tensor) -> dict[str, float]:
    edited = edited.detach().float().reshape(scene.latent.shape)
    r = edit_metrics(scene, edited)
    r["iou"] = shape_iou(scene, edited)
    objs = (scene.masks.any(0) | scene.masks_after.any(0)).float()[None, None]
    far = ~F.max_pool2d(objs, 3, 1, 1)[0, 0].bool()
    r["bg_far"] = float((edited - scene.edited)[:, far].pow(2).mean().sqrt())
    r["orient"] = orientation_error(scene, edited) if scene.case == "rotate" else float("nan")
    r["residue_far"] = source_residue(scene, edited)
    gt = seam_energy(scene, scene.edited)
    r["seam_ratio"] = seam_energy(scene, edited) / gt if gt > 0 else float("nan")
    return r


def _mean(rows, k):
    v = [r[k] for r in rows if not math.isnan(r[k])]
    return sum(v) / len(v) if v else float("nan")


KEYS = ("md", "iou", "orient", "residue", "residue_far", "seam", "seam_ratio", "bg_err", "bg_far",
        "hole_err", "id_err", "cp_id", "cut_hole")


def run(seed: int, n: int, opts: dict, families=("single", "multi", "textured_bg"), verbose=False):
    from fluxdrag.toyworld.model import load_toy_model

    from .toybench import pack_methods
    from .toybench.run import benchmark_scenes

    model, cond = load_toy_model()
    scenes = benchmark_scenes(seed, n, list(families))
    rows = []
    t0 = time.perf_counter()
    for sc in scenes:
        with torch.inference_mode():
            ed = pack_methods.lazydrag(sc, model, cond, **opts)
        r = quality(sc, ed)
        r["case"] = sc.case
        r["cp_id"] = edit_metrics(sc, copy_paste(sc))["id_err"]
        r["cut_hole"] = edit_metrics(sc, cut_paste(sc))["hole_err"]
        rows.append(r)
        if verbose:
            print(sc.family, sc.case, {k: round(r[k], 3) for k in KEYS})
    dt = (time.perf_counter() - t0) / len(scenes)
    summary = {"all": {k: _mean(rows, k) for k in KEYS}}
    for c in sorted({r["case"] for r in rows}):
        summary[c] = {k: _mean([r for r in rows if r["case"] == c], k) for k in KEYS}
    return summary, dt, rows


def main(argv=None) -> int:
    from tools.comfy_env import import_comfy

    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("-v", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    import_comfy()
    opts = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    summary, dt, _ = run(a.seed, a.n, opts, verbose=a.v)
    print(f"seed {a.seed}, {a.n} scenes, {dt:.2f} s/edit, opts {opts}")
    print("case       " + " ".join(f"{k:>9}" for k in KEYS))
    for c, s in summary.items():
        print(f"{c:10} " + " ".join(f"{s[k]:9.3f}" for k in KEYS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
