"""Fine-tune the toy FLUX into a toy Kontext: it reads a reference image the way ComfyUI feeds
FLUX.1 Kontext (CPU, one thread; never run in CI).

The reference enters exactly as ComfyUI's ``ReferenceLatent`` conditioning does: the diffusion
model is called as ``diffusion_model(x, t, context, y=pooled, guidance=g, ref_latents=[ref])``,
so ComfyUI's own ``comfy.ldm.flux.model.Flux._forward`` appends the reference tokens after the
image tokens with position ids (1, h, w) (the default ``offset`` method, index 1) and drops their
outputs. Nothing else about the network changes (same config, same weights file layout).

Training pairs (our design [guess], the toy counterpart of Kontext's edit pairs; nothing here
mentions a drag, a moved object or a rewritten position id):
  * ``keep`` — target = reference (an empty instruction reproduces the image);
  * ``remove`` — one or more objects' tokens (their token cells, grown by 0–1 token) are hidden
    from every query by a key mask; the target is the scene re-rendered without those objects
    (Kontext's "remove the object" edit, with the instruction given as a mask instead of text);
  * ``inpaint`` — random rectangles of reference tokens are hidden; the target is the scene, minus
    any object left with no visible token (what cannot be seen is not invented; what is partly
    seen is completed);
  * ``harmonize`` (v3 scenes only; 0 in the default mix) — one object of the reference carries the
    shading it would have elsewhere (see ``misshade``); the target is the consistent scene. The toy
    counterpart of what a real Kontext does to a pasted object: it relights it to the scene. No
    hidden token and no move: the pair never shows a drag.
A hidden token is a key masked out of attention (an additive −inf key mask passed as ComfyUI's
``attention_mask`` keyword), the same thing an attention mask on reference keys does at run time.
Scenes: 32×32 latents of the families single, multi, crowded, parts, border, overlap and large
(``textured_bg`` stays held out, as for the toy FLUX), and 16×16 small scenes (``--small-frac``).
Time t, guidance and the family-offset dropout are drawn as in ``train.py``. Starts from the
shipped toy FLUX weights; EMA weights are saved.

Reproduce the shipped ``fluxdrag/toyworld/toykontext.safetensors`` (it stopped on its 45-minute budget at
step 1433 of 1500, ~1.9 s/step on a shared core; held-out eval loss keep 0.026, remove 0.021,
inpaint 0.027 against the toy FLUX's 0.136 without a reference; bitwise reproduction needs the
same stopping step)::

    OMP_NUM_THREADS=1 python -m bench.toybench.train_kontext --max-minutes 45

bf16 autocast (the toy FLUX's setting) is off by default: on this CPU (no AMX) it made a step
about 4× slower than fp32.

Resume: ``--init fluxdrag/toyworld/toykontext.safetensors --seed 1 ...`` continues from those weights and
keeps their log and step count (as ``train.py --init``). ``--plots-only`` redraws the sample grid.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fluxdrag.toyworld import model as tm
from fluxdrag.toyworld import scenes as ts
from fluxdrag.toyworld.scenes_v3 import SHADOW_THRESHOLD

from .train import SAVE_DTYPES, _save, _stop_time, read_checkpoint, sample_t, trainable_flux

KONTEXT_WEIGHTS = tm.KONTEXT_WEIGHTS
TRAIN_FAMILIES = ("single", "multi", "crowded", "parts", "border", "overlap", "large")
#: toy world v3 (``fluxdrag/toyworld/scenes_v3.py``): lit and shadowed scenes; drawn twice as often as an old
#: family by the default ``--families`` (as the toy FLUX v3's training)
V3_TRAIN_FAMILIES = ("lit", "texture", "occlusion", "articulated")
DEFAULT_FAMILIES = TRAIN_FAMILIES + V3_TRAIN_FAMILIES * 2
TASKS = ("keep", "remove", "inpaint", "harmonize")
#: tasks drawn by ``eval_losses`` on the old (unlit) families; ``harmonize`` needs a light
UNLIT_TASKS = TASKS[:3]


# ----------------------------------------------------------------------------- data

def token_cells(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) latent-resolution bool mask → (H/2, W/2) bool: token cells touching it."""
    return F.max_pool2d(mask[None, None].float(), 2)[0, 0] > 0


