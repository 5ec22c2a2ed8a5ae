"""Inversion benchmark (issue 2): round-trip error per solver, and the router's overhead.

Run: ``python -m bench.inversion`` (finds ComfyUI like the demo: $COMFYUI_PATH, the ComfyUI
holding the pack, ~/comfy/ComfyUI).
On a FLUX-architecture model (hidden 512, 8 heads, 4+8 blocks, 64×64 latent) in one process:
(1) a table of round-trip reconstruction error for Euler 28 steps vs FireFlow 8 vs Uni-Inv 8 with
their model calls; (2) time per sampling step with the router installed but no controller
active ÷ vanilla, printed as ``router_overhead_ratio: X``.
"""
from __future__ import annotations

import argparse
import time

from .common import BENCH_FLUX, add_timing_args, apply_threads, interleaved_times, setup_comfy, table


def main():
    ap = argparse.ArgumentParser()
    add_timing_args(ap, repeats=5)
    ap.add_argument("--latent", type=int, default=64, help="latent side (64 = a 512 px image)")
    args = ap.parse_args()
    env = setup_comfy()
    import comfy.sample
    import node_helpers
    import torch

    from fluxdrag.attention_patches.router import Controller, patch_model
    from fluxdrag.core.solvers import model_calls
    from fluxdrag.pipelines import inversion as inv

    torch.set_grad_enabled(False)
    apply_threads(args)
    model = env.build_flux(BENCH_FLUX, seed=0, init_std=0.02)
    cond = env.tiny_conditioning(BENCH_FLUX, seed=0, tokens=32)
    cond1 = node_helpers.conditioning_set_values(cond, {"guidance": 1.0})
    L = args.latent
    g = torch.Generator().manual_seed(0)
    lat = {"samples": torch.randn(1, 16, L, L, generator=g) * 0.5}

    rows = []
    for solver, steps in (("euler", 28), ("fireflow", 8), ("uni_inv", 8)):
        t = time.perf_counter()
        rec = inv.run_inversion(model, lat, cond, steps=steps, solver=solver)
        z = inv.run_sampling(model, rec, cond1)
        dt = time.perf_counter() - t
        back = model.model.process_latent_out(z)
        err = (back - lat["samples"]).abs().mean().item()
        calls = model_calls(solver, steps) + model_calls(rec.sample_solver, steps)
        rows.append([solver, steps, f"{err:.5f}", calls, f"{dt:.2f}"])
    print("Round trip (invert + sample back) on a", f"{L * 8}x{L * 8} latent:")
    print(table(rows, ["solver", "steps", "mean |x - x_rec|", "model calls", "seconds"]))

    class Idle(Controller):
        """Registered for every block, never active (a sigma range no call has)."""
        sigma_range = (5.0, 6.0)

    patched = patch_model(model, Idle())
    noise = torch.randn(1, 16, L, L, generator=g)
    zeros = torch.zeros_like(noise)
    steps = 4

    def run(m):
        return lambda: comfy.sample.sample(m, noise, steps, 1.0, "euler", "simple", cond, cond,
                                           zeros, seed=0, disable_pbar=True)

    times = interleaved_times({"vanilla": run(model), "router": run(patched)}, repeats=args.repeats)
    print(f"vanilla step: {times['vanilla'] / steps * 1000:.1f} ms, router (idle) step: "
          f"{times['router'] / steps * 1000:.1f} ms")
    print(f"router_overhead_ratio: {times['router'] / times['vanilla']:.3f}")


if __name__ == "__main__":
    main()
