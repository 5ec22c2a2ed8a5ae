"""Train the toy FLUX model with rectified flow on toy-world scenes (CPU, one thread).

Objective (FLUX / rectified flow): x_t = (1−t)·x0 + t·ε, target v = ε − x0, loss = MSE between the
diffusion model's raw output and v; t ~ logit-normal(0, 1) pushed to high noise by FLUX's time
shift with the same mu (1.15) as ComfyUI's sampling schedule, with probability 0.85, else uniform
(SD3/FLUX-style [guess: the mix]). The network is ComfyUI's own FLUX (``build_flux`` →
ModelPatcher) and is called exactly as ComfyUI calls it:
``diffusion_model(x, timestep, context, y=pooled, guidance=g)``. Conditioning: fixed text tokens
and a pooled vector (seeded), plus a per-family pooled offset dropped 25 % of the time so the
plain pooled vector means "any family" [guess]; guidance uniform in [1, 5] so any FluxGuidance
value is in distribution [guess]. Scenes come from the families "single", "multi" and "crowded"
(4–5 objects: more object pixels per step); "textured_bg" is held out, never seen by the
model. Matmuls run under bf16 autocast (the CPU's AMX units make a step ~1.6× faster; weights,
optimiser and loss stay fp32). Earlier runs, kept
for the record: (1) fp32, lr 6e-4, unshifted t, families single/multi/textured_bg, smaller objects:
backgrounds but no objects after 1100 steps; (2) bf16, lr 1e-3, single/multi: smooth
backgrounds, objects only as scattered one-token specks after 2143 steps (33 min); (3) as now but
4 heads × 32 (RoPE axes 8/12/12): the same specks after 1100 steps; (4) 2 heads × 64 without
the locality prior of ``init_weights``: the same specks after 1100 steps; (5) with the prior but
no small scenes: noisy clouds after 1000 steps. (1)–(3) used 4 heads.

Multi-resolution training (as FLUX pretrains at low resolution first): ``--small-frac`` of the
steps use 16×16-latent scenes (64 tokens, 1–2 objects of the usual pixel size, batch 32), which
cost a fraction of a 32×32 step and are dense in object pixels; the rest use full scenes.
The shipped weights come from two runs: (6) this configuration from scratch, 3790 steps in 33
minutes on one thread (about half of its 20-step samples held compact objects), then (7)
resumed from (6) with ``--init`` (seed 1, lr 6e-4, warmup 50, ``--small-frac 0.5``, 2 threads):
12000 more steps, 74 minutes, cosine to 6e-5 — eval loss 0.183 → 0.136, about three quarters of
the samples hold compact signature objects. The record of (6) is kept under ``resumed_from`` in
toyflux.json and its loss curve continues in toyflux.log.jsonl. Reproduce::

    python -m bench.toybench.train --seed 0 --max-minutes 33 --out A.safetensors
    python -m bench.toybench.train --init A.safetensors --seed 1 --lr 6e-4 --warmup 50 \
        --steps 12000 --threads 2 --small-frac 0.5 --max-minutes 100

(bitwise reproduction needs the same thread counts; (6) stopped on its wall-clock budget).
(8) A continuation of (7) with the newer families in the mix (``--families single multi crowded
parts border overlap large``, seed 2, lr 2e-4) ran 732 steps in its 50-minute budget on two
shared cores and was not adopted: its per-family denoising errors equal the shipped weights' to
0.001 (record and loss log in ``bench/toybench/logs/``). The shipped weights already denoise the
new families as well as the ones they were trained on (``docs/toyworld_results.md``).

(9) Toy world v3 (``fluxdrag/toyworld/toyflux_v3.safetensors``, not shipped yet: every method's
calibrated thresholds depend on the shipped weights): resumed from the shipped weights in fp32
(``--no-bf16``: about 4× faster than bf16 autocast on this CPU), seed 3, lr 3e-4, warmup 50,
``--small-frac 0.2``, the earlier families once and the v3 families twice
(``--families single multi crowded parts border overlap large lit lit texture texture occlusion
occlusion articulated articulated``), ``--stop-at 08:25 --save-minutes 8``; its record and loss
log sit next to the weights (docs/toyworld_v3.md). A resumed run keeps the checkpoint's text
condition and family offsets and gives each family it lacks a seeded offset (``_conditioning``);
checkpoints are written atomically (``_save``), at least every ``--save-minutes``.

Two training-only adaptations, neither changes the function the network computes:
  * ComfyUI's RoPE kernel (comfy_kitchen) has no autograd formula; during training
    ``comfy.ldm.flux.math.apply_rope`` is replaced by the same rotation written in plain torch
    (max difference 1e-6, checked at start-up);
  * FLUX blocks add residuals in place (``img += …``), which autograd rejects; tensors saved for
    backward are copied at save time (``saved_tensors_hooks``).

Usage: ``python -m bench.toybench.train [--steps 3600] [--batch 16] [--seed 0]``;
``--plots-only`` redraws docs/toyworld_loss.png and docs/toyworld_samples.png from the saved model.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import time
from pathlib import Path

import torch

from fluxdrag.toyworld import model as tm
from fluxdrag.toyworld.scenes import FAMILIES

from .sampling import sample_scene_latents, sample_small_latents

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _rope1(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    x_ = x.to(dtype=freqs.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    out = freqs[..., 0] * x_[..., 0] + freqs[..., 1] * x_[..., 1]
    return out.reshape(*x.shape).type_as(x)


@contextlib.contextmanager
def trainable_flux():
    """Autograd-friendly RoPE, attention and copy-on-save for in-place residuals, for the duration.

    Attention: ComfyUI on a CPU picks sub-quadratic attention, which chunks the keys when free
    memory runs low and then exponentiates in place (``exp(out=)``: no autograd; a training run on
    a loaded machine crashed so), and which *adds* a boolean ``attention_mask`` to the scores (a
    hidden key got a −1 bias, not a mask: the toy Kontext's training, docs/contextdrag.md). Training
    uses PyTorch's scaled-dot-product attention on every device, as ComfyUI does on a GPU: boolean
    masks mean "attend where True"."""
    import comfy.ldm.flux.math as fm
    from comfy.ldm.modules.attention import attention_pytorch

    orig_attention = fm.optimized_attention
    fm.optimized_attention = attention_pytorch
    orig = fm.apply_rope
    q = torch.randn(1, 2, 5, 32)
    f = torch.randn(1, 1, 5, 16, 2, 2)
    ref = orig(q, q, f)[0]
    fm.apply_rope = lambda xq, xk, fr: (_rope1(xq, fr), _rope1(xk, fr))
    if (fm.apply_rope(q, q, f)[0] - ref).abs().max() > 1e-4:
        fm.apply_rope, fm.optimized_attention = orig, orig_attention
        raise RuntimeError("plain-torch RoPE differs from ComfyUI's; refusing to train")
    try:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t):
            yield
    finally:
        fm.apply_rope, fm.optimized_attention = orig, orig_attention


def init_weights(dm: torch.nn.Module, seed: int, local_attention: float = 3.0,
                 local_pairs: int = 3, qk_norm_scale: float = 1.25) -> dict:
    """Seeded init: Linear ~ N(0, 1/fan_in), norms 1, biases 0, modulations and output 0 (adaLN-Zero),
    plus a locality prior for image attention [guess, ours]:

    the q and k biases of every image-token projection get ``local_attention`` on the first
    component of the ``local_pairs`` highest-frequency RoPE pairs of the h and w axes, and their
    weights are scaled by 0.3, so after RMSNorm and RoPE the logits are ≈ Σ cos(ω·Δ) over those
    pairs: attention starts as a local average over about 3×3 tokens (text keys get no bias and are
    ignored). ``local_attention`` = 0 gives the plain init. Without it, three trainings stayed
    per-token denoisers at high noise (objects as one-token specks).
    """
    g = torch.Generator().manual_seed(seed)
    cfg = dm.params
    hidden, heads = cfg.hidden_size, cfg.num_heads
    head_dim = hidden // heads
    a_idx, a_h, _ = cfg.axes_dim
    prior = torch.zeros(head_dim)
    for first in (a_idx // 2, (a_idx + a_h) // 2):          # first pair of the h and w axes
        for p in range(first, first + local_pairs):
            prior[2 * p] = local_attention
    prior = prior.repeat(heads)                              # (hidden,) in (H D) order
    sd = {}
    for name, p in sorted(dm.state_dict().items()):
        if name.endswith(".scale"):
            v = torch.full_like(p, qk_norm_scale) if local_attention else torch.ones_like(p)
        elif name.endswith("bias") or "mod" in name or name.startswith("final_layer.linear"):
            v = torch.zeros_like(p)
        else:
            v = torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1])
        if local_attention and (name.endswith("img_attn.qkv.weight") or name.endswith("linear1.weight")):
            v[: 2 * hidden] *= 0.3                            # q and k rows
        if local_attention and (name.endswith("img_attn.qkv.bias") or name.endswith("linear1.bias")):
            v[:hidden] = prior
            v[hidden: 2 * hidden] = prior
        sd[name] = v
    return sd


def grow_single_blocks(sd: dict, config: dict, k: int) -> tuple[dict, dict]:
    """``k`` single-stream blocks appended after the last one, each starting as the identity.

    A FLUX single block adds ``gate · linear2(…)`` to its input, so a block whose ``linear2`` is
    zero passes its input through unchanged: the grown model computes exactly the trained one at
    step 0. The new blocks copy the last block's other weights (its modulation, norms and
    ``linear1``), so their attention starts from a trained pattern and ``linear2`` gets gradients
    at once [ours: growing depth this way is a choice, not from a paper]."""
    n = int(config["depth_single_blocks"])
    src = f"single_blocks.{n - 1}."
    out = dict(sd)
    for j in range(n, n + k):
        for name, v in sd.items():
            if name.startswith(src):
                new = f"single_blocks.{j}." + name[len(src):]
                out[new] = torch.zeros_like(v) if ".linear2." in new else v.clone()
    return out, {**config, "depth_single_blocks": n + k}


def sample_t(n: int, g: torch.Generator, mu: float = tm.FLUX_MU) -> torch.Tensor:
    """t ~ logit-normal(0, 1) shifted like the sampler's σ grid (FLUX time shift, e^mu), 15 % uniform."""
    t = torch.sigmoid(torch.randn(n, generator=g))
    t = math.exp(mu) * t / (math.exp(mu) * t + (1 - t))
    uni = torch.rand(n, generator=g)
    use_uni = torch.rand(n, generator=g) < 0.15
    return torch.where(use_uni, uni, t).clamp(1e-4, 1 - 1e-4)


