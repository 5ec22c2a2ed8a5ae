"""Can a toy FLUX checkpoint represent each scene family? One-step denoising error and FireFlow
28-step round trips per family (``roundtrip.family_reconstruction``), for a checkpoint that may
still be training (the v3 training saves atomically, so reading it mid-run is safe).

``python -m bench.toybench.represent --model fluxdrag/toyworld/toyflux_v3.safetensors [--scenes 2] [--json F]``

A family is *represented* (judged) when its ground-truth edits denoise within 1.5× of the sources
of single and multi (the bar ``run.py`` uses); the issue's round-trip target is ≤ 0.05 of the
source spread on every judged family. Round trips: FireFlow 28 steps, guidance 1, on the `simple`
σ schedule (``run.py``'s) and on ``--schedulers`` (default `beta`, the invert_reconstruct
workflow's, which puts more steps near σ = 0 where the toy flow is stiff).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fluxdrag.toyworld.scenes import FAMILIES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="weights (default: the shipped fluxdrag/toyworld/toyflux.safetensors)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--scenes", type=int, default=2, help="scenes per family")
    p.add_argument("--seed", type=int, default=0, help="scene seeds 1000·seed + 500 + j (not the tables')")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--schedulers", nargs="*", default=["beta"],
                   help="σ schedules for extra round trips besides 'simple' (the table's)")
    p.add_argument("--no-roundtrips", dest="roundtrips", action="store_false",
                   help="the denoising judgement alone (no round trips: seconds instead of minutes)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from fluxdrag.toyworld.model import WEIGHTS, load_toy_model, read_meta
    from tools.comfy_env import import_comfy

    from .roundtrip import family_reconstruction

    import_comfy()
    path = Path(args.model or WEIGHTS)
    model, cond = load_toy_model(path)
    steps = read_meta(path.with_suffix(".json"))["training"]["steps"]
    t0 = time.perf_counter()
    rec = family_reconstruction(model, cond, args.seed, args.families, args.scenes,
                                extra_schedulers=tuple(args.schedulers) if args.roundtrips else (),
                                roundtrips=args.roundtrips)
    print(f"{path.name} (step {steps}), {args.scenes} scenes per family, seed {args.seed}, "
          f"{time.perf_counter() - t0:.0f} s; denoise bar {next(iter(rec.values()))['denoise_bar']:.3f}")
    scheds = args.schedulers if args.roundtrips else []
    extra = [f" round trip {sch}: source | round trip {sch}: edit |" for sch in scheds]
    print("| family | denoise: source | denoise: edit | represented | round trip simple: source | "
          "round trip simple: edit |" + "".join(extra))
    print("|---|---:|---:|---|---:|---:|" + "---:|---:|" * len(scheds))

    def num(v):
        return "–" if v is None else f"{v:.3f}"

    for f, r in rec.items():
        more = "".join(f" {num(r[f'source_{s}'])} | {num(r[f'edit_{s}'])} |" for s in scheds)
        print(f"| {f} | {r['denoise_source']:.3f} | {r['denoise_edit']:.3f} | "
              f"{'yes' if r['represented'] else 'NO'} | {num(r['source'])} | {num(r['edit'])} |" + more)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": str(path), "steps": steps, "scenes": args.scenes,
                                               "seed": args.seed, "families": rec}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
