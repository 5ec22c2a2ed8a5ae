"""Edit-quality metrics against the toy world's ground truth (pure torch).

Per scene and edited latent (16, H, W), all errors are RMS over channels and the named pixels, in
model-space latent units (an object's signature amplitude is 2.0):
  * ``md``: mean over dragged objects of the distance, in tokens (16 px), between the object's
    centre detected in the edit by its signature and its centre detected the same way in the
    ground truth (so the detector's pixel-grid bias cancels and the GT row is exactly 0); an
    object that is not found counts as not moved (its source centre) and lowers ``found``;
  * ``bg_err``: outside the dragged objects' masks before and after (static objects included);
  * ``hole_err``: on the vacated area (source minus every object after), where GT shows background;
  * ``id_err``: on the dragged objects' masks after the edit: their appearance at the target vs the
    source object transformed (the GT).
"""
from __future__ import annotations

import math

import torch

from ...toyworld.scenes import Scene, detect_objects

TOKEN_PX = 16.0


def _rms(diff: torch.Tensor, region: torch.Tensor) -> float:
    if not bool(region.any()):
        return float("nan")
    return float(diff[:, region].pow(2).mean().sqrt())


def edit_metrics(scene: Scene, edited: torch.Tensor) -> dict[str, float]:
    """Metrics of one edited latent (16, H, W) against ``scene``'s ground truth."""
    edited = edited.detach().float().reshape(scene.latent.shape)
    diff = edited - scene.edited
    before = scene.masks[scene.moved].any(0)
    after = scene.masks_after[scene.moved].any(0)
    dists, found = [], 0
    for i in scene.moved:
        k = scene.objects[i].palette
        gx, gy = detect_objects(scene.edited, k).centre
        det = detect_objects(edited, k)
        cx, cy = det.centre if det.centre is not None else detect_objects(scene.latent, k).centre
        found += det.centre is not None
        dists.append(math.hypot(cx - gx, cy - gy) / TOKEN_PX)
    return {
        "md": sum(dists) / len(dists),
        "found": found / len(scene.moved),
        "bg_err": _rms(diff, ~(before | after)),
        "hole_err": _rms(diff, scene.vacated),
        "id_err": _rms(diff, after),
    }


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over scenes, ignoring NaN (e.g. no vacated area)."""
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows if not math.isnan(r[k])]
        out[k] = sum(vals) / len(vals) if vals else float("nan")
    return out
