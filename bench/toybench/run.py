"""Toy-world drag benchmark: every registered method on N seeded scenes, scored against ground truth.

``python -m bench.toybench.run --seed N [--n 30] [--methods no_edit cut_paste ...] [--json FILE]``

Scene i uses ``make_scene(1000·N + i, family, case)`` with families and cases cycled
(``FAMILY_CASES``), so a seed is a fixed, reproducible test set; training used scene seeds ≥ 10**8
only, and never the family "textured_bg". Prints every method × metric (see ``metrics``) overall,
per case and per family, writes ``docs/toyworld_results.md`` and ``docs/toyworld_grid.png``
(source with drags, each method, ground truth; one row per family) and, with ``--json``, the
same rows machine-readably (``json_report``). With the model it also measures, per family, how
well the model reconstructs the family's sources and ground-truth edits (round trip and one-step denoising;
a family whose edits it cannot denoise is reported but left out of the "all" aggregates),
and the inversion round-trip table per solver × steps × scheduler (``roundtrip``). Methods
needing the model are skipped with a note when ComfyUI or the weights are missing; the run
still exits 0.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from fluxdrag.toyworld.scenes import FAMILIES, NEW_FAMILY_CASES, V3_FAMILIES, Scene, make_scene, to_rgb

from . import pack_methods  # noqa: F401  (registers the pack's drag methods)
from .methods import METHODS, NEEDS_MODEL
from .metrics import edit_metrics, mean_metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
COLUMNS = [("md", "MD ↓"), ("found", "found"), ("iou", "IoU ↑"), ("orientation_deg", "orient° ↓"),
           ("scale_err", "scale ↓"), ("residue", "residue ↓"), ("seam", "seam ↓"), ("bg", "BG ↓"),
           ("hole", "hole ↓"), ("id", "ID ↓"), ("s_per_edit", "s/edit")]
#: the v3 metrics (toy world v3 families), shown in their own table
V3_COLUMNS = [("shadow", "shadow ↓"), ("shading", "shading ↓"), ("completion", "completion ↑"),
              ("joint_deg", "joint° ↓"), ("tip", "tip ↓"), ("hole", "hole ↓"), ("iou", "IoU ↑"),
              ("bg", "BG ↓")]
FAMILY_CASES = {"single": ["move", "rotate", "stretch"],
                "multi": ["move", "rotate", "stretch", "multi_move"],
                "textured_bg": ["move", "rotate", "stretch", "multi_move"],
                "crowded": ["move", "rotate", "stretch", "multi_move"],
                **{f: list(c) for f, c in NEW_FAMILY_CASES.items()}}
# the v2 benchmark's families, in its order (its scene sets per seed stay as they were)
V2_FAMILIES = ["single", "multi", "textured_bg", "parts", "border", "overlap", "large"]
DEFAULT_FAMILIES = [*V2_FAMILIES, *V3_FAMILIES]
CASE_ORDER = ["move", "rotate", "stretch", "scale", "multi_move", "bend"]
#: how the metric names of ``edit_metrics`` appear in the JSON rows
JSON_KEYS = {"bg_err": "bg", "hole_err": "hole", "id_err": "id", "time": "s_per_edit"}


def benchmark_scenes(seed: int, n: int, families: list[str]) -> list[Scene]:
    """The fixed test set of a seed: families cycled, each family's cases cycled."""
    out = []
    for i in range(n):
        fam = families[i % len(families)]
        cases = FAMILY_CASES[fam]
        case = cases[(i // len(families)) % len(cases)]
        out.append(make_scene(1000 * seed + i, fam, case))
    return out


def _order(names: list[str]) -> list[str]:
    base = ["no_edit", "copy_paste", "cut_paste", "inversion_roundtrip", "inversion_roundtrip_50",
            "uni_inv_roundtrip", "fireflow_roundtrip"]
    head = [m for m in base if m in names]
    tail = ["ground_truth"] if "ground_truth" in names else []
    return head + [m for m in names if m not in head and m not in tail] + tail


def _fmt(v, k: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if k == "found":
        return f"{100 * v:.0f}%"
    if k in ("orientation_deg", "joint_deg"):
        return f"{v:.1f}"
    return f"{v:.3f}"


def _rename(r: dict) -> dict:
    return {JSON_KEYS.get(k, k): v for k, v in r.items()}


def aggregate(per_scene: dict[str, list[tuple[Scene, dict]]], judged: set[str],
              recon: dict[str, dict] | None = None) -> list[dict]:
    """JSON rows: per method × family × case, then "all" aggregates — per family (case "all"), per
    case over the judged families (family "all") and overall over the judged families. With the
    model's per-family check (``recon``), each family's rows carry ``represented`` (judged) and
    ``denoise_err`` (its edits' one-step denoising error / spread); "all" rows carry None."""
    rows = []
    for m, items in per_scene.items():
        groups: dict[tuple[str, str], list[dict]] = {}
        for sc, r in items:
            groups.setdefault((sc.family, sc.case), []).append(r)
            groups.setdefault((sc.family, "all"), []).append(r)
            if sc.family in judged:
                groups.setdefault(("all", sc.case), []).append(r)
                groups.setdefault(("all", "all"), []).append(r)
        for (fam, case), rs in groups.items():
            rc = (recon or {}).get(fam)
            rows.append({"method": m, "family": fam, "case": case, "n": len(rs),
                         **_rename(mean_metrics(rs)),
                         "represented": rc["judged"] if rc else None,
                         "denoise_err": rc["denoise_edit"] if rc else None})
    fam_order = {f: i for i, f in enumerate([*FAMILIES, "all"])}
    case_order = {c: i for i, c in enumerate([*CASE_ORDER, "all"])}
    meth_order = {m: i for i, m in enumerate(per_scene)}
    rows.sort(key=lambda r: (meth_order[r["method"]], fam_order[r["family"]], case_order[r["case"]]))
    return rows


def _json_safe(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def json_report(seed: int, n: int, rows: list[dict], **extra) -> dict:
    """The machine-readable table: ``{"seed", "n", "rows": [...], ...extra}`` (NaN → null)."""
    return _json_safe({"seed": seed, "n": n, "rows": rows, **extra})


def table(rows: list[dict], family: str = "all", case: str = "all") -> list[str]:
    sel = [r for r in rows if r["family"] == family and r["case"] == case]
    head = "| method | n | " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|---|---:|" + "---:|" * len(COLUMNS)
    body = [f"| {r['method']} | {r['n']} | " + " | ".join(_fmt(r.get(k), k) for k, _ in COLUMNS) + " |"
            for r in sel]
    return [head, sep, *body]


def pivot(rows: list[dict], key: str, by: str, values: list[str], fixed: tuple[str, str]) -> list[str]:
    """Method × (case or family) table of one metric."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    look = {(r["method"], r[by]): r for r in rows if r[fixed[0]] == fixed[1]}
    head = "| method | " + " | ".join(values) + " |"
    sep = "|---|" + "---:|" * len(values)
    body = [f"| {m} | " + " | ".join(_fmt(look[(m, v)].get(key) if (m, v) in look else None, key)
                                     for v in values) + " |" for m in methods]
    return [head, sep, *body]


def write_grid(scenes: list[Scene], outputs: dict[str, list[torch.Tensor]], path: Path,
               rows: int = 7) -> Path:
    """One row per family (its first scene): source with drags, each method, ground truth."""
    from .viz import draw_drags, save_grid, to_pil

    names = [m for m in outputs if m != "ground_truth"]
    picked, seen = [], set()
    for i, sc in enumerate(scenes):
        if sc.family not in seen:
            seen.add(sc.family)
            picked.append(i)
    picked = (picked + [i for i in range(len(scenes)) if i not in picked])[:rows]
    tiles, labels = [], []
    for i in picked:
        sc = scenes[i]
        tiles.append(draw_drags(to_pil(to_rgb(sc.latent)), sc.drags))
        labels.append(f"{sc.family}/{sc.case}")
        for m in names:
            tiles.append(to_rgb(outputs[m][i]))
            labels.append(m)
        tiles.append(to_rgb(sc.edited))
        labels.append("ground truth")
    return save_grid(tiles, path, ncols=len(names) + 2, labels=labels,
                     title="toy world: source + drags | methods | ground truth")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Toy-world drag benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    p.add_argument("--families", nargs="*", default=DEFAULT_FAMILIES, choices=list(FAMILIES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grid-rows", type=int, default=None, help="default: one per family")
    p.add_argument("--docs", default=str(DOCS), help="folder for toyworld_results.md / _grid.png "
                                                     "('' = write no docs)")
    p.add_argument("--json", default=None, help="also write the table as JSON to this file")
    p.add_argument("--weights", "--model", dest="weights", default=None,
                   help="toy model weights, e.g. fluxdrag/toyworld/toyflux_v3.safetensors (default: the shipped "
                        "fluxdrag/toyworld/toyflux.safetensors)")
    p.add_argument("--kontext", default=None,
                   help="toy Kontext weights for the ContextDrag rows (default: the shipped "
                        "fluxdrag/toyworld/toykontext.safetensors), e.g. a training run's checkpoint to judge")
    p.add_argument("--no-inversion-table", dest="inversion_table", action="store_false")
    p.add_argument("--no-model", action="store_true",
                   help="model-free methods only: no model, no per-family check (seconds, not minutes)")
    p.add_argument("--inv-steps", type=int, nargs="+", default=[8, 16, 28])
    p.add_argument("--inv-schedulers", nargs="+", default=["simple", "beta", "normal"])
    p.add_argument("--inv-scenes", type=int, default=6, help="scenes per inversion-table entry")
    p.add_argument("--recon-scenes", type=int, default=4, help="scenes per family for the "
                                                                "reconstruction check")
    args = p.parse_args(argv)
    if args.recon_scenes < 1 and not args.no_model:
        p.error(f"--recon-scenes {args.recon_scenes}: the per-family check needs at least 1 scene per "
                f"family (it decides which families are judged); use --no-model to run without a model")
    torch.set_num_threads(args.threads)
    if args.kontext:
        from . import pack_methods

        pack_methods.KONTEXT_PATH = Path(args.kontext)

    names = args.methods if args.methods is not None else list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        print(f"unknown method(s) {unknown}; registered: {sorted(METHODS)}", file=sys.stderr)
        return 2
    names = _order(names)
    notes = []
    model = cond = None
    try:
        if args.no_model:
            raise RuntimeError("--no-model")
        from fluxdrag.toyworld.model import WEIGHTS, load_toy_model
        from tools.comfy_env import import_comfy

        import_comfy()
        weights = Path(args.weights or WEIGHTS)
        model, cond = load_toy_model(weights)
    except Exception as e:  # noqa: BLE001 — report and go on with the model-free rows
        skipped = [m for m in names if m in NEEDS_MODEL]
        notes.append(f"skipped {skipped} and the model checks: toy model unavailable "
                     f"({type(e).__name__}: {e})")
        names = [m for m in names if m not in NEEDS_MODEL]

    scenes = benchmark_scenes(args.seed, args.n, args.families)
    families = [f for f in args.families if any(sc.family == f for sc in scenes)]
    recon: dict[str, dict] = {}
    inversion: list[dict] = []
    if model is not None:
        from .roundtrip import family_reconstruction, inversion_table

        recon = family_reconstruction(model, cond, args.seed, families, args.recon_scenes)
        for f, r in recon.items():
            print(f"  reconstruction {f}: round trip source {r['source']:.3f}, edit {r['edit']:.3f}; "
                  f"denoise source {r['denoise_source']:.3f}, edit {r['denoise_edit']:.3f} "
                  f"({'judged' if r['judged'] else 'NOT judged'})", flush=True)
        if args.inversion_table:
            inv_scenes = scenes[: args.inv_scenes]
            inversion = inversion_table(model, cond, inv_scenes, steps=args.inv_steps,
                                        schedulers=args.inv_schedulers)
    judged = {f for f in families if recon.get(f, {}).get("judged", True)}

    per_scene: dict[str, list[tuple[Scene, dict]]] = {}
    outputs: dict[str, list[torch.Tensor]] = {}
    for m in names:
        items, outs = [], []
        for sc in scenes:
            t0 = time.perf_counter()
            with torch.inference_mode():   # as ComfyUI's executor runs nodes (no autograd graphs kept)
                edited = METHODS[m](sc, model, cond)
            dt = time.perf_counter() - t0
            r = edit_metrics(sc, edited)
            r["time"] = dt
            items.append((sc, r))
            outs.append(edited.detach().float().reshape(sc.latent.shape))
        per_scene[m] = items
        outputs[m] = outs
        print(f"  {m}: done ({sum(r['time'] for _, r in items) / len(items):.3f} s/edit)", flush=True)

    rows = aggregate(per_scene, judged, recon)
    cases = [c for c in CASE_ORDER if any(sc.case == c for sc in scenes)]
    shown = [a for a in (sys.argv[1:] if argv is None else argv)]
    for flag in ("--docs", "--json"):          # where the files went is not part of the result
        if flag in shown:
            i = shown.index(flag)
            del shown[i:i + 2]
    cmd = " ".join(["python -m bench.toybench.run", *shown]) if shown else \
        f"python -m bench.toybench.run --seed {args.seed} --n {args.n}"
    excluded = [f for f in families if f not in judged]
    overall = table(rows)
    print()
    print(f"toy world, seed {args.seed}, {len(scenes)} scenes ({', '.join(families)}); "
          f"'all' over {', '.join(sorted(judged, key=families.index))}")
    print("\n".join(overall))
    for c in cases:
        print(f"\ncase {c} (judged families):")
        print("\n".join(table(rows, "all", c)))
    for key in ("md", "iou"):
        print(f"\n{key} per family (all cases):")
        print("\n".join(pivot(rows, key, "family", families, ("case", "all"))))
    if inversion:
        print("\ninversion round trips:")
        print("\n".join(inversion_lines(inversion)))
    for note in notes:
        print("note:", note)

    v3 = [f for f in families if f in V3_FAMILIES]
    if v3:
        print("\nv3 families (metrics of toy world v3):")
        print("\n".join(v3_table(rows, v3)))
    report = json_report(args.seed, args.n, rows, command=cmd, families=families,
                         weights=_weights_name(args.weights),
                         judged_families=sorted(judged, key=families.index),
                         reconstruction=recon, inversion=inversion, threads=args.threads, notes=notes)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    if not args.docs:
        return 0
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    grid = write_grid(scenes, outputs, docs / "toyworld_grid.png", args.grid_rows or len(families))
    md = [
        "# Toy-world drag benchmark",
        "",
        (f"`{cmd}` — {len(scenes)} scenes (families {', '.join(families)}; cases "
         f"{', '.join(cases)}), toy FLUX model `{_weights_name(args.weights)}`, CPU, "
         f"{args.threads} thread(s). Generated by that command; the same numbers are in "
         f"machine-readable form with `--json FILE`."),
        "",
        "Metrics (definitions in `bench/toybench/metrics.py`), each against the exact ground-truth edit:",
        "",
        ("- **MD**: distance in tokens (16 px) between the dragged object's detected centre and its "
         "ground-truth centre; not found = not moved."),
        "- **found**: share of dragged objects detected (by their palette signature) in the edit.",
        "- **IoU**: detected object mask vs ground-truth mask — shape, size and place at once.",
        ("- **orient°**: rotations only; degrees between the best-matching rotation of the source "
         "object and the ground truth (modulo the object's symmetries)."),
        "- **scale**: stretch/scale only; mean over x, y of |σ_edit/σ_gt − 1| of the mask's spread.",
        "- **residue**: share of the vacated area that still shows the dragged object.",
        ("- **seam**: relative excess (E_edit − E_gt)/E_gt of gradient energy over the background "
         "(everything one latent pixel away from any object): boxes, fill rims, speckle."),
        ("- **BG / hole / ID**: RMS error (model-space latent units; object amplitude 2.0) outside "
         "the dragged objects, on the vacated area, on the objects at their targets."),
        "",
    ]
    if recon:
        bar = next(iter(recon.values()))["denoise_bar"]
        md += ["## Can the model represent each family?", "",
               (f"{args.recon_scenes} scenes per family (other seeds than the table's). Round trip: "
                "FireFlow 28-step inversion → sampling, guidance 1, RMS error / spread — near-exact for "
                "any latent, so it cannot tell whether the model knows a family. Denoise: one-step "
                "prediction x̂₀ = x_σ − σ·v at σ = 0.2, 0.4, 0.6, RMS error / spread. A family whose "
                f"ground-truth edits denoise worse than {bar:.3f} (1.5 × the sources of single and "
                "multi) is reported but not used in the 'all' rows."), "",
               "| family | round trip: source | round trip: edit | denoise: source | denoise: edit | judged |",
               "|---|---:|---:|---:|---:|---|"]
        md += [f"| {f} | {r['source']:.3f} | {r['edit']:.3f} | {r['denoise_source']:.3f} | "
               f"{r['denoise_edit']:.3f} | {'yes' if r['judged'] else 'no'} |" for f, r in recon.items()]
        md += [""]
    md += [f"## All judged families ({', '.join(sorted(judged, key=families.index))})", "", *overall, ""]
    if excluded:
        md += [f"Not judged (the model cannot reconstruct their edits): {', '.join(excluded)}; "
               "their rows are in the per-family tables and the JSON.", ""]
    for key, label in (("md", "MD"), ("iou", "IoU"), ("residue", "residue"), ("seam", "seam")):
        md += [f"{label} per case (judged families):", "",
               *pivot(rows, key, "case", cases, ("family", "all")), ""]
    md += ["orientation error (°) on rotations, scale error on stretch / scale:", "",
           *pivot(rows, "orientation_deg", "case", ["rotate"], ("family", "all")), "",
           *pivot(rows, "scale_err", "case", [c for c in ("stretch", "scale") if c in cases],
                  ("family", "all")), ""]
    for key, label in (("md", "MD"), ("iou", "IoU"), ("residue", "residue")):
        md += [f"{label} per family (all cases):", "",
               *pivot(rows, key, "family", families, ("case", "all")), ""]
    if v3:
        md += ["## Toy world v3 families", "",
               ("Per family (all cases): **shadow** (RMS over the dragged object's old ∪ new shadow "
                "areas), **shading** (RMS where the detected object and its ground-truth mask "
                "overlap), **completion** (occlusion: IoU against the full revealed / partly hidden "
                "ground-truth mask), **joint°** and **tip** (bend: joint-angle error, free end's "
                "distance in tokens), hole (textured backgrounds: the texture must be continued), "
                "IoU, BG (outside objects and their shadows); definitions in "
                "`bench/toybench/metrics.py`, scenes in `fluxdrag/toyworld/scenes_v3.py`."), "",
               *v3_table(rows, v3), ""]
    if inversion:
        md += ["## Inversion round trips", "",
               (f"Invert → Sample From Inversion through the nodes on the first {args.inv_scenes} "
                "scenes' sources, guidance 1 (the shipped workflow's); RMS error of the "
                "reconstruction / the source's spread (std), mean and worst scene."), "",
               *inversion_lines(inversion), ""]
    md += [f"![grid]({grid.name}) — rows: one scene per family; columns: source with drags, each "
           "method, ground truth."]
    if notes:
        md += ["", *[f"Note: {n}" for n in notes]]
    (docs / "toyworld_results.md").write_text("\n".join(md) + "\n")
    print(f"wrote {docs / 'toyworld_results.md'} and {grid}")
    return 0


def inversion_lines(inv: list[dict]) -> list[str]:
    head = "| solver | steps | scheduler | model calls | RMS / spread (mean) | worst | s / round trip |"
    sep = "|---|---:|---|---:|---:|---:|---:|"
    body = [f"| {r['solver']} | {r['steps']} | {r['scheduler']} | {r['calls']} | {r['rel_rms']:.3f} | "
            f"{r['rel_rms_max']:.3f} | {r['s_per_roundtrip']:.2f} |" for r in inv]
    return [head, sep, *body]


def _weights_name(weights: str | None) -> str:
    from fluxdrag.toyworld.model import WEIGHTS

    p = Path(weights) if weights else WEIGHTS
    root = Path(__file__).resolve().parents[2]
    try:
        return str(p.resolve().relative_to(root))
    except ValueError:
        return str(p)


def v3_table(rows: list[dict], families: list[str]) -> list[str]:
    """Method × v3 family table of the v3 metrics (case "all")."""
    sel = [r for r in rows if r["family"] in families and r["case"] == "all"]
    head = "| method | family | n | " + " | ".join(c[1] for c in V3_COLUMNS) + " |"
    sep = "|---|---|---:|" + "---:|" * len(V3_COLUMNS)
    body = [f"| {r['method']} | {r['family']} | {r['n']} | "
            + " | ".join(_fmt(r.get(k), k) for k, _ in V3_COLUMNS) + " |" for r in sel]
    return [head, sep, *body]


if __name__ == "__main__":
    sys.exit(main())
