"""AttentionDrag benchmark (issue 6): full edit time ÷ one vanilla generation at the same step count.

Run: ``python -m bench.attentiondrag [--latent 64 --steps 28 --strength 0.7]`` (finds ComfyUI like
the tests do). In one process, for both families, on models large enough for timing to mean
something on a CPU (FLUX: ``BENCH_FLUX``; SD1.x: a UNet with 128 channels, 3 levels):

- edit: ``run_attention_drag`` end to end (inversion to ``strength``, the attention read, the
  one-step move, denoising back), through ComfyUI's guider like the node;
- vanilla: ``comfy.sample.sample`` of a full generation with the same ``steps`` (FLUX: euler/simple;
  SD1.x: ddim/ddim_uniform),

timed interleaved (best of ``--repeats``). The floor is one inversion plus one generation of the
kept steps, 2·strength; the goal is ≤ 2.2. Prints a table, one ratio per family and
``attentiondrag_ratio: X`` (the larger of the two).
"""
from __future__ import annotations

import argparse

from .common import BENCH_FLUX, add_timing_args, apply_threads, interleaved_times, setup_comfy, table

#: an SD1.x UNet large enough to time: 128 channels, 3 levels, attention at every level
BENCH_SD15 = dict(model_channels=128, channel_mult=[1, 2, 4], num_res_blocks=[1, 1, 1],
                  transformer_depth=[1, 1, 1], transformer_depth_output=[1, 1, 1, 1, 1, 1],
                  transformer_depth_middle=1, context_dim=256, num_heads=8)


def main():
    ap = argparse.ArgumentParser()
    add_timing_args(ap, repeats=3)
    ap.add_argument("--latent", type=int, default=64, help="latent side (image side / 8)")
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--strength", type=float, default=0.7)
    args = ap.parse_args()
    env = setup_comfy()
    import comfy.sample
    import torch

    from fluxdrag.pipelines.attention_drag import AttentionDragSettings, run_attention_drag

    torch.set_grad_enabled(False)
    apply_threads(args)
    L = args.latent
    side = L * 8
    drags = {"version": 1, "image_size": [side, side],
             "drags": [{"handle": [0.3 * side, 0.3 * side], "target": [0.55 * side, 0.45 * side]}]}
    s = AttentionDragSettings(steps=args.steps, strength=args.strength)
    g = torch.Generator().manual_seed(0)

    flux = env.build_flux(BENCH_FLUX, seed=0, init_std=0.02)
    flux_cond = env.tiny_conditioning(BENCH_FLUX, seed=0, tokens=32)
    flux_lat = {"samples": torch.randn(1, 16, L, L, generator=g) * 0.5}
    sd = env.build_sd15(BENCH_SD15, seed=0, init_std=0.02)
    sd_cond = [[torch.randn(1, 77, BENCH_SD15["context_dim"], generator=g), {}]]
    sd_lat = {"samples": torch.randn(1, 4, L, L, generator=g)}

    def vanilla(model, cond, channels, sampler, scheduler):
        noise = torch.randn(1, channels, L, L, generator=torch.Generator().manual_seed(1))
        return comfy.sample.sample(model, noise, args.steps, 1.0, sampler, scheduler, cond, cond,
                                   torch.zeros_like(noise), seed=1, disable_pbar=True)

    calls = {}

    def edit(name, model, lat, cond):
        out = run_attention_drag(model, lat, drags, cond, settings=s)
        calls[name] = (out.model_calls, out.extra_capture_call)
        return out

    fns = {
        "flux edit": lambda: edit("flux", flux, flux_lat, flux_cond),
        "flux vanilla": lambda: vanilla(flux, flux_cond, 16, "euler", "simple"),
        "sd15 edit": lambda: edit("sd15", sd, sd_lat, sd_cond),
        "sd15 vanilla": lambda: vanilla(sd, sd_cond, 4, "ddim", "ddim_uniform"),
    }
    times = interleaved_times(fns, repeats=args.repeats)
    rows, ratios = [], {}
    for fam in ("flux", "sd15"):
        e, v = times[f"{fam} edit"], times[f"{fam} vanilla"]
        ratios[fam] = e / v
        n_calls, extra = calls[fam]
        rows.append([fam, f"{v:.3f}", f"{e:.3f}", f"{n_calls} (+probe)" if extra else str(n_calls),
                     args.steps, f"{ratios[fam]:.2f}"])
    print(f"AttentionDrag on a {side}x{side} image, {args.steps} steps, strength {args.strength} "
          f"(floor 2·strength = {2 * args.strength:.2f}; FLUX: Uni-Inv + Euler; SD1.x: DDIM both ways):")
    print(table(rows, ["family", "vanilla s", "edit s", "edit model calls", "vanilla calls", "edit ÷ vanilla"]))
    print(f"attentiondrag_ratio_flux: {ratios['flux']:.3f}")
    print(f"attentiondrag_ratio_sd15: {ratios['sd15']:.3f}")
    print(f"attentiondrag_ratio: {max(ratios.values()):.3f}")


if __name__ == "__main__":
    main()
