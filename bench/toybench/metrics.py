"""Edit-quality metrics against the toy world's ground truth (pure torch).

Per scene and edited latent (16, H, W). An object is *detected* by its palette signature
(``detect_objects``: the largest blob above half the signature amplitude); every metric compares the
edit with the ground-truth edit detected or measured the same way, so the ground truth scores
exactly 0 (IoU 1). Errors are RMS over channels and the named pixels, in model-space latent units
(an object's signature amplitude is 2.0). A dragged object that is not found in the edit counts as
not moved (its source detection).
  * ``md``: distance in tokens (16 px) between the dragged object's detected centre and its
    ground-truth centre, mean over dragged objects;
  * ``found``: share of dragged objects detected in the edit;
  * ``iou``: intersection over union of the dragged object's detected mask and its ground-truth
    mask (shape, size and place at once; a rounder, larger or fragmented object scores below 1);
  * ``orientation_deg`` (rotations only): |angle of the best-matching rotation of the source object
    at the detected place − the ground-truth rotation|, modulo the rotations that leave the
    rendered object unchanged (a flat square: 90°); no_edit scores the rotation angle;
  * ``scale_err`` (stretch / scale only): mean over the two image axes of |σ_edit / σ_gt − 1|, σ the
    (population) standard deviation of the detected mask's pixel coordinates along the axis;
  * ``residue``: share of the vacated area (source minus every object after) still showing a
    dragged object's signature (1 = the object left where it was, 0 = clean hole);
  * ``seam``: relative excess (E_edit − E_gt) / E_gt of the gradient energy (mean squared
    neighbour difference) over the background — every pixel at least one latent pixel away from
    any object, before or after. A box around the editable region, the rim of a filled hole or
    speckle all add to it; 0 = as smooth as the ground truth. (The scorer cannot know a method's
    own editable region, so the band is the whole background, not one region's border.)
  * ``bg_err``: outside the dragged objects' masks before and after (static objects included);
  * ``hole_err``: on the vacated area, where the ground truth shows background;
  * ``id_err``: on the dragged objects' masks after the edit: their appearance at the target vs the
    source object transformed (the ground truth).

The v3 families (``toyworld.scenes_v3``: lit scenes with cast shadows) add, each None where it
does not apply:
  * ``shadow`` (v3 families): RMS over the dragged objects' shadow areas before ∪ after (their
    cast shadow > 0.2 where no object covers it): a copy leaves the old shadow and carries it,
    with the old background under it, to the target;
  * ``shading`` (v3 families): RMS on the pixels where both the detected object and its
    ground-truth mask lie — appearance apart from shape (a copy carries the old light);
  * ``completion`` (occlusion): IoU of the dragged object's detected mask against its ground-truth
    mask, which for a revealed object is the whole object, hidden part included (1 = complete);
  * ``joint_deg`` (bend): |joint angle that best explains the edit − the ground truth's| in
    degrees: candidates are the source limb with its free segment at every joint angle (3° grid
    through the ground truth's angle, refined by 1°), scored by RMS against the edit over the
    candidate's mask ∪ the detected mask (not found: the source angle);
  * ``tip`` (bend): distance in tokens between the free end found in the edit and in the ground
    truth, the free end being the mean of the 4 detected-mask pixels off the (fixed) base segment
    (by its half width and a latent pixel) that lie farthest from the joint (``free_end``);
  * ``hole_err`` on textured backgrounds is as above: the vacated area must continue the texture.
For the v3 families ``bg_err`` also leaves out the dragged objects' shadow areas (they change).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from fluxdrag.toyworld.scenes import OBJECT_AMPLITUDE, PIXELS_PER_LATENT, Scene, detect_objects, pixel_grid, signature_map
from fluxdrag.toyworld.scenes_v3 import _seg_closest

TOKEN_PX = 16.0
METRIC_KEYS = ("md", "found", "iou", "orientation_deg", "scale_err", "residue", "seam",
               "bg_err", "hole_err", "id_err", "shadow", "shading", "completion", "joint_deg", "tip")
#: std of pixel coordinates over one latent pixel (8 px uniform): the spread floor of ``scale_error``
MIN_SPREAD = 8.0 / math.sqrt(12.0)


def _rms(diff: torch.Tensor, region: torch.Tensor) -> float:
    if not bool(region.any()):
        return float("nan")
    return float(diff[:, region].pow(2).mean().sqrt())


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean masks (1 when both are empty)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _dilate(mask: torch.Tensor, r: int = 1) -> torch.Tensor:
    m = mask.float()[None, None]
    return F.max_pool2d(m, 2 * r + 1, stride=1, padding=r)[0, 0] > 0


def gradient_energy(latent: torch.Tensor, region: torch.Tensor) -> float:
    """Mean over neighbour pairs (right, down) with both pixels in ``region`` of ‖x_p − x_q‖²."""
    dx = (latent[:, :, 1:] - latent[:, :, :-1]).pow(2).sum(0)
    dy = (latent[:, 1:, :] - latent[:, :-1, :]).pow(2).sum(0)
    mx = region[:, 1:] & region[:, :-1]
    my = region[1:, :] & region[:-1, :]
    n = int(mx.sum()) + int(my.sum())
    if n == 0:
        return float("nan")
    return (float(dx[mx].sum()) + float(dy[my].sum())) / n


def seam_energy(scene: Scene, edited: torch.Tensor) -> float:
    """(E_edit − E_gt) / E_gt of the gradient energy over the background band (see module doc)."""
    objects = torch.cat([scene.masks, scene.masks_after]).any(0)
    band = ~_dilate(objects, 1)
    e_gt = gradient_energy(scene.edited, band)
    e_ed = gradient_energy(edited, band)
    if math.isnan(e_gt) or e_gt <= 0:
        return float("nan")
    return (e_ed - e_gt) / e_gt


def _axis_std(mask: torch.Tensor) -> tuple[float, float]:
    x, y = pixel_grid(*mask.shape)
    xs, ys = x[mask], y[mask]
    if xs.numel() < 1:
        return (float("nan"), float("nan"))
    return float(xs.std(unbiased=False)), float(ys.std(unbiased=False))


def scale_error(edit_mask: torch.Tensor, gt_mask: torch.Tensor) -> float:
    """Mean over x and y of |σ_edit / σ_gt − 1| (σ: std of the mask's pixel coordinates).

    A mask one latent pixel wide along an axis has σ = 0 there; both spreads are floored at
    ``MIN_SPREAD`` (the spread of one latent pixel's own 8 px) so the ratio stays finite and the
    ground truth still scores 0 [ours]."""
    se, sg = _axis_std(edit_mask), _axis_std(gt_mask)
    return sum(abs(max(a, MIN_SPREAD) / max(b, MIN_SPREAD) - 1.0) for a, b in zip(se, sg)) / 2


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def _render_rms(scene: Scene, obj, edited: torch.Tensor, region: torch.Tensor) -> tuple[float, torch.Tensor]:
    lat, masks = scene.render([obj], shadows=False)
    reg = region | masks[0]
    return _rms(edited - lat, reg), masks[0]


def orientation_error(scene: Scene, i: int, edited: torch.Tensor, det_mask: torch.Tensor | None,
                      shift: tuple[float, float]) -> float:
    """Degrees between the rotation that best explains the edited object and the ground truth's.

    Candidates: the source object (shape, texture, scale) rotated by θ_gt + 3°·j (then ±2° by 1°
    around the best; the grid holds θ_gt, so the ground truth scores 0) about its ground-truth
    centre moved by ``shift`` (the detected offset), scored by RMS against the edit over the
    candidate's mask ∪ the detected mask. The error is taken modulo the rotations that leave
    the ground-truth rendering unchanged (RMS < 0.2·amplitude).
    """
    src, gt = scene.objects[i], scene.objects_after[i]
    theta_gt = math.degrees(gt.angle - src.angle)
    if det_mask is None:                                     # not found: not rotated
        return abs(_wrap(theta_gt))
    base = replace(gt, cx=gt.cx + shift[0], cy=gt.cy + shift[1])

    def score(theta: float) -> float:
        return _render_rms(scene, replace(base, angle=src.angle + math.radians(theta)), edited, det_mask)[0]

    def key(theta: float) -> tuple[float, float]:    # ties (a grid too coarse to tell) → nearest θ_gt
        return (round(score(theta), 6), abs(_wrap(theta - theta_gt)))

    coarse = min((theta_gt + d for d in range(-180, 180, 3)), key=key)
    best = min((coarse + d for d in range(-2, 3)), key=key)
    # rotational symmetries of the ground-truth rendering
    ref, ref_masks = scene.render([gt], shadows=False)
    ref_mask = ref_masks[0]
    sym = [0.0]
    for p in (90.0, 120.0, 180.0):
        lat, m = scene.render([replace(gt, angle=gt.angle + math.radians(p))], shadows=False)
        if _rms(lat - ref, m[0] | ref_mask) < 0.2 * OBJECT_AMPLITUDE:
            sym = [p * k for k in range(int(round(360 / p)))]
            break
    return min(abs(_wrap(best - theta_gt - s)) for s in sym)


def joint_error(scene: Scene, i: int, edited: torch.Tensor, det_mask: torch.Tensor | None) -> float:
    """Degrees between the joint angle that best explains the edited limb and the ground truth's
    (module doc); the candidates' base segment stays where it is."""
    src, gt = scene.objects[i], scene.objects_after[i]
    d_gt = math.degrees(gt.bend - src.bend)
    if det_mask is None:
        return abs(_wrap(d_gt))

    def key(d: float) -> tuple[float, float]:
        cand = replace(src, bend=src.bend + math.radians(d))
        return (round(_render_rms(scene, cand, edited, det_mask)[0], 6), abs(_wrap(d - d_gt)))

    coarse = min((d_gt + d for d in range(-180, 180, 3)), key=key)
    best = min((coarse + d for d in range(-2, 3)), key=key)
    return abs(_wrap(best - d_gt))


def free_end(mask: torch.Tensor, limb, k: int = 4) -> tuple[float, float]:
    """(x, y) px: the free end of ``limb``'s (the source's: its base segment stays) free segment
    in ``mask``: the mean of the ``k`` mask pixels farthest from the joint among those farther than
    the limb's half width and one latent pixel from the base segment; the joint when there are none
    (the free segment gone). Measured from the joint, not the base end: a bend past about 100° brings
    the free end nearer the base end than the joint's outer edge, and pixels there would pass for it.
    The latent pixel of margin keeps a stray cell at the base's rim from passing for the free end
    (found in review: one added border cell moved the tip by over a token on 322 of 1833 positions
    without it, 76 with it)."""
    x, y = pixel_grid(*mask.shape)
    jx, jy = limb.joint
    sel = mask & (_seg_closest(x, y, (limb.x0, limb.y0), limb.joint)[2] > limb.width + PIXELS_PER_LATENT)
    if not bool(sel.any()):
        return float(jx), float(jy)
    xs, ys = x[sel], y[sel]
    d = (xs - jx) ** 2 + (ys - jy) ** 2
    idx = torch.argsort(d, descending=True, stable=True)[:k]
    return float(xs[idx].mean()), float(ys[idx].mean())


def edit_metrics(scene: Scene, edited: torch.Tensor) -> dict[str, float | None]:
    """Metrics of one edited latent (16, H, W) against ``scene``'s ground truth (see module doc).
    ``orientation_deg`` is None unless the case rotates, ``scale_err`` None unless it scales."""
    edited = edited.detach().float().reshape(scene.latent.shape)
    diff = edited - scene.edited
    before = scene.masks[scene.moved].any(0)
    after = scene.masks_after[scene.moved].any(0)
    vac = scene.vacated
    dists, ious, orients, scales, found = [], [], [], [], 0
    joints, tips, shade_region = [], [], torch.zeros_like(vac)
    shows_object = torch.zeros_like(vac)
    for i in scene.moved:
        k = scene.objects[i].palette
        gt_det = detect_objects(scene.edited, k)
        det = detect_objects(edited, k)
        if det.centre is None:
            use = detect_objects(scene.latent, k)
        else:
            use = det
            found += 1
        (gx, gy), (cx, cy) = gt_det.centre, use.centre
        dists.append(math.hypot(cx - gx, cy - gy) / TOKEN_PX)
        ious.append(iou(use.mask, gt_det.mask))
        if scene.case == "rotate":
            orients.append(orientation_error(scene, i, edited, det.mask if det.centre else None,
                                             (cx - gx, cy - gy)))
        if scene.case in ("stretch", "scale"):
            scales.append(scale_error(use.mask, gt_det.mask))
        if scene.case == "bend":
            joints.append(joint_error(scene, i, edited, det.mask if det.centre else None))
            ex, ey = free_end(use.mask, scene.objects[i])
            gx_, gy_ = free_end(gt_det.mask, scene.objects[i])
            tips.append(math.hypot(ex - gx_, ey - gy_) / TOKEN_PX)
        shade_region |= use.mask & scene.masks_after[i]
        shows_object |= signature_map(edited, k) > 0.5 * OBJECT_AMPLITUDE
    n_vac = int(vac.sum())
    lit = scene.light is not None
    shadow_area = scene.moved_shadow_area()
    return {
        "md": sum(dists) / len(dists),
        "found": found / len(scene.moved),
        "iou": sum(ious) / len(ious),
        "orientation_deg": sum(orients) / len(orients) if orients else None,
        "scale_err": sum(scales) / len(scales) if scales else None,
        "residue": int((shows_object & vac).sum()) / n_vac if n_vac else float("nan"),
        "seam": seam_energy(scene, edited),
        "bg_err": _rms(diff, ~(before | after | shadow_area)),
        "hole_err": _rms(diff, vac),
        "id_err": _rms(diff, after),
        "shadow": _rms(diff, shadow_area) if lit else None,
        "shading": _rms(diff, shade_region) if lit else None,
        "completion": sum(ious) / len(ious) if scene.family == "occlusion" else None,
        "joint_deg": sum(joints) / len(joints) if joints else None,
        "tip": sum(tips) / len(tips) if tips else None,
    }


def mean_metrics(rows: list[dict]) -> dict[str, float | None]:
    """Mean of each metric over scenes, ignoring NaN and None (None when no scene has a value)."""
    out: dict[str, float | None] = {}
    for k in rows[0]:
        vals = [r[k] for r in rows if r.get(k) is not None and not math.isnan(r[k])]
        if vals:
            out[k] = sum(vals) / len(vals)
        else:
            out[k] = None if all(r.get(k) is None for r in rows) else float("nan")
    return out