def grow(tok: torch.Tensor, r: int) -> torch.Tensor:
    if r <= 0:
        return tok
    return F.max_pool2d(tok[None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0] > 0


def _small_scene(g: torch.Generator, size: int = 16):
    """(background, objects) of a 16×16 scene with toy-FLUX-sized objects (as sample_small_latents)."""
    width = height = size * ts.PIXELS_PER_LATENT
    while True:
        bg = ts.render_background(g, size, size)
        palette = torch.randperm(ts.PALETTE_SIZE, generator=g)[: ts._randint(g, 1, 2)].tolist()
        objs: list = []
        for k in palette:
            o = ts._random_object(g, k, (18.0, 30.0), width, height, objs)
            if o is not None:
                objs.append(o)
        if objs:
            return bg, objs


def _scene(g: torch.Generator, size: int, families: tuple[str, ...], with_light: bool = False):
    """(render, objects, shadows, family index) of a training scene (seeds ≥ 10**8, as train.py);
    with ``with_light`` also the scene's ``Light`` (None for the unlit families and small scenes).

    ``render(objects)`` → (latent, visible masks) of those objects on the scene's background, in
    their list order (later on top), lit and shadowed like the scene for the v3 families: removing
    an object also removes its shadow and shows the lit background there (and, in ``occlusion``,
    the part of an object it hid). ``shadows``: (K, H, W) cast shadows, or None (unlit)."""
    if size != 32:
        bg, objs = _small_scene(g, size)
        out = (lambda o: ts.compose(bg, o)), objs, None, 0
        return (*out, None) if with_light else out
    f = families[ts._randint(g, 0, len(families) - 1)]
    while True:
        try:
            sc = ts.make_scene(10**8 + ts._randint(g, 0, 10**8), f, mask_in_json=False)
            out = sc.render, list(sc.objects), sc.shadows, ts.FAMILIES.index(f)
            return (*out, sc.light) if with_light else out
        except (RuntimeError, ValueError):
            continue


def moved_light(light, obj, shift: tuple[float, float], angle: float):
    """The light under which ``obj`` at its own place is shaded as it would be after the rigid
    motion M (turned by ``angle`` about its centre c, then shifted by ``shift`` image px): the
    shading is invariant under moving the object and the light together, so that is the light
    moved by M⁻¹, L' = R⁻¹(L − c − t) + c, its height kept (exact for the v3 shading: normals,
    tilt, falloff and incidence all follow)."""
    from dataclasses import replace

    c, s = math.cos(angle), math.sin(angle)
    lx, ly = light.x - obj.cx - shift[0], light.y - obj.cy - shift[1]
    return replace(light, x=obj.cx + c * lx + s * ly, y=obj.cy - s * lx + c * ly)


def misshade(g: torch.Generator, obj, light, shift_px: tuple[float, float] = (16.0, 96.0),
             turn: float = 0.5) -> torch.Tensor:
    """(16, H, W) ``obj``'s latent values (32×32 latent) shaded as the object would be after a
    random rigid motion (:func:`moved_light`): the light a copy pasted from there would carry.
    |shift| ~ U(``shift_px``) image px in a random direction; a uniform turn with probability
    ``turn``, else none [guess: the spread of the benchmarks' drags]."""
    from fluxdrag.toyworld import scenes_v3 as v3

    h = w = 32
    a = float(torch.rand((), generator=g)) * 2 * math.pi
    r = shift_px[0] + float(torch.rand((), generator=g)) * (shift_px[1] - shift_px[0])
    th = (float(torch.rand((), generator=g)) * 2 - 1) * math.pi if float(torch.rand((), generator=g)) < turn else 0.0
    moved = moved_light(light, obj, (r * math.cos(a), r * math.sin(a)), th)
    val, _ = v3._value(obj, h, w)
    return val * v3.intensity(obj, moved, h, w)[None]


def make_pair(g: torch.Generator, task: str, size: int = 32, families: tuple[str, ...] = TRAIN_FAMILIES):
    """(reference (16,H,W), target (16,H,W), hidden token mask (H/2·W/2,) bool, family index).

    v3 ``remove``: the removed objects' token cells are hidden and, half of the time, also their
    cast shadow's (shadow > ``SHADOW_THRESHOLD``, as the v3 scenes' editable region); the target
    has neither the objects nor their shadows (lit background there) [guess]."""
    if task == "harmonize":
        return _harmonize_pair(g, size, families)
    render, objs, shadows, fam = _scene(g, size, families)
    ref, masks = render(objs)
    n_tok = (size // 2) ** 2
    hidden = torch.zeros(size // 2, size // 2, dtype=torch.bool)
    keep_objs = list(objs)
    if task == "remove":
        n = ts._randint(g, 1, len(objs))
        gone = torch.randperm(len(objs), generator=g)[:n].tolist()
        r = ts._randint(g, 0, 1)
        with_shadow = shadows is not None and float(torch.rand((), generator=g)) < 0.5
        for i in gone:
            hidden |= grow(token_cells(masks[i]), r)
            if with_shadow:
                hidden |= token_cells(shadows[i] > SHADOW_THRESHOLD)
        keep_objs = [o for i, o in enumerate(objs) if i not in gone]
    elif task == "inpaint":
        side = size // 2
        for _ in range(ts._randint(g, 1, 2)):
            hh, ww = ts._randint(g, 2, side // 2), ts._randint(g, 2, side // 2)
            y0, x0 = ts._randint(g, 0, side - hh), ts._randint(g, 0, side - ww)
            hidden[y0:y0 + hh, x0:x0 + ww] = True
        keep_objs = [o for i, o in enumerate(objs) if (token_cells(masks[i]) & ~hidden).any()]
    target = ref if len(keep_objs) == len(objs) else render(keep_objs)[0]
    return ref, target, hidden.reshape(n_tok), fam


def _harmonize_pair(g: torch.Generator, size: int, families: tuple[str, ...]):
    """A ``harmonize`` pair: the consistent v3 scene as the target, the same scene with one
    visible object's pixels shaded by ``misshade`` as the reference (its shape, place and cast
    shadow right: only the light on it is wrong)."""
    lit = tuple(f for f in families if f in V3_TRAIN_FAMILIES)
    if size != 32 or not lit:
        raise ValueError("harmonize pairs need 32×32 scenes of a v3 (lit) family")
    n_tok = (size // 2) ** 2
    while True:
        render, objs, _, fam, light = _scene(g, size, lit, with_light=True)
        target, masks = render(objs)
        seen = [i for i in range(len(objs)) if masks[i].sum() >= 4]
        if seen:
            break
    i = seen[ts._randint(g, 0, len(seen) - 1)]
    ref = torch.where(masks[i][None], misshade(g, objs[i], light), target)
    return ref, target, torch.zeros(n_tok, dtype=torch.bool), fam


def make_batch(g: torch.Generator, task: str, n: int, size: int, families=TRAIN_FAMILIES):
    refs, tgts, hid, fams = [], [], [], []
    for _ in range(n):
        r, t, h, f = make_pair(g, task, size, families)
        refs.append(r)
        tgts.append(t)
        hid.append(h)
        fams.append(f)
    return torch.stack(refs), torch.stack(tgts), torch.stack(hid), torch.tensor(fams)


def drift(x0: torch.Tensor, t: torch.Tensor, g: torch.Generator, blur: float = 0.6,
          noise: float = 0.15, ramp: float = 0.25) -> torch.Tensor:
    """(B, 16, H, W) a sampler-like error to add to ``x0`` in a ``keep`` pair's noisy input.

    Why: the exact ``keep`` velocity is v(x_t) = (x_t − reference) / t for *every* x_t, but the
    plain pairs only show x_t on the straight line from the reference to the noise. A sampler's
    x_t leaves that line as soon as one step is off (the first toy Kontext: x0 error 0.02 one
    step from the data at t = 0.14, but 0.14 after 20 Euler steps: the later steps trusted x_t and
    kept the drift). So part of the keep pairs start from x0 + δ, δ a mix of lost detail
    (a·(blur(x0) − x0), a ~ U(0, ``blur``): rings turn into blobs) and a smooth random field
    (RMS ~ U(0, ``noise``)), while the target stays the reference: the model learns to pull x_t
    back to the reference. δ is scaled by min(1, t / ``ramp``) so the velocity target
    (1 − t)·δ / t stays bounded at small t [guess; the idea of training on off-trajectory inputs is
    the exposure-bias remedy of input perturbation, not Kontext's recipe]."""
    b, c, h, w = x0.shape
    soft = F.avg_pool2d(F.pad(x0, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    a = torch.rand(b, 1, 1, 1, generator=g) * blur
    field = F.interpolate(torch.randn(b, c, max(h // 4, 1), max(w // 4, 1), generator=g), size=(h, w),
                          mode="bilinear", align_corners=False)
    field = field / field.pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-6)
    field = field * torch.rand(b, 1, 1, 1, generator=g) * noise
    scale = (t / ramp).clamp(max=1.0)[:, None, None, None]
    return scale * (a * (soft - x0) + field)


def key_mask(hidden: torch.Tensor, text_tokens: int, image_tokens: int) -> torch.Tensor:
    """(B, 1, 1, T + N + N_ref) additive float attention mask: 0 = visible, −inf on the hidden
    reference keys. Additive, not boolean: ComfyUI's CPU sub-quadratic attention *adds* a mask to
    the scores, so a boolean one gave hidden keys a −1 bias instead of hiding them (the toy Kontext
    up to step 4902 was trained so; docs/contextdrag.md); an additive mask means the same on every
    attention ComfyUI may pick."""
    b = hidden.shape[0]
    vis = torch.ones(b, text_tokens + image_tokens, dtype=torch.bool)
    keep = torch.cat([vis, ~hidden], 1)[:, None, None, :]
    return torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))


def call(dm, x, t, cond: dict, y, guidance, ref, hidden=None):
    """The diffusion model called as ComfyUI calls Kontext (reference via ``ref_latents``)."""
    b = x.shape[0]
    kw = {}
    if hidden is not None and hidden.any():
        kw["attention_mask"] = key_mask(hidden.cpu(), cond["context"].shape[1],
                                        (x.shape[-2] // 2) * (x.shape[-1] // 2)).to(x.device)
    return dm(x, t, cond["context"].expand(b, -1, -1), y=y, guidance=guidance, ref_latents=[ref], **kw)


# ----------------------------------------------------------------------------- training

def _draw(g: torch.Generator, task_p: torch.Tensor, args) -> tuple:
    """One batch: (task, small, ref, x0, hidden, family indices), drawn with ``g`` (the small/full
    choice, then the task by the weights ``task_p``; ``harmonize`` only on lit 32×32 scenes)."""
    small = float(torch.rand((), generator=g)) < args.small_frac
    task = TASKS[int(torch.multinomial(task_p, 1, generator=g))]
    small = small and task != "harmonize"          # small scenes have no light
    size, n = (16, args.small_batch) if small else (32, args.batch)
    return (task, small, *make_batch(g, task, n, size, tuple(args.families)))


def _job(job: tuple) -> tuple:
    """:func:`_draw` in a worker for (step seed, task weights, args): its own generator, so
    workers need no shared stream."""
    seed, mix, args = job
    return _draw(torch.Generator().manual_seed(seed), torch.tensor(mix), args)


def _worker_batches(args, mix: list[float]):
    """Batches rendered ahead by ``args.workers`` processes, in step order (on a GPU the scenes,
    not the model, are the bottleneck); a run with workers draws other (equally seeded) batches
    than one without."""
    from .train import prefetch

    jobs = ((10**7 * (args.seed + 1) + step, mix, args) for step in range(1, args.steps + 1))
    return prefetch(_job, jobs, args.workers)


def _conditioning(meta: dict) -> dict:
    c = meta["conditioning"]
    return {"context": torch.tensor(c["context"]), "pooled": torch.tensor(c["pooled"]),
            "family_offsets": {k: torch.tensor(v) for k, v in c["family_offsets"].items()}}


def train(args) -> None:
    from tools import comfy_env

    comfy_env.import_comfy()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    init_sd, base_meta, init_log = read_checkpoint(Path(args.init))
    config = dict(base_meta["unet_config"])
    patcher = comfy_env.build_flux(config, state_dict=init_sd)
    dm = patcher.model.diffusion_model
    dev = torch.device(args.device)
    dm.to(dev)
    prev_log: list[str] = []
    offset = 0
    prev_training = base_meta["training"]
    is_kontext = "kontext" in base_meta
    if is_kontext and init_log is not None:   # resume a toy-Kontext run
        offset = int(prev_training["steps"])
        prev_log = init_log
    dm.train()
    ema = {k: v.detach().clone() for k, v in dm.state_dict().items()}
    params = list(dm.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    cond = _conditioning(base_meta)
    fam_off = torch.zeros(len(ts.FAMILIES), config["vec_in_dim"])
    for f, v in cond["family_offsets"].items():
        if f in ts.FAMILIES:
            fam_off[ts.FAMILIES.index(f)] = v[0]
    fam_off = fam_off.to(dev)
    dcond = {"context": cond["context"].to(dev), "pooled": cond["pooled"].to(dev)}
    g = torch.Generator().manual_seed(10**6 + args.seed)
    mix = list(args.task_mix) + [0.0] * (len(TASKS) - len(args.task_mix))
    task_p = torch.tensor(mix, dtype=torch.float)
    log_f = out.with_suffix(".log.jsonl").open("w")
    for ln in prev_log:
        log_f.write(ln + "\n")
    print(f"steps {args.steps}, batch {args.batch}/{args.small_batch}, tasks {dict(zip(TASKS, mix))}",
          flush=True)
    losses: list[float] = []
    t0 = time.time()
    meta: dict = {}
    stop_t = _stop_time(args.stop_at)
    budget = args.max_minutes * 60 if stop_t is None else min(args.max_minutes * 60, stop_t - time.time())
    last_save = time.time()
    batches = _worker_batches(args, mix) if args.workers else None     # spawned: no CUDA state forked
    with trainable_flux():
        for step in range(1, args.steps + 1):
            # cosine over the planned steps or the wall-clock budget, whichever ends first
            prog = min(1.0, max(step / args.steps, (time.time() - t0) / budget))
            lr = args.lr * min(1.0, step / args.warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * prog)))
            for grp in opt.param_groups:
                grp["lr"] = lr
            task, small, ref, x0, hidden, fam = next(batches) if batches is not None else _draw(g, task_p, args)
            n = x0.shape[0]
            eps = torch.randn(x0.shape, generator=g)
            t = sample_t(n, g)
            base = x0
            if task == "keep" and args.keep_drift > 0:
                on = (torch.rand(n, generator=g) < args.keep_drift).float()[:, None, None, None]
                base = x0 + on * drift(x0, t, g)
            xt = (1 - t)[:, None, None, None] * base + t[:, None, None, None] * eps
            keep = (torch.rand(n, generator=g) > 0.25).float()[:, None] * (0.0 if small else 1.0)
            guid = 1.0 + 4.0 * torch.rand(n, generator=g)
            x0, base, eps, t, xt, keep, fam, guid, ref = (v_.to(dev) for v_ in (x0, base, eps, t, xt, keep, fam, guid, ref))
            y = dcond["pooled"].expand(n, -1) + keep * fam_off[fam]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
                v = call(dm, xt, t, dcond, y, guid, ref, hidden)
            tt = t[:, None, None, None]
            target = eps - x0 + (1 - tt) / tt * (base - x0)     # (x_t − x0) / t: back to the reference
            loss = F.mse_loss(v.float(), target)
            opt.zero_grad(set_to_none=True)
            (loss * (args.keep_weight if task == "keep" else 1.0)).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            d = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, val in dm.state_dict().items():
                    ema[k].mul_(d).add_(val.detach(), alpha=1 - d)
            losses.append(float(loss.detach()))
            elapsed = time.time() - t0
            if step % 10 == 0:
                rec = {"step": offset + step, "loss": sum(losses[-10:]) / 10, "lr": lr, "elapsed_s": round(elapsed, 1)}
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
            if step % 50 == 0:
                print(f"step {offset + step} loss {sum(losses[-50:]) / 50:.4f} lr {lr:.2e} "
                      f"{elapsed / step:.2f}s/step", flush=True)
            stop = elapsed > budget
            if step % 200 == 0 or step == args.steps or stop or time.time() - last_save > args.save_minutes * 60:
                last_save = time.time()
                meta = {
                    "unet_config": config,
                    "conditioning": base_meta["conditioning"],
                    "kontext": {"reference": "ComfyUI ReferenceLatent (ref_latents, method 'offset': ids (1, h, w))",
                                "tasks": dict(zip(TASKS, mix)),
                                "keep_weight": args.keep_weight, "keep_drift": args.keep_drift,
                                "hidden_tokens": "additive -inf key mask over reference tokens (attention_mask)",
                                "device": args.device, "workers": args.workers, "stored": args.save_dtype},
                    "training": {
                        "seed": args.seed, "steps": offset + step, "planned_steps": offset + args.steps,
                        "batch": args.batch, "small_batch": args.small_batch, "small_frac": args.small_frac,
                        "lr": args.lr, "warmup": args.warmup, "ema": args.ema,
                        "t_sampling": f"logit-normal(0,1) shifted by e^{tm.FLUX_MU} 85% + uniform 15%",
                        "family_dropout": 0.25, "guidance_range": [1.0, 5.0],
                        "autocast": "bf16" if args.bf16 else "off", "threads": args.threads,
                        "wall_minutes": round(elapsed / 60, 2),
                        "final_loss": sum(losses[-100:]) / len(losses[-100:]),
                        "weights": "EMA", "scene_families": list(args.families),
                        "held_out_families": [f for f in ts.FAMILIES if f not in args.families],
                        "resumed_from": prev_training,
                    },
                    "latent": base_meta["latent"],
                }
                _save(ema, meta, out, SAVE_DTYPES[args.save_dtype])
            if stop:
                print(f"stopping at step {step}: wall-clock budget of {args.max_minutes} min", flush=True)
                break
    log_f.close()
    dm.to("cpu")                                            # the evaluations run on the CPU
    dm.load_state_dict(ema)
    dm.eval()
    meta["training"]["eval_loss"] = eval_losses(dm, cond, args.seed)
    meta["training"]["eval_loss_v3"] = eval_losses(dm, cond, args.seed, families=V3_TRAIN_FAMILIES)
    meta["training"]["keep_sample_rms"] = keep_sample_rms(dm, cond)
    meta["training"]["harmonize_gain"] = harmonize_gain(dm, cond)
    _save(ema, meta, out, SAVE_DTYPES[args.save_dtype])
    print(json.dumps({k: meta["training"][k] for k in ("eval_loss", "eval_loss_v3", "keep_sample_rms",
                                                        "harmonize_gain")}), flush=True)


@torch.no_grad()
def eval_losses(dm, cond: dict, seed: int, n: int = 32, families: tuple[str, ...] = TRAIN_FAMILIES) -> dict:
    """Rectified-flow loss per task on a fixed held-out batch of 32×32 scenes, t on a fixed grid
    (the old families by default, comparable with the first toy Kontext's record)."""
    out = {}
    tasks = TASKS if all(f in V3_TRAIN_FAMILIES for f in families) else UNLIT_TASKS
    for i, task in enumerate(tasks):
        g = torch.Generator().manual_seed(777_000 + i)
        ref, x0, hidden, _ = make_batch(g, task, n, 32, families)
        eps = torch.randn(x0.shape, generator=g)
        t = (torch.arange(n) + 0.5) / n
        xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps
        v = call(dm, xt, t, cond, cond["pooled"].expand(n, -1), torch.full((n,), 3.5), ref, hidden)
        out[task] = round(float(F.mse_loss(v, eps - x0)), 5)
    return out


@torch.no_grad()
def keep_sample_rms(dm, cond: dict, n: int = 8) -> dict:
    """RMS of a 20-step Euler ``keep`` sample against its reference (8 held-out 32×32 scenes per
    group): what ``contextdrag_keep`` measures, without the benchmark."""
    out = {}
    for name, fams in (("old", TRAIN_FAMILIES), ("v3", V3_TRAIN_FAMILIES)):
        g = torch.Generator().manual_seed(888_000)
        ref, x0, hidden, _ = make_batch(g, "keep", n, 32, fams)
        x = sample(dm, cond, torch.randn(x0.shape, generator=g), ref, hidden)
        out[name] = round(float((x - x0).pow(2).mean().sqrt()), 5)
    return out


@torch.no_grad()
def harmonize_gain(dm, cond: dict, n: int = 16, families: tuple[str, ...] = ("lit",)) -> dict:
    """How far 20-step Euler samples fix a mis-shaded object (16 held-out ``harmonize`` pairs of
    ``lit`` scenes): RMS of sample − target over the mis-shaded pixels against the reference's own
    RMS there (``ratio`` 1: the light is copied, 0: relit exactly), and the sample's RMS elsewhere
    (``rest``: what a relight must keep)."""
    g = torch.Generator().manual_seed(999_000)
    ref, x0, hidden, _ = make_batch(g, "harmonize", n, 32, families)
    x = sample(dm, cond, torch.randn(x0.shape, generator=g), ref, hidden)
    wrong = (ref - x0).abs().amax(1, keepdim=True) > 1e-6
    on = wrong.expand_as(x0)
    before = float((ref - x0)[on].pow(2).mean().sqrt())
    after = float((x - x0)[on].pow(2).mean().sqrt())
    rest = float((x - x0)[~on].pow(2).mean().sqrt())
    return {"reference": round(before, 5), "sample": round(after, 5), "ratio": round(after / before, 4),
            "rest": round(rest, 5)}


@torch.no_grad()
def sample(dm, cond: dict, noise, ref, hidden=None, steps: int = 20):
    """20-step Euler from noise with the reference (as KSampler euler / simple on the toy)."""
    sig = tm.flux_sigmas(steps)
    x = noise
    b = x.shape[0]
    for i in range(steps):
        t = torch.full((b,), float(sig[i]))
        v = call(dm, x, t, cond, cond["pooled"].expand(b, -1), torch.full((b,), 3.5), ref, hidden)
        x = x + (sig[i + 1] - sig[i]) * v
    return x


def plots(args) -> None:
    """Sample grid (docs/toykontext_samples.png): reference, keep, hidden reference, remove/inpaint."""
    from tools import comfy_env

    from . import viz

    comfy_env.import_comfy()
    out = Path(args.out)
    torch.set_num_threads(args.threads)
    patcher, _ = tm.load_toy_model(out)
    dm = patcher.model.diffusion_model
    cond = _conditioning(tm.read_meta(out.with_suffix(".json")))
    tiles, labels = [], []
    for i, task in enumerate(("keep", "remove", "inpaint", "remove")):
        g = torch.Generator().manual_seed(4242 + i)
        ref, tgt, hidden, _ = make_pair(g, task, 32, ("single", "multi", "textured_bg"))
        noise = torch.randn(1, 16, 32, 32, generator=g)
        x = sample(dm, cond, noise, ref[None], hidden[None])[0]
        shown = ref.clone()
        hm = hidden.reshape(16, 16).repeat_interleave(2, 0).repeat_interleave(2, 1)
        shown[:, hm] = 0.0
        err = float((x - tgt).pow(2).mean())
        tiles += [ts.to_rgb(ref), ts.to_rgb(shown), ts.to_rgb(x), ts.to_rgb(tgt)]
        labels += [f"{task}: reference", "reference as seen (hidden = grey)", f"toy Kontext, MSE {err:.3f}",
                   "target"]
    viz.save_grid(tiles, DOCS / "toykontext_samples.png", ncols=4, labels=labels,
                  title="toy Kontext: 20-step Euler samples from noise with a ReferenceLatent")
    recs = [json.loads(ln) for ln in out.with_suffix(".log.jsonl").read_text().splitlines() if ln]
    if recs:
        viz.line_plot([r["step"] for r in recs], [r["loss"] for r in recs], DOCS / "toykontext_loss.png",
                      title="toy Kontext fine-tuning loss (mean of 10 steps)", xlabel="step", ylabel="MSE(v)",
                      log_y=True)
    print("wrote", DOCS / "toykontext_samples.png")


DOCS = Path(__file__).resolve().parents[2] / "docs"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--small-batch", type=int, default=16)
    p.add_argument("--small-frac", type=float, default=0.6)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--task-mix", type=float, nargs="+", default=[0.5, 0.3, 0.2, 0.0],
                   help="weights of keep, remove, inpaint[, harmonize] (harmonize 0 when left out)")
    p.add_argument("--gain-only", action="store_true", help="print harmonize_gain of --out and stop")
    p.add_argument("--device", default="cpu", help="where the model trains (e.g. cuda); scenes are rendered "
                                                   "on the CPU, the evaluations run there")
    p.add_argument("--workers", type=int, default=0,
                   help="processes rendering batches ahead (0: in the training loop, as before)")
    p.add_argument("--save-dtype", choices=sorted(SAVE_DTYPES), default="fp32",
                   help="storage of the saved weights (training stays fp32)")
    p.add_argument("--families", nargs="+", default=list(DEFAULT_FAMILIES), choices=list(ts.FAMILIES),
                   help="scene families (a repeated name is drawn more often)")
    p.add_argument("--keep-weight", type=float, default=2.0, help="loss weight of a keep step")
    p.add_argument("--keep-drift", type=float, default=0.5,
                   help="share of keep pairs whose noisy input starts from the reference plus a drift (see drift)")
    p.add_argument("--stop-at", default=None, help="also stop at this UTC time (HH:MM); the cosine ends there")
    p.add_argument("--save-minutes", type=float, default=5.0, help="save (atomically) at least this often")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast (4x slower than fp32 on a CPU without AMX; the toy FLUX used it)")
    p.add_argument("--max-minutes", type=float, default=45.0)
    p.add_argument("--init", default=str(tm.WEIGHTS), help="start weights (toy FLUX, or a toy Kontext to resume)")
    p.add_argument("--out", default=str(KONTEXT_WEIGHTS))
    p.add_argument("--plots-only", action="store_true")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="do not redraw the docs figures")
    args = p.parse_args(argv)
    if len(args.task_mix) not in (3, 4):
        p.error("--task-mix takes 3 or 4 weights (keep remove inpaint [harmonize])")
    if args.gain_only:
        from tools import comfy_env

        comfy_env.import_comfy()
        torch.set_num_threads(args.threads)
        patcher, _ = tm.load_toy_model(Path(args.out))
        dm = patcher.model.diffusion_model
        print(json.dumps(harmonize_gain(dm, _conditioning(tm.read_meta(Path(args.out).with_suffix(".json"))))))
        return 0
    if not args.plots_only:
        train(args)
    if args.plots:
        plots(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
