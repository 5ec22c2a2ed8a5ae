"""The small, fixed scene set of the per-method regression tests (tests/test_tier2_toyworld_regression.py).

``python -m bench.toybench.regression --seed S`` prints each method's mean metrics on the set of
seed S; the tests' thresholds come from one such run on a seed other than the tests' own, and
the numbers of that run are written next to the thresholds.

The set: six move-type edits (one per family where a move is well posed and the model represents
the family — single, multi (two drags), parts, border, overlap, large), so "beats no_edit on MD"
is meaningful for every scene (a rotation has MD ≈ 0 for no_edit).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from fluxdrag.toyworld.scenes import Scene, make_scene

REGRESSION_SET = [("single", "move"), ("multi", "multi_move"), ("parts", "move"),
                  ("border", "move"), ("overlap", "move"), ("large", "move")]
METHODS = ["no_edit", "cut_paste", "lazydrag", "lazydrag_paper", "attentiondrag", "dragflow"]


def regression_scenes(seed: int) -> list[Scene]:
    return [make_scene(1000 * seed + i, fam, case) for i, (fam, case) in enumerate(REGRESSION_SET)]


def run_methods(seed: int, methods=METHODS, model=None, cond=None) -> dict[str, dict]:
    """Mean metrics (and seconds per edit) of each method on the regression set of ``seed``."""
    from . import pack_methods  # noqa: F401  (registers the pack's methods)
    from .methods import METHODS as REGISTRY
    from .metrics import edit_metrics, mean_metrics

    scenes = regression_scenes(seed)
    out = {}
    for m in methods:
        rows = []
        for sc in scenes:
            t0 = time.perf_counter()
            with torch.inference_mode():
                edited = REGISTRY[m](sc, model, cond)
            r = edit_metrics(sc, edited)
            r["time"] = time.perf_counter() - t0
            rows.append(r)
        out[m] = mean_metrics(rows)
        out[m]["md_per_scene"] = [r["md"] for r in rows]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", nargs="*", default=METHODS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from fluxdrag.toyworld.model import load_toy_model
    from tools.comfy_env import import_comfy

    import_comfy()
    model, cond = load_toy_model()
    res = run_methods(args.seed, args.methods, model, cond)
    for m, r in res.items():
        print(m, json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                             if k != "md_per_scene"}),
              "md per scene", [round(v, 2) for v in r["md_per_scene"]], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