def consistency_target(x0: torch.Tensor, start: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The velocity target for x_t = (1 − t)·start + t·ε whose one-step estimate x_t − t·v is
    ``x0``: ε − x0 + (1 − t)/t · (start − x0); for a plain sample (start = x0) the usual ε − x0."""
    return eps - x0 + ((1 - t) / t)[:, None, None, None] * (start - x0)


def fix_weights(x0: torch.Tensor, start: torch.Tensor, weight: float, tol: float = 0.02) -> torch.Tensor:
    """(B, 1, H, W) loss weights: ``weight`` where a consistency sample's start (the naive copy)
    differs from its truth (``tol`` on any channel), grown by one latent pixel; 1 elsewhere and on
    plain samples. The copy and the truth differ on a small share of the pixels (the moved
    object's shading, the old and new shadows, the hole), and the plain denoising error everywhere
    else drowns that share's gradient; the batch loss divides by the mean weight, so its scale
    stays that of the plain loss."""
    diff = ((start - x0).abs().amax(1, keepdim=True) > tol).float()
    diff = torch.nn.functional.max_pool2d(diff, 3, stride=1, padding=1)
    return 1.0 + (weight - 1.0) * diff


def consistency_loss(v: torch.Tensor, x0: torch.Tensor, start: torch.Tensor, eps: torch.Tensor,
                     t: torch.Tensor, fix_weight: float = 1.0) -> torch.Tensor:
    """The training loss: squared error of the velocity ``v`` against :func:`consistency_target`,
    weighed by :func:`fix_weights` (``fix_weight`` 1: the plain mean)."""
    err = (v.float() - consistency_target(x0, start, eps, t)).pow(2)
    if fix_weight == 1.0:
        return err.mean()
    w = fix_weights(x0, start, fix_weight)
    return (w * err).mean() / w.mean()


def _batch(job: tuple) -> tuple:
    """One training batch: (small, x0, family indices, [starts] or []) for (small, seed, args)."""
    small, seed, args = job
    if small:   # 16×16 latent (64 tokens): same objects, ~5× cheaper per scene
        x0 = sample_small_latents(args.small_batch, seed=seed)
        return True, x0, torch.zeros(x0.shape[0], dtype=torch.long), []
    x0, fam, *st = sample_scene_latents(args.batch, seed=seed, families=tuple(args.families),
                                        fix_frac=args.fix_frac)
    return False, x0, fam, st


def _worker_init() -> None:
    torch.set_num_threads(1)


def prefetch(fn, jobs, workers: int):
    """``fn(job)`` for each of ``jobs``, computed ahead by ``workers`` spawned processes (at most
    2 × workers ahead) and yielded in order; the pool ends with the generator."""
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init)
    ahead: list = []
    try:
        for job in jobs:
            ahead.append(pool.apply_async(fn, (job,)))
            if len(ahead) >= 2 * workers:
                yield ahead.pop(0).get()
        while ahead:
            yield ahead.pop(0).get()
    finally:
        pool.terminate()


def _batches(args):
    """Batches drawn ahead by ``args.workers`` processes, in step order (scene rendering is the
    bottleneck once the model runs on a GPU). The small/full choice comes from its own seeded
    stream here, so a run with workers draws other (equally seeded) batches than one without."""
    g_small = torch.Generator().manual_seed(args.seed + 2)
    jobs = ((float(torch.rand((), generator=g_small)) < args.small_frac, args.seed * 10**6 + step, args)
            for step in range(1, args.steps + 1))
    return prefetch(_batch, jobs, args.workers)


def read_checkpoint(path: Path) -> tuple[dict, dict, list[str] | None]:
    """A saved toy checkpoint: (fp32 state dict, its record ``.json``, the lines of its loss log
    ``.log.jsonl``, None when it has none), for a resumed run to continue from."""
    from safetensors.torch import load_file

    path = Path(path)
    log = path.with_suffix(".log.jsonl")
    lines = [ln for ln in log.read_text().splitlines() if ln] if log.exists() else None
    return {k: v.float() for k, v in load_file(str(path)).items()}, tm.read_meta(path.with_suffix(".json")), lines


SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def _save(dm_state: dict, meta: dict, out: Path, dtype: torch.dtype = torch.float32) -> None:
    """Weights (stored as ``dtype``; loading casts them to fp32) and record, each written to a
    temporary file then renamed (atomic: a reader or a resume never sees a half-written
    checkpoint; the record is renamed last)."""
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".tmp")
    save_file({k: v.detach().to(dtype).cpu().contiguous() for k, v in dm_state.items()}, str(tmp))
    tmp_meta = out.with_name(out.stem + ".json.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out)
    os.replace(tmp_meta, out.with_suffix(".json"))


def _conditioning(args, config: dict, init_meta: dict | None) -> dict:
    """The fixed text tokens, pooled vector and family offsets: those of the resumed weights
    (their families keep their offsets), plus a seeded offset for every family they lack
    (seed ``cond_seed`` + 1000 + the family's index in ``FAMILIES``)."""
    fams = tuple(dict.fromkeys(args.families))
    if init_meta is None:
        cond = tm.make_conditioning_tensors(args.cond_seed, config, families=fams)
        cond["seed"] = args.cond_seed
        return cond
    c = init_meta["conditioning"]
    cond = {"seed": c["seed"], "context": torch.tensor(c["context"]), "pooled": torch.tensor(c["pooled"]),
            "family_offsets": {k: torch.tensor(v) for k, v in c["family_offsets"].items()}}
    for f in fams:
        if f not in cond["family_offsets"]:
            g = torch.Generator().manual_seed(int(c["seed"]) + 1000 + FAMILIES.index(f))
            cond["family_offsets"][f] = torch.randn(1, config["vec_in_dim"], generator=g)
    return cond


def _stop_time(stop_at: str | None) -> float | None:
    """Unix time of the next ``HH:MM`` UTC (None: no clock deadline)."""
    if not stop_at:
        return None
    hh, mm = (int(v) for v in stop_at.split(":"))
    now = dt.datetime.now(dt.timezone.utc)
    t = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if t <= now:
        t += dt.timedelta(days=1)
    return t.timestamp()


def _cond_lists(cond: dict) -> dict:
    return {
        "seed": cond["seed"],
        "context": cond["context"].tolist(),
        "pooled": cond["pooled"].tolist(),
        "family_offsets": {k: v.tolist() for k, v in cond["family_offsets"].items()},
        "guidance": tm.DEFAULT_GUIDANCE,
    }


def train(args) -> None:
    from tools import comfy_env

    comfy_env.import_comfy()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    config = dict(tm.TOY_CONFIG)
    prev_log: list[str] = []
    prev_training: dict | None = None
    init_meta: dict | None = None
    offset = 0
    init_sd = None
    init_log: list[str] | None = None
    if args.init:   # resume: continue from saved (EMA) weights, keep their log and step count
        init_sd, init_meta, init_log = read_checkpoint(Path(args.init))
        config = dict(init_meta.get("unet_config") or config)
        if args.grow_single:
            init_sd, config = grow_single_blocks(init_sd, config, args.grow_single)
    elif args.grow_single:
        raise SystemExit("--grow-single needs --init (it grows a trained model)")
    if args.config:
        if args.init:
            raise SystemExit("--config sets the architecture of a model trained from scratch; "
                             "a resumed run keeps its checkpoint's (use --grow-single to add blocks)")
        config.update(json.loads(args.config))
    patcher = comfy_env.build_flux(config)
    dm = patcher.model.diffusion_model
    dev = torch.device(args.device)
    if init_sd is not None:
        dm.load_state_dict(init_sd)
        prev_training = init_meta["training"]
        offset = int(prev_training["steps"])
        prev_log = init_log or []
    else:
        dm.load_state_dict(init_weights(dm, args.seed))
    dm.to(dev)
    dm.train()
    ema = {k: v.detach().clone() for k, v in dm.state_dict().items()}
    params = [p for p in dm.parameters()]
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    cond = _conditioning(args, config, init_meta)
    fam_off = torch.zeros(len(FAMILIES), config["vec_in_dim"])                   # (F, V)
    for f in args.families:
        fam_off[FAMILIES.index(f)] = cond["family_offsets"][f][0]
    fam_off, pooled, context = fam_off.to(dev), cond["pooled"].to(dev), cond["context"].to(dev)
    g = torch.Generator().manual_seed(args.seed + 1)
    log_path = out.with_suffix(".log.jsonl")
    log_f = log_path.open("w")
    for ln in prev_log:
        log_f.write(ln + "\n")
    print(f"params {n_params}, steps {args.steps}, batch {args.batch}", flush=True)
    losses: list[float] = []
    deadline = _stop_time(args.stop_at)
    last_save = time.time()
    t0 = time.time()
    step = 0
    meta = {}
    batches = _batches(args) if args.workers else None   # spawned workers: no CUDA state forked
    with trainable_flux():
        for step in range(1, args.steps + 1):
            lr = args.lr * min(1.0, step / args.warmup) * (
                0.1 + 0.45 * (1 + math.cos(math.pi * step / args.steps)))
            for grp in opt.param_groups:
                grp["lr"] = lr
            if batches is not None:
                small, x0, fam, st = next(batches)
            else:
                small = float(torch.rand((), generator=g)) < args.small_frac
                _, x0, fam, st = _batch((small, args.seed * 10**6 + step, args))
            b = x0.shape[0]
            eps = torch.randn(x0.shape, generator=g)
            t = sample_t(b, g, mu=args.t_mu)
            start = x0
            if not small and st:   # consistency task: x_t from the naive copy, x̂0 = the truth
                start = st[0]
                fixing = (start != x0).flatten(1).any(1)
                lo, hi = args.fix_sigmas
                t = torch.where(fixing, lo + (hi - lo) * torch.rand(b, generator=g), t)
            xt = (1 - t)[:, None, None, None] * start + t[:, None, None, None] * eps
            keep = (torch.rand(b, generator=g) > 0.25).float()[:, None] * (0.0 if small else 1.0)
            guid = 1.0 + 4.0 * torch.rand(b, generator=g)
            x0, start, eps, t, xt, keep, fam, guid = (v_.to(dev) for v_ in (x0, start, eps, t, xt, keep, fam, guid))
            y = pooled.expand(b, -1) + keep * fam_off[fam]
            ctx = context.expand(b, -1, -1)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
                v = dm(xt, t, ctx, y=y, guidance=guid)
            loss = consistency_loss(v, x0, start, eps, t, args.fix_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            n_ema = step - args.warmup
            d = 0.0 if n_ema < 0 else min(args.ema, (1 + n_ema) / (10 + n_ema))
            with torch.no_grad():
                for k, val in dm.state_dict().items():
                    ema[k].mul_(d).add_(val.detach(), alpha=1 - d)
            losses.append(float(loss.detach()))
            elapsed = time.time() - t0
            if step % 10 == 0:
                rec = {"step": offset + step, "loss": sum(losses[-10:]) / len(losses[-10:]), "lr": lr,
                       "elapsed_s": round(elapsed, 1)}
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
            if step % 100 == 0:
                print(f"step {offset + step} loss {sum(losses[-100:]) / 100:.4f} lr {lr:.2e} "
                      f"{elapsed / step:.2f}s/step", flush=True)
            stop = elapsed > args.max_minutes * 60 or (deadline is not None and time.time() > deadline)
            due = time.time() - last_save > args.save_minutes * 60
            if step % 250 == 0 or step == args.steps or stop or due:
                last_save = time.time()
                meta = {
                    "unet_config": config,
                    "conditioning": _cond_lists(cond),
                    "training": {
                        "seed": args.seed, "steps": offset + step, "planned_steps": offset + args.steps,
                        "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "ema": args.ema,
                        "t_sampling": f"logit-normal(0,1) shifted by e^{args.t_mu} 85% + uniform 15%",
                        "family_dropout": 0.25, "guidance_range": [1.0, 5.0],
                        "autocast": "bf16" if args.bf16 else "off", "stored": args.save_dtype,
                        "small_frac": args.small_frac, "small_batch": args.small_batch,
                        "threads": args.threads, "wall_minutes": round(elapsed / 60, 2),
                        "final_loss": sum(losses[-100:]) / len(losses[-100:]),
                        "params": n_params, "weights": "EMA",
                        "scene_families": list(dict.fromkeys(args.families)),
                        "family_draws": {f: args.families.count(f) for f in dict.fromkeys(args.families)},
                        "held_out_families": [f for f in FAMILIES if f not in args.families],
                        "scene_seeds": "make_scene seeds >= 10**8 (benchmarks use smaller ones)",
                        "resumed_from": prev_training,
                        "grew_single_blocks": args.grow_single,
                        "fix_frac": args.fix_frac, "fix_sigmas": list(args.fix_sigmas),
                        "fix_weight": args.fix_weight,
                    },
                    "latent": {"channels": 16, "size": [32, 32], "space": "FLUX model space"},
                }
                _save(ema, meta, out, SAVE_DTYPES[args.save_dtype])
            if stop:
                print(f"stopping at step {step}: wall-clock budget ({args.max_minutes} min"
                      f"{', or ' + args.stop_at + ' UTC' if args.stop_at else ''})", flush=True)
                break
    log_f.close()
    if batches is not None:
        batches.close()        # ends the generator: its pool is terminated
    dm.load_state_dict(ema)
    dm.eval()
    meta["training"]["eval_loss"] = eval_loss(dm, cond, args.seed, tuple(dict.fromkeys(args.families)), dev=dev)
    _save(ema, meta, out, SAVE_DTYPES[args.save_dtype])
    print(json.dumps(meta["training"], indent=1), flush=True)


@torch.no_grad()
def eval_loss(dm, cond: dict, seed: int, families: tuple[str, ...], n: int = 64,
              dev: torch.device | None = None) -> float:
    """Rectified-flow loss of the (EMA) model on a fixed held-out batch, t on a fixed grid."""
    dev = dev or torch.device("cpu")
    x0, _ = sample_scene_latents(n, seed=seed * 10**6 + 999_999, families=families)
    g = torch.Generator().manual_seed(12345)
    eps = torch.randn(x0.shape, generator=g)
    t = (torch.arange(n) + 0.5) / n
    xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
    x0, eps, t, xt = x0.to(dev), eps.to(dev), t.to(dev), xt.to(dev)
    y = cond["pooled"].to(dev).expand(n, -1)
    v = dm(xt, t, cond["context"].to(dev).expand(n, -1, -1), y=y, guidance=torch.full((n,), 3.5, device=dev))
    return float(torch.nn.functional.mse_loss(v, eps - x0))


def plots(args) -> None:
    """docs/toyworld_loss.png from the log, docs/toyworld_samples.png from the saved model."""
    from fluxdrag.toyworld.scenes import detect_all, make_scene, to_rgb

    from . import viz

    out = Path(args.out)
    DOCS.mkdir(exist_ok=True)
    recs = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines() if line]
    if recs:
        viz.line_plot([r["step"] for r in recs], [r["loss"] for r in recs], DOCS / "toyworld_loss.png",
                      title="toy FLUX: rectified-flow training loss (mean of 10 steps)",
                      xlabel="step", ylabel="MSE(v)", log_y=True)
    torch.set_num_threads(args.threads)
    patcher, _ = tm.load_toy_model(out)
    dm = patcher.model.diffusion_model
    meta = tm.read_meta(out.with_suffix(".json"))
    tiles, labels = [], []
    g = torch.Generator().manual_seed(args.seed + 7)
    trained = meta["training"]["scene_families"]
    fams = [None] * 4 + [trained[i % len(trained)] for i in range(4)]
    for fam in fams:
        cond = tm.conditioning_from_meta(meta, fam)
        noise = torch.randn(1, 16, 32, 32, generator=g)
        x = tm.euler_sample(dm, noise, cond, steps=20)[0]
        found = detect_all(x)
        tiles.append(to_rgb(x))
        labels.append(f"sample ({fam or 'any family'}): {len(found)} obj detected")
    for i in range(8):
        sc = make_scene(900 + i, trained[i % len(trained)])
        tiles.append(to_rgb(sc.latent))
        labels.append(f"real {sc.family}: {len(sc.objects)} obj")
    viz.save_grid(tiles, DOCS / "toyworld_samples.png", ncols=4, labels=labels,
                  title="top: 20-step Euler samples of toyflux  |  bottom: real scenes")
    print("wrote", DOCS / "toyworld_loss.png", DOCS / "toyworld_samples.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.996)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cond-seed", type=int, default=2024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save-dtype", choices=sorted(SAVE_DTYPES), default="fp32",
                   help="storage of the saved weights (fp16 halves the file, e.g. to bring a wider "
                        "model under the device tool's 16 MiB a file; training stays fp32)")
    p.add_argument("--families", nargs="+", default=["single", "multi", "crowded"],
                   choices=list(FAMILIES), help="a family named twice is drawn twice as often")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in fp32")
    p.add_argument("--small-frac", type=float, default=0.7,
                   help="share of steps on small 16×16-latent scenes (multi-resolution training)")
    p.add_argument("--small-batch", type=int, default=32)
    p.add_argument("--max-minutes", type=float, default=33.0)
    p.add_argument("--stop-at", default=None, help="also stop at this UTC time (HH:MM)")
    p.add_argument("--save-minutes", type=float, default=8.0,
                   help="save the checkpoint and record at least this often (atomically)")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="skip the loss/sample plots at the end")
    p.add_argument("--out", default=str(tm.WEIGHTS))
    p.add_argument("--init", default=None,
                   help="resume from these weights (a saved toyflux.safetensors with its .json/.log.jsonl); "
                        "--seed should differ from the earlier run's so new scenes are drawn")
    p.add_argument("--plots-only", action="store_true")
    p.add_argument("--t-mu", type=float, default=tm.FLUX_MU,
                   help="time shift of the logit-normal t (default FLUX's 1.15, the sampler's; 0 = "
                        "unshifted, more steps at the low and middle σ where edits and inversions act)")
    p.add_argument("--config", default=None,
                   help='from scratch: JSON overrides of TOY_CONFIG, e.g. \'{"hidden_size": 256, "num_heads": 4}\' '
                        "(head dim stays 64 = the RoPE axes 8+28+28)")
    p.add_argument("--device", default="cpu", help="where the model trains (e.g. cuda); scenes are "
                   "rendered on the CPU")
    p.add_argument("--workers", type=int, default=0,
                   help="processes rendering batches ahead (0: in the training loop, as before)")
    p.add_argument("--fix-frac", type=float, default=0.0,
                   help="share of the v3 ground-truth edits drawn whose x_t starts from the naive "
                        "copy of the same drag (target: the truth) — the consistency task")
    p.add_argument("--fix-sigmas", type=float, nargs=2, default=(0.35, 0.9),
                   help="the consistency task's t range (uniform)")
    p.add_argument("--fix-weight", type=float, default=1.0,
                   help="loss weight where a consistency sample's copy differs from its truth "
                        "(1: the plain loss, as before; the loss is divided by the mean weight)")
    p.add_argument("--grow-single", type=int, default=0,
                   help="with --init: append this many identity-initialised single-stream blocks")
    args = p.parse_args(argv)
    lo, hi = args.fix_sigmas
    if not 0 < lo < hi < 1:
        p.error(f"--fix-sigmas needs 0 < lo < hi < 1 (the target divides by t), got {lo} {hi}")
    if not args.plots_only:
        train(args)
    if args.plots or args.plots_only:
        plots(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
