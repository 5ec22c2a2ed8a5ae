"""LazyDrag on the toy world v3 (issue 26): the issue's targets per family, the regression bounds,
and how much the toy generator can do at all.

    python -m bench.toybench.lazydrag_v3 --seed S [--n 16]             # targets table
    python -m bench.toybench.lazydrag_v3 --seed S --calibrate          # regression bounds (Python)
    python -m bench.toybench.lazydrag_v3 --seed S --headroom           # the generator's headroom

The scenes are ``run.py``'s benchmark set of seed S over the v3 families (``benchmark_scenes``),
scored with its metrics; ``cut_paste`` / ``copy_paste`` are the baselines of the same run. The
model is ``fluxdrag/toyworld/toyflux_v3.safetensors`` unless ``--model`` names another (the checkpoint may
be replaced by a newer one: rerun ``--calibrate`` on the calibration seed and copy its output into
``tests/test_tier2_lazydrag_v3.py``). ``--set name=value`` overrides LazyDrag settings fields.

``--headroom`` asks what *any* LazyDrag setting could reach where a copy is wrong: with the exact
ground truth kept outside the edit (the best a background lock can do), the dragged object, its
shadow and the vacated area start from cut-and-paste re-noised to σ₀ (fresh noise) and the toy
model samples them back (Euler, 20 steps). A generator that re-shades, re-shadows, completes and
continues textures lowers ``shading``, ``shadow``, ``hole`` and raises ``completion`` as σ₀ grows.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

FAMILIES = ("lit", "texture", "occlusion", "articulated")
V3_MODEL = Path(__file__).resolve().parents[2] / "fluxdrag" / "toyworld" / "toyflux_v3.safetensors"
BASELINES = ("no_edit", "copy_paste", "cut_paste")
#: what each family's regression test bounds: (metric, "max" | "min")
BOUNDED = {
    "lit": (("shading", "max"), ("shadow", "max"), ("md", "max"), ("iou", "min"), ("bg_err", "max"),
            ("id_err", "max")),
    "texture": (("hole_err", "max"), ("md", "max"), ("iou", "min"), ("bg_err", "max"), ("id_err", "max")),
    "occlusion": (("completion", "min"), ("md", "max"), ("bg_err", "max"), ("id_err", "max"), ("hole_err", "max")),
    "articulated": (("joint_deg", "max"), ("tip", "max"), ("iou", "min"), ("bg_err", "max"),
                    ("id_err", "max"), ("seam", "max")),
}
#: a regression bound = the calibration seed's mean ± SPREAD standard errors of the difference
#: of two seeds' means (√2·sd/√n, sd over the family's scenes) ± RELATIVE of the mean ± an
#: absolute slack (ABS; degrees: DEG_SLACK): scene-to-scene spread on 4–6 scenes a family is
#: larger than any margin on the mean alone
SPREAD, RELATIVE, ABS, DEG_SLACK = 3.0, 0.1, 0.01, 2.0


def scenes(seed: int, n: int, families=FAMILIES) -> list:
    from .run import benchmark_scenes

    return benchmark_scenes(seed, n, list(families))


def measure(model, cond, scene_list, methods, **settings) -> dict[str, dict[str, dict]]:
    """family → method → mean metrics (``edit_metrics``), each with ``"_sd"``: metric → standard
    deviation over the family's scenes and ``"_n"`` scenes; ``methods`` are registered names or
    "lazydrag" (with ``settings`` as LazyDragSettings overrides)."""
    from . import pack_methods
    from .methods import METHODS
    from .metrics import edit_metrics

    rows: dict[str, dict[str, list]] = {}
    for m in methods:
        for sc in scene_list:
            with torch.inference_mode():
                if m == "lazydrag":
                    out = pack_methods.lazydrag(sc, model, cond, **settings)
                else:
                    out = METHODS[m](sc, model, cond)
            r = edit_metrics(sc, out.float().reshape(sc.latent.shape))
            rows.setdefault(sc.family, {}).setdefault(m, []).append(r)
    return {f: {m: _summary(rs) for m, rs in per.items()} for f, per in rows.items()}


def _summary(rows: list[dict]) -> dict:
    from .metrics import mean_metrics

    out = mean_metrics(rows)
    sd = {}
    for k, mean in out.items():
        vals = [r[k] for r in rows if r.get(k) is not None and not math.isnan(r[k])]
        if vals and mean is not None and not math.isnan(mean):
            sd[k] = (sum((v - mean) ** 2 for v in vals) / max(len(vals) - 1, 1)) ** 0.5
    out["_sd"], out["_n"] = sd, len(rows)
    return out


def bounds(measured: dict[str, dict]) -> dict[str, dict[str, tuple[str, float]]]:
    """The regression bounds from one calibration run (``measured[family]["lazydrag"]``)."""
    out = {}
    for fam, keys in BOUNDED.items():
        if fam not in measured:
            continue
        got = measured[fam]["lazydrag"]
        b = {}
        for k, how in keys:
            v = got.get(k)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            margin = SPREAD * math.sqrt(2.0 / got["_n"]) * got["_sd"].get(k, 0.0) + RELATIVE * abs(v) \
                + (DEG_SLACK if k == "joint_deg" else ABS)
            b[k] = (how, round(v + margin if how == "max" else max(v - margin, 0.0), 3))
        out[fam] = b
    return out


def violations(metrics: dict, family_bounds: dict[str, tuple[str, float]]) -> list[str]:
    """The bounds a run's family means break (a missing or NaN metric breaks its bound)."""
    bad = []
    for k, (how, lim) in family_bounds.items():
        v = metrics.get(k)
        if v is None or math.isnan(v) or (v > lim if how == "max" else v < lim):
            bad.append(f"{k} {v} ({how} {lim})")
    return bad


