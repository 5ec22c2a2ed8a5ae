"""Where ContextDrag's background error lies (issue 28): per-pixel error split by region.

``python -m bench.toybench.contextdrag_diagnosis --seed 303 --n 24 [--cases move multi_move]
[--families ...] --variants '{"default": {}, "no_lock": {"background_lock": 0}}'``

Each variant is ContextDrag (``pack_methods.contextdrag``) with ContextDragSettings fields
overridden (``"cti": false`` / ``"pca": false`` drop a patch); ``cut_paste`` is the baseline. Besides
MD, found, IoU, BG, hole (``metrics.edit_metrics``) and the lit family's shading / shadow, the
background error (outside the moved objects and their shadows) is split into: inside the
destination tokens (``in_dst``), inside the vacated tokens (``in_vac``), within two latent pixels
of the objects outside those tokens (``ring``) and farther (``far``: the drift of the canvas).
"""
from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F

KEYS = ("md", "found", "iou", "bg_err", "hole_err", "shading", "shadow")


def _dilate(m: torch.Tensor, r: int) -> torch.Tensor:
    return F.max_pool2d(m.float()[None, None], 2 * r + 1, stride=1, padding=r)[0, 0] > 0


def _rms(d: torch.Tensor, region: torch.Tensor) -> float:
    return float(d[:, region].pow(2).mean().sqrt()) if bool(region.any()) else float("nan")


def split(scene, out: torch.Tensor) -> dict:
    """The metrics of one edit and its background error by region (see the module doc)."""
    from fluxdrag.pipelines.contextdrag import build_map
    from fluxdrag.toyworld.model import scene_latent_to_comfy

    from .metrics import edit_metrics

    m = edit_metrics(scene, out)
    row = {k: (float("nan") if m[k] is None else m[k]) for k in KEYS}
    before, after = scene.masks[scene.moved].any(0), scene.masks_after[scene.moved].any(0)
    bg = ~(before | after | scene.moved_shadow_area())
    rm = build_map(scene.drags, scene_latent_to_comfy(scene.latent)["samples"])
    h, w = bg.shape

    def up(t):
        return t.repeat_interleave(2, 0).repeat_interleave(2, 1)[:h, :w]

    dst, src = up(rm.dst_mask), up(rm.src_mask)
    near = _dilate(before | after, 2)
    d = out - scene.edited
    row.update(in_dst=_rms(d, bg & dst), in_vac=_rms(d, bg & src & ~dst), ring=_rms(d, bg & near & ~dst & ~src),
               far=_rms(d, bg & ~near & ~dst & ~src))
    return row


def main(argv: list[str] | None = None) -> int:
    from bench.toybench.run import DEFAULT_FAMILIES, benchmark_scenes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--cases", nargs="*", default=["move", "multi_move"])
    p.add_argument("--families", nargs="*", default=DEFAULT_FAMILIES)
    p.add_argument("--variants", default='{"default": {}, "cut_paste": {}}')
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from tools.comfy_env import import_comfy

    import_comfy()
    from . import pack_methods
    from .methods import cut_paste

    variants = json.loads(args.variants)
    scenes = [s for s in benchmark_scenes(args.seed, args.n, args.families) if s.case in args.cases]
    rows: dict[str, list[dict]] = {k: [] for k in variants}
    for sc in scenes:
        for name, opts in variants.items():
            out = cut_paste(sc) if name == "cut_paste" else pack_methods.contextdrag(sc, None, None, **opts)
            r = split(sc, out)
            rows[name].append(r)
            print(f"{sc.family}/{sc.case} {name}: " + " ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
    print(f"\nmeans over {len(scenes)} scenes (seed {args.seed}, cases {' '.join(args.cases)}):")
    for name, rs in rows.items():
        means = {k: [r[k] for r in rs if not math.isnan(r[k])] for k in rs[0]}
        print(f"{name}: " + " ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in means.items() if v))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
