"""ContextDrag benchmark (issue 5): patched Kontext step ÷ stock Kontext step, in one process.

Run: ``python -m bench.contextdrag [--latent 64 --steps 4]`` (finds ComfyUI like the tests do).
A FLUX-architecture model (hidden 512, 8 heads, 4+8 blocks) sampled with a Kontext reference
latent of the same size (ComfyUI's ReferenceLatent conditioning), Euler, cfg 1, the same noise for
every variant: stock Kontext; CTI replace; CTI append; PCA with ``hide="vacated"`` (ids
rewritten; for this rigid drag that set is empty, so no mask); PCA with the default settings
(``hide="vacated"`` since issue 28, so also no mask here; ``subtoken`` on); and the shipped
workflow's chain CTI replace → PCA (defaults), whose ratio is printed last as
``contextdrag_step_ratio: X`` (goal ≤ 1.2). The chain with ``hide="vacated"`` is printed as
``contextdrag_step_ratio_unmasked: X``.
"""
from __future__ import annotations

import argparse

from .common import BENCH_FLUX, add_timing_args, apply_threads, interleaved_times, setup_comfy, table


def main():
    ap = argparse.ArgumentParser()
    add_timing_args(ap, repeats=3)
    ap.add_argument("--latent", type=int, default=64, help="latent side (pixels / 8)")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    env = setup_comfy()
    import comfy.sample
    import node_helpers
    import torch

    from fluxdrag.pipelines import contextdrag as cd

    torch.set_grad_enabled(False)
    apply_threads(args)
    model = env.build_flux(BENCH_FLUX, seed=0, init_std=0.02)
    cond = env.tiny_conditioning(BENCH_FLUX, seed=0, tokens=32)
    L = args.latent
    g = torch.Generator().manual_seed(0)
    ref = {"samples": torch.randn(1, 16, L, L, generator=g) * 0.5}
    kontext = node_helpers.conditioning_set_values(cond, {"reference_latents": [ref["samples"]]}, append=True)
    noise = torch.randn(1, 16, L, L, generator=g)
    px = L * 8
    s = px / 256  # the example's sun drag with its square region, scaled to this size
    drags = {"version": 1, "image_size": [px, px],
             "drags": [{"handle": [204 * s, 46 * s], "target": [124 * s, 46 * s], "mode": "move"}],
             "mask": {"polygons": [[[174 * s, 16 * s], [234 * s, 16 * s], [234 * s, 76 * s],
                                    [174 * s, 76 * s]]]}}
    rmap = cd.build_map(drags, ref["samples"])

    def sampler(m):
        return lambda: comfy.sample.sample(m, noise, args.steps, 1.0, "euler", "simple", kontext, kontext,
                                           torch.zeros_like(noise), seed=0, disable_pbar=True)

    cti_r, _ = cd.apply_cti(model, rmap, mode="replace")
    cti_a, _ = cd.apply_cti(model, rmap, mode="append")
    pca_u, pca_u_ctrl = cd.apply_pca(model, rmap, hide="vacated")
    pca, pca_ctrl = cd.apply_pca(model, rmap)
    chain_u, _ = cd.apply_pca(cti_r, rmap, hide="vacated")
    chain, _ = cd.apply_pca(cti_r, rmap)
    variants = {"stock Kontext": model, "CTI replace": cti_r, "CTI append": cti_a,
                f"PCA vacated ({pca_u_ctrl.hidden.numel()} hidden)": pca_u,
                f"PCA default {pca_ctrl.hide} ({pca_ctrl.hidden.numel()} hidden)": pca,
                "CTI replace → PCA vacated": chain_u,
                "CTI replace → PCA default (workflow)": chain}
    times = interleaved_times({k: sampler(m) for k, m in variants.items()}, repeats=args.repeats)
    stock = times["stock Kontext"] / args.steps
    rows = [[k, f"{t / args.steps * 1000:.1f}", f"{t / args.steps / stock:.3f}"] for k, t in times.items()]
    n_tok = 32 + 2 * (L // 2) ** 2
    print(f"ContextDrag on a {px}x{px} image + {px}x{px} reference ({n_tok} tokens), {args.steps} Euler "
          f"steps, {int(rmap.dst_mask.sum())} destination tokens:")
    print(table(rows, ["variant", "ms / step", "÷ stock"]))
    print(f"contextdrag_step_ratio_unmasked: {times['CTI replace → PCA vacated'] / times['stock Kontext']:.3f}")
    print(f"contextdrag_step_ratio: {times['CTI replace → PCA default (workflow)'] / times['stock Kontext']:.3f}")


if __name__ == "__main__":
    main()
