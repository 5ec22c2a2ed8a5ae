"""DragFlow benchmark (issue 4): early exit vs the full forward, per iteration and per edit.

Run: ``python -m bench.dragflow [--latent 32 --iters 6 --steps 8]`` (finds ComfyUI like the tests
do; uses CUDA when present, else the CPU). In one process, on a FLUX-architecture model that keeps
FLUX's proportions (BENCH_FLUX: twice as many single as double blocks, MLP ratio 4):

1. one optimisation iteration — features of the last two double blocks, DragFlow's masked L1
   loss, gradient w.r.t. the latent — with early exit ÷ the same through the full forward,
   with and without gradient checkpointing, plus the peak memory of each (CUDA only) → the lines
   ``dragflow_iter_ratio: X`` (plain forward+backward, no recompute; goal ≤ 0.6) and
   ``dragflow_iter_ratio_checkpointing: Y`` (the node's default, both sides recompute);
2. the projected per-edit time ratio against DragFlow's published schedule (70 full rounds plus
   the inversion and sampling forwards, 25 steps, skip 6);
3. one whole small edit (inversion, optimisation, lockstep sampling) through the node's code path
   with early exit on and off → ``dragflow_speedup: X`` (full ÷ early exit).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import time

from .common import BENCH_FLUX, add_timing_args, apply_threads, interleaved_times, setup_comfy, table


def main():
    ap = argparse.ArgumentParser()
    add_timing_args(ap, repeats=3)
    ap.add_argument("--latent", type=int, default=32, help="latent side (image = 8x)")
    ap.add_argument("--iters", type=int, default=6, help="optimisation iterations of the edit run")
    ap.add_argument("--steps", type=int, default=8, help="schedule steps of the edit run (skip 2)")
    ap.add_argument("--feature-grid", choices=["token", "image"], default="token",
                    help="feature grid of the measured iteration: the node's default (token) or "
                         "the paper's (image / 2, each token read as 2x2 sub-pixels)")
    args = ap.parse_args()
    env = setup_comfy()
    import comfy.model_management as mm
    import comfy.model_patcher
    import torch

    from fluxdrag.attention_patches.autograd import rope_autograd
    from fluxdrag.attention_patches.dragflow import DragFlowHooks, feature_maps
    from fluxdrag.core.affine import Region
    from fluxdrag.core.cache import format_bytes
    from fluxdrag.core.dragflow import masked_l1, region_targets
    from fluxdrag.pipelines.dragflow import DragFlowSettings, add_region, build_region, run_dragflow

    apply_threads(args)
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    cpu_model = env.build_flux(BENCH_FLUX, seed=0, init_std=0.02, dtype=dtype)
    model = comfy.model_patcher.ModelPatcher(cpu_model.model, load_device=dev,
                                             offload_device=torch.device("cpu"))
    mm.load_models_gpu([model])
    dm = model.get_model_object("diffusion_model")
    cond = env.tiny_conditioning(BENCH_FLUX, seed=0, tokens=32)
    L = args.latent
    side = 8 * L
    h = w = L // 2
    g = torch.Generator().manual_seed(0)
    z0 = (torch.randn(1, 16, L, L, generator=g) * 0.5).to(dev)
    ctx, opts = cond[0]
    ctx, pooled = ctx.to(dev, dtype), opts["pooled_output"].to(dev, dtype)
    rope = contextlib.ExitStack()  # RoPE differentiable for the measured passes below
    rope.enter_context(rope_autograd())

    mask = torch.zeros(side, side, dtype=torch.bool)
    q = side // 4
    mask[q:2 * q, q:2 * q] = True
    region = Region(mask, "relocate", target=(2.2 * q, 1.8 * q), begin=(1.5 * q, 1.5 * q))
    token = args.feature_grid == "token"
    fhw = (h, w) if token else (side // 2, side // 2)
    fmask = [torch.nn.functional.interpolate(mask[None, None].float(), size=fhw)[0, 0] > 0.5]
    A = [region.affine(1.0, fhw)]

    def make(early: bool, ckpt: bool):
        hooks = DragFlowHooks(dm, checkpointing=ckpt)
        m = hooks.install(model)
        to = copy.copy(m.model_options["transformer_options"])
        to["wrappers"] = m.wrappers

        def call(z):
            return dm(z, torch.tensor([0.7], device=dev), ctx, y=pooled,
                      guidance=torch.tensor([3.5], device=dev), transformer_options=to)

        def F(z):
            feats = hooks.features(lambda: call(z), h * w, early)
            return feature_maps(feats, hooks.feature_blocks, (h, w), None if token else fhw)

        with torch.no_grad():
            targets = region_targets(F(z0), fmask, A)  # once, as optimise_latent caches them

        def iteration():
            z = z0.clone().requires_grad_(True)
            loss = masked_l1(F(z), targets, [1.0])
            (gz,) = torch.autograd.grad(loss, z)
            if cuda:
                torch.cuda.synchronize()
            return gz
        return iteration, call, hooks

    fns, peaks, singles = {}, {}, {}
    for ckpt in (True, False):
        for early in (True, False):
            it, call, hooks = make(early, ckpt)
            key = f"{'early exit' if early else 'full forward'}, checkpointing {'on' if ckpt else 'off'}"
            fns[key] = it
            hooks.calls = {"double": 0, "single": 0}
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            it()
            singles[key] = hooks.calls["single"]
            peaks[key] = torch.cuda.max_memory_allocated(dev) if cuda else None

    def forward_only():
        with torch.no_grad():
            call(z0)
        if cuda:
            torch.cuda.synchronize()
    fns["no-grad full forward (sampling NFE)"] = forward_only
    times = interleaved_times(fns, repeats=args.repeats)

    rows = []
    for key in fns:
        pk = peaks.get(key)
        rows.append([key, f"{times[key] * 1000:.1f}", "-" if key not in singles else singles[key],
                     format_bytes(pk) if pk is not None else "n/a (CPU)"])
    nd, ns = len(dm.double_blocks), len(dm.single_blocks)
    print(f"DragFlow iteration on a FLUX-proportioned model ({nd} double + {ns} single blocks, "
          f"hidden {dm.hidden_size}, {side}x{side} image, {h * w} image tokens, {dev.type}, {dtype}, "
          f"feature grid {args.feature_grid} {fhw[1]}x{fhw[0]}):")
    print(table(rows, ["pass", "ms", "single-block calls", "peak memory"]))

    def ratio(ck):
        return (times[f"early exit, checkpointing {ck}"] / times[f"full forward, checkpointing {ck}"])
    r_on, r_off = ratio("on"), ratio("off")
    t_fwd = times["no-grad full forward (sampling NFE)"]
    # DragFlow's published edit: 25 steps, skip 6 → FireFlow inversion of 19 steps (20 forwards),
    # 70 rounds at one step, then the drag branch sampled over 19 steps (20 forwards); ours adds
    # the end-point capture, F_orig, the original branch (19 forwards) in lockstep.
    paper = 70 * times["full forward, checkpointing on"] + 40 * t_fwd
    ours = 70 * times["early exit, checkpointing on"] + (40 + 3 + 19) * t_fwd
    print(f"iteration ratio early/full: checkpointing on {r_on:.3f}, off {r_off:.3f}")
    print(f"projected per-edit time vs the paper's 70 full rounds + 40 forwards: {ours / paper:.3f} "
          f"(ours includes the original branch's 19 extra forwards)")

    # one whole edit through the node's code path, early exit on vs off
    mask_t = torch.zeros(1, side, side)
    mask_t[0, q:2 * q, q:2 * q] = 1
    ins = add_region(None, build_region(mask_t, "relocate", (1.5 * q, 1.5 * q), (2.2 * q, 1.8 * q), None))
    lat = {"samples": (z0.float().cpu() / 1.0)}
    n_t = max(1, args.iters * 5 // 7)
    kw = dict(steps=args.steps, skip_steps=2, n_transport=n_t, n_intensify=max(0, args.iters - n_t))
    edit = {}
    for early in (True, False, True, False):
        t = time.perf_counter()
        run_dragflow(model, lat, cond, cond, ins, settings=DragFlowSettings(early_exit=early, **kw))
        if cuda:
            torch.cuda.synchronize()
        edit.setdefault(early, []).append(time.perf_counter() - t)
    te, tf = min(edit[True]), min(edit[False])
    print(f"whole edit ({args.steps} steps, skip 2, {args.iters} iterations): early exit {te:.2f}s, "
          f"full forward {tf:.2f}s")
    print("peak memory: " + ("see table (CUDA max_memory_allocated)" if cuda else
                             "n/a on CPU; run on a GPU for max_memory_allocated per pass"))
    print(f"dragflow_speedup: {tf / te:.3f}")
    print(f"dragflow_iter_ratio_checkpointing: {r_on:.3f}  (node default; recompute adds F_double to both)")
    print(f"dragflow_iter_ratio: {r_off:.3f}  (early-exit iteration / full forward+backward, no recompute)")


if __name__ == "__main__":
    main()