def target_lines(measured: dict[str, dict]) -> list[str]:
    """The issue's targets, one line per family: value, target, met."""
    lines = []

    def check(fam, name, v, ok, target):
        lines.append(f"{fam:12s} {name:18s} {v:8.3f}  target {target:18s} {'met' if ok else 'MISSED'}")

    for fam, per in measured.items():
        ld, cut, copy = per["lazydrag"], per.get("cut_paste", {}), per.get("copy_paste", {})
        if fam == "lit":
            for k in ("shading", "shadow"):
                check(fam, f"{k}/cut", ld[k] / cut[k], ld[k] <= 0.5 * cut[k], "≤ 0.5")
        if fam == "texture":
            check(fam, "hole/cut", ld["hole_err"] / cut["hole_err"], ld["hole_err"] <= 0.6 * cut["hole_err"],
                  "≤ 0.6")
        if fam == "occlusion":
            check(fam, "completion", ld["completion"], ld["completion"] >= 0.85, "≥ 0.85")
        if fam == "articulated":
            check(fam, "joint_deg", ld["joint_deg"], ld["joint_deg"] <= 10, "≤ 10")
            check(fam, "tip", ld["tip"], ld["tip"] <= 0.5, "≤ 0.5")
        check(fam, "MD", ld["md"], ld["md"] <= 0.5, "≤ 0.5")
        check(fam, "IoU", ld["iou"], ld["iou"] >= 0.8, "≥ 0.8")
        check(fam, "|seam|", abs(ld["seam"]), abs(ld["seam"]) <= 0.1, "≤ 0.1")
        check(fam, "BG", ld["bg_err"], ld["bg_err"] <= 0.02, "≤ 0.02")
        if copy:
            check(fam, "ID (copy)", ld["id_err"], ld["id_err"] < copy["id_err"] - 1e-4,
                  f"< {copy['id_err']:.3f}")
    return lines


def headroom(model, cond, scene_list, sigmas=(0.0, 0.4, 0.6, 0.8, 1.0), steps: int = 20) -> dict:
    """σ₀ → family → mean metrics of the oracle-background regeneration (module doc)."""
    from fluxdrag.toyworld.model import flux_sigmas, velocity

    from .methods import cut_paste
    from .metrics import edit_metrics, mean_metrics

    dm = model.model.diffusion_model
    sig = flux_sigmas(steps)
    out: dict = {}
    for s0 in sigmas:
        rows: dict[str, list] = {}
        for sc in scene_list:
            start = cut_paste(sc)
            gt = sc.edited
            free = (sc.masks[sc.moved].any(0) | sc.masks_after[sc.moved].any(0) | sc.moved_shadow_area()
                    | sc.vacated)
            g = torch.Generator().manual_seed(sc.seed)
            eps = torch.randn(sc.latent.shape, generator=g)
            i0 = int((sig >= s0).sum()) - 1 if s0 > 0 else steps
            x = (1 - sig[i0]) * start + sig[i0] * eps
            with torch.inference_mode():
                for i in range(i0, steps):
                    x = x + (sig[i + 1] - sig[i]) * velocity(dm, x[None], float(sig[i]), cond)[0]
                    x = torch.where(free, x, (1 - sig[i + 1]) * gt + sig[i + 1] * eps)
            rows.setdefault(sc.family, []).append(edit_metrics(sc, x))
        out[s0] = {f: mean_metrics(rs) for f, rs in rows.items()}
    return out


def load(model_path: str | Path | None = None):
    from fluxdrag.toyworld.model import load_toy_model
    from tools.comfy_env import import_comfy

    import_comfy()
    return load_toy_model(Path(model_path or V3_MODEL))


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--n", type=int, default=16, help="scenes (families cycled)")
    p.add_argument("--families", nargs="*", default=list(FAMILIES))
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], help="LazyDrag settings overrides, name=value")
    p.add_argument("--calibrate", action="store_true", help="print the regression bounds")
    p.add_argument("--headroom", action="store_true", help="the oracle-background regeneration")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, cond = load(args.model)
    sc = scenes(args.seed, args.n, args.families)
    if args.headroom:
        res = headroom(model, cond, sc)
        keys = ("shading", "shadow", "hole_err", "completion", "id_err", "iou")
        for s0, per in res.items():
            for fam, r in per.items():
                print(f"σ0 {s0:.1f} {fam:12s} " + " ".join(
                    f"{k} {r[k]:.3f}" for k in keys if r.get(k) is not None), flush=True)
        return 0
    opts = dict(kv.split("=", 1) for kv in args.set)
    opts = {k: _value(v) for k, v in opts.items()}
    methods = ["lazydrag"] + ([] if args.calibrate else ["copy_paste", "cut_paste"])
    measured = measure(model, cond, sc, methods, **opts)
    for fam, per in measured.items():
        for m, r in per.items():
            print(f"{fam:12s} {m:11s} " + " ".join(
                f"{k} {r[k]:.3f}" for k in ("md", "iou", "seam", "bg_err", "id_err", "hole_err", "shadow",
                                             "shading", "completion", "joint_deg", "tip")
                if r.get(k) is not None), flush=True)
    if args.calibrate:
        print(f"# python -m bench.toybench.lazydrag_v3 --seed {args.seed} --n {args.n} --calibrate")
        print("BOUNDS = {")
        for fam, b in bounds(measured).items():
            print(f"    {fam!r}: {{" + ", ".join(f"{k!r}: ({h!r}, {v})" for k, (h, v) in b.items()) + "},")
        print("}")
    else:
        print()
        print("\n".join(target_lines(measured)))
    if args.json:
        Path(args.json).write_text(json.dumps(measured, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
