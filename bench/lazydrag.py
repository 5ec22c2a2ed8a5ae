"""LazyDrag benchmark (issue 3): patched step ÷ vanilla step, cache bytes per policy, real-FLUX table.

Run: ``python -m bench.lazydrag [--latent 64 --steps 8]`` (finds ComfyUI like the tests do).
In one process on a FLUX-architecture model (hidden 512, 8 heads, 4+8 blocks):
(1) per ``cache_policy`` the cache bytes and the time per sampling step with the LazyDrag patch
active, next to vanilla sampling from the same start, ending with ``lazydrag_step_ratio: X`` for
the default policy (cpu);
(2) a computed table of cache sizes for real FLUX.1-dev (38 single blocks, hidden 3072, bf16) at
512² and 1024², 28 and 50 steps, for each policy, next to the paper's 62 GB peak (anchors §1.6).
"""
from __future__ import annotations

import argparse

from .common import BENCH_FLUX, add_timing_args, apply_threads, interleaved_times, setup_comfy, table

DRAGS = {"version": 1, "image_size": [512, 512],
         "drags": [{"handle": [180, 200], "target": [300, 240], "mode": "move"}]}


def real_flux_table() -> str:
    from fluxdrag.core.cache import format_bytes
    from fluxdrag.core.lazydrag import estimate_cache_bytes

    rows = []
    for side in (512, 1024):
        n = (side // 16) ** 2
        # a typical single-object drag: 85 % background, 10 % identity sources, 6 % merge sources
        n_bg, n_uid, n_uy = int(0.85 * n), int(0.10 * n), int(0.06 * n)
        for steps in (28, 50):
            act = int(round(0.8 * steps))
            full = estimate_cache_bytes(38, steps, steps, n, n, n, 3072, 1, 2)  # everything, bf16
            # default: background k, v only (background_query "live"); "cached" adds the queries
            sel = estimate_cache_bytes(38, steps, act, n_bg, n_uid, n_uy, 3072, 1, 2, bg_tensors=2)
            sel_q = estimate_cache_bytes(38, steps, act, n_bg, n_uid, n_uy, 3072, 1, 2)
            fp8 = estimate_cache_bytes(38, steps, act, n_bg, n_uid, n_uy, 3072, 1, 1, bg_tensors=2)
            rows.append([f"{side}²", steps, format_bytes(full), format_bytes(sel_q), format_bytes(sel),
                         format_bytes(fp8), "0 (2x compute)"])
    return table(rows, ["image", "steps", "cache all q,k,v,y (bf16)", "selected, bg queries cached (bf16)",
                        "device / cpu (default, bf16)", "fp8 (cpu)", "paired"]) + (
        "\nPaper (Tab. 6, H800, 512², 50 steps): 62 GB peak GPU memory incl. the model (~24 GB); "
        "our selected cache lives on the CPU for 'cpu'/'fp8', leaving GPU memory at vanilla level.")


def main():
    ap = argparse.ArgumentParser()
    add_timing_args(ap, repeats=3)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    env = setup_comfy()
    import node_helpers
    import torch

    from fluxdrag.core.cache import format_bytes
    from fluxdrag.pipelines import inversion as inv
    from fluxdrag.pipelines import lazydrag as ld

    torch.set_grad_enabled(False)
    apply_threads(args)
    model = env.build_flux(BENCH_FLUX, seed=0, init_std=0.02)
    cond = env.tiny_conditioning(BENCH_FLUX, seed=0, tokens=32)
    cond1 = node_helpers.conditioning_set_values(cond, {"guidance": 1.0})
    L = args.latent
    g = torch.Generator().manual_seed(0)
    lat = {"samples": torch.randn(1, 16, L, L, generator=g) * 0.5}
    drags = dict(DRAGS, image_size=[L * 8, L * 8])
    s = L * 8 / 512
    drags["drags"] = [{"handle": [180 * s, 200 * s], "target": [300 * s, 240 * s], "mode": "move"}]

    rows, fns, ratio_key = [], {}, "cpu"
    runs = {}
    for policy in ("cpu", "fp8", "device", "paired"):
        plan = ld.build_plan(drags, lat["samples"])
        rec = inv.run_inversion(model, lat, cond, steps=args.steps, solver="uni_inv", edit_map=plan,
                                cache_policy=policy)
        m, z0, ctrl = ld.apply_lazydrag(model, rec, plan)
        ctrl.free_on_end = False
        runs[policy] = rec.cache_bytes()
        fns[policy] = (lambda m=m, rec=rec, z0=z0: inv.run_sampling(m, rec, cond1, start=z0))
        if policy == "cpu":
            fns["vanilla"] = (lambda rec=rec, z0=z0: inv.run_sampling(model, rec, cond1, start=z0))
    times = interleaved_times(fns, repeats=args.repeats)
    van = times["vanilla"] / args.steps
    for policy in ("cpu", "fp8", "device", "paired"):
        t = times[policy] / args.steps
        rows.append([policy, format_bytes(runs[policy]), f"{t * 1000:.1f}", f"{t / van:.2f}"])
    print(f"LazyDrag on a {L * 8}x{L * 8} image, {args.steps} Uni-Inv + Euler steps "
          f"(vanilla step {van * 1000:.1f} ms):")
    print(table(rows, ["cache_policy", "cache bytes", "ms / step", "÷ vanilla"]))
    print()
    print("Computed cache size for real FLUX.1-dev (38 single blocks, hidden 3072):")
    print(real_flux_table())
    print(f"lazydrag_step_ratio: {times[ratio_key] / times['vanilla']:.3f}")


if __name__ == "__main__":
    main()
