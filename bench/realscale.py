"""Real-scale benchmark (issue 30): every method on the full FLUX.1 architecture, random weights.

Run on a GPU (the whole table, one process; ``scripts/device_realscale.sh`` wraps it for a lent
device machine)::

    python -m bench.realscale --out results.json [--sizes 512 1024] [--budget-s 420]

CPU smoke mode (full width, 1 double + 1 single block, 128², 2 steps, a short text; the per-block
time and memory are extrapolated to FLUX.1's 19 + 38 blocks and labelled as an extrapolation)::

    python -m bench.realscale --quick [--out quick.json]

The model: a FLUX.1-dev state dict of random tensors (hidden 3072, 24 heads, T5 context 4096,
pooled 768, guidance embedding) with the key names and shapes of ComfyUI's own
``comfy.ldm.flux.model.Flux``, loaded by ``comfy.sd.load_diffusion_model_state_dict`` — the
function UNETLoader calls — so ComfyUI detects it as FLUX and picks dtype, manual cast, load
and offload devices as for the real file; ``weight_dtype`` fp8 passes ``dtype=float8_e4m3fn``
like UNETLoader's ``weight_dtype`` option. FLUX.1 Kontext [dev] has the same architecture and
loads as the same ComfyUI class, so ContextDrag runs on the same weights with a ReferenceLatent.

Each method runs through its pipeline entry point (one adapter function per method below, so a
signature change is fixed in one place), at the shipped workflows' step counts
(``workflows/api/*.json``). Per run: seconds per edit; peak device memory
(``torch.cuda.max_memory_allocated``) or, on a CPU, the peak resident memory of the run
(``VmHWM`` after resetting it) above what the process held before; the peak bytes held in the
pack's token caches (pinned host memory for ``cpu``/``fp8`` on CUDA); the ratio to a vanilla
generation of the same model, size and step count (ContextDrag: to a Kontext generation).
The last lines are ``realscale_<method>_<side>_s: X`` and ``realscale_<method>_<side>_gib: X``.

Memory levers (GPU run): fp8 weights, LazyDrag ``cache_policy`` cpu / fp8 / device / paired,
and ComfyUI's sequential offload (``--novram``: every layer's weights streamed per forward).
The offload runs measure memory only (at ``--offload-steps`` steps; peak memory does not grow
with the step count for these runs): their peak is the smallest VRAM each method needs at 1024².
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import re
import sys
import time
import traceback
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GIB = 1024 ** 3
#: FLUX.1-dev / Kontext-dev as ComfyUI's detection reads them from the checkpoint
FLUX1 = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
             hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38,
             axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True,
             txt_ids_dims=[])
#: T5 tokens of a FLUX prompt in ComfyUI (its T5 tokenizer pads to 256); the paper-length prompts fit
T5_TOKENS = 256
#: the CPU smoke run; its LazyDrag policies are the default (cpu) and paired (the other code path),
#: fp8 weights run the vanilla generation only (ComfyUI's manual cast at full width)
QUICK = dict(depth=1, depth_single_blocks=1, side=128, steps=2, tokens=16, cache_policies=["cpu", "paired"])


# ---------------------------------------------------------------------------------- model building
def flux_state_dict(depth: int, single: int, seed: int = 0, std: float = 0.02, device=None) -> dict:
    """Random FLUX.1 weights (bf16, on the CPU) with the key names and shapes of ComfyUI's own
    ``comfy.ldm.flux.model.Flux`` (instantiated on the meta device for its shapes). Norm scales
    are 1; every other tensor is N(0, std²), drawn on ``device`` (a GPU draws 12 B numbers in
    well under a second) and copied to the CPU, where UNETLoader's state dict lives."""
    import comfy.ldm.flux.model
    import comfy.ops
    import torch

    cfg = dict(FLUX1, depth=depth, depth_single_blocks=single)
    with torch.device("meta"):
        meta = comfy.ldm.flux.model.Flux(dtype=torch.bfloat16, device="meta",
                                         operations=comfy.ops.disable_weight_init, **cfg)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    g = torch.Generator(device=dev).manual_seed(seed)
    sd = {}
    for k, p in meta.state_dict().items():
        if k.endswith(".scale"):
            sd[k] = torch.ones(p.shape, dtype=torch.bfloat16)
        else:
            t = torch.randn(p.shape, generator=g, device=dev, dtype=torch.float32).mul_(std)
            sd[k] = t.to(torch.bfloat16).cpu()
    return sd


def load_like_unetloader(sd: dict, weight_dtype: str = "default"):
    """A MODEL (ModelPatcher) the way UNETLoader makes one from ``sd``: ComfyUI's detection,
    dtype choice and manual cast (``weight_dtype`` "fp8_e4m3fn": fp8 storage, cast per layer;
    "bf16": bf16 storage forced, for the CPU, where ComfyUI's default would pick fp32)."""
    import comfy.model_base
    import comfy.sd
    import torch

    dtypes = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "bf16": torch.bfloat16}
    opts = {} if dtypes[weight_dtype] is None else {"dtype": dtypes[weight_dtype]}
    model = comfy.sd.load_diffusion_model_state_dict(dict(sd), model_options=opts)
    if model is None or not isinstance(model.model, comfy.model_base.Flux):
        raise RuntimeError("ComfyUI did not detect the random state dict as FLUX")
    uc = model.model.model_config.unet_config
    want = {k: v for k, v in FLUX1.items() if k not in ("depth", "depth_single_blocks")}
    got = {k: uc.get(k) for k in want}
    if got != want:
        raise RuntimeError(f"ComfyUI detected {got}, not FLUX.1's {want}")
    return model


def param_counts(depth: int, single: int) -> dict:
    """Parameters of the whole FLUX.1 model, of one double and of one single block (meta device)."""
    import comfy.ldm.flux.model
    import comfy.ops
    import torch

    with torch.device("meta"):
        m = comfy.ldm.flux.model.Flux(dtype=torch.bfloat16, device="meta",
                                      operations=comfy.ops.disable_weight_init,
                                      **dict(FLUX1, depth=depth, depth_single_blocks=single))
    n = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    return {"total": n(m), "double": n(m.double_blocks[0]) if depth else 0,
            "single": n(m.single_blocks[0]) if single else 0}


def conditioning(tokens: int, seed: int = 0, guidance: float = 3.5) -> list:
    """FLUX CONDITIONING of the real shapes without a text encoder: T5 context (1, tokens, 4096),
    CLIP-L pooled (1, 768)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(1, tokens, FLUX1["context_in_dim"], generator=g)
    pooled = torch.randn(1, FLUX1["vec_in_dim"], generator=g)
    return [[ctx, {"pooled_output": pooled, "guidance": guidance}]]


# ---------------------------------------------------------------------------------- the workflows
def shipped_steps() -> dict:
    """Step counts (and AttentionDrag's strength, DragFlow's skip and iterations) of the shipped
    FLUX workflows, read from ``workflows/api``."""
    def node(name, cls):
        g = json.loads((ROOT / "workflows" / "api" / name).read_text())
        return next(n["inputs"] for n in g.values() if n["class_type"] == cls)
    inv = node("lazydrag_flux_api.json", "FluxDragInvert")
    # expert values (iterations) sit on the workflow's Options node since the settings schema
    df = {**node("dragflow_flux_api.json", "FluxDragDragFlowOptions"),
          **node("dragflow_flux_api.json", "FluxDragRegionAffineOptimise")}
    ad = node("attentiondrag_flux_api.json", "FluxDragAttentionDrag")
    ks = node("contextdrag_kontext_api.json", "KSampler")
    return {"lazydrag": int(inv["steps"]), "dragflow": int(df["steps"]), "dragflow_skip": int(df["skip_steps"]),
            "dragflow_iters": int(df["n_transport"]) + int(df["n_intensify"]),
            "attentiondrag": int(ad["steps"]), "attentiondrag_strength": float(ad["strength"]),
            "contextdrag": int(ks["steps"])}


def drag_json(side: int) -> dict:
    """The shipped workflows' example drag (the sun, 256² picture) scaled to ``side``."""
    s = side / 256
    sq = [[174 * s, 16 * s], [234 * s, 16 * s], [234 * s, 76 * s], [174 * s, 76 * s]]
    return {"version": 1, "image_size": [side, side],
            "drags": [{"handle": [204 * s, 46 * s], "target": [124 * s, 46 * s], "mode": "move"}],
            "mask": {"polygons": [sq]}}


# ---------------------------------------------------------------------------------- one adapter per method
# The pipelines' entry points are called here and nowhere else in this file: a signature change
# is fixed in the one function it touches.
def adapt_vanilla(model, noise, positive, steps: int):
    """A plain FLUX (or Kontext, with a ReferenceLatent in ``positive``) generation: Euler/simple, cfg 1."""
    import comfy.sample
    import torch

    return comfy.sample.sample(model, noise, steps, 1.0, "euler", "simple", positive, positive,
                               torch.zeros_like(noise), seed=0, disable_pbar=True)


def adapt_lazydrag(model, latent: dict, drags: dict, positive, steps: int, cache_policy: str):
    from fluxdrag.pipelines.lazydrag import LazyDragSettings, run_lazydrag

    return run_lazydrag(model, latent, drags, positive, LazyDragSettings(steps=steps, cache_policy=cache_policy))


def adapt_dragflow(model, latent: dict, positive, side: int, steps: int, skip: int, iters: int,
                   cache_policy: str = "cpu"):
    import torch

    from fluxdrag.pipelines.dragflow import DragFlowSettings, add_region, build_region, run_dragflow

    d = drag_json(side)
    (x0, y0), (x1, y1) = d["mask"]["polygons"][0][0], d["mask"]["polygons"][0][2]
    mask = torch.zeros(1, side, side)
    mask[0, int(y0):int(y1), int(x0):int(x1)] = 1
    ins = add_region(None, build_region(mask, "relocate", tuple(d["drags"][0]["handle"]),
                                        tuple(d["drags"][0]["target"]), None))
    st = DragFlowSettings(steps=steps, skip_steps=skip, n_transport=0, n_intensify=iters,
                          cache_policy=cache_policy)
    return run_dragflow(model, latent, positive, positive, ins, settings=st)


def adapt_attentiondrag(model, latent: dict, drags: dict, positive, steps: int, strength: float):
    from fluxdrag.pipelines.attention_drag import AttentionDragSettings, run_attention_drag

    return run_attention_drag(model, latent, drags, positive,
                              settings=AttentionDragSettings(steps=steps, strength=strength))


def adapt_contextdrag(model, noise, kontext_positive, reference, drags: dict, steps: int):
    """The shipped ContextDrag graph: Reverse Mapping → CTI (replace) → PCA (defaults) → KSampler."""
    from fluxdrag.pipelines import contextdrag as cd

    rmap = cd.build_map(drags, reference)
    cti, _ = cd.apply_cti(model, rmap, mode="replace")
    chain, _ = cd.apply_pca(cti, rmap)
    return adapt_vanilla(chain, noise, kontext_positive, steps)


# ---------------------------------------------------------------------------------- measuring
class CacheTracker:
    """Peak bytes held at once by all live ``TokenCache`` objects (by block type), read by
    wrapping ``TokenCache.put``/``free`` in this process only (bench tooling, never the runtime)."""

    def __init__(self):
        from fluxdrag.core.cache import TokenCache

        self.cls = TokenCache
        self.live = weakref.WeakSet()
        self.peak = 0
        self.peak_by_type: dict = {}
        orig_put, orig_free, tracker = TokenCache.put, TokenCache.free, self

        def put(cache, step, block, name, tensor, index=None, dim=-2):
            orig_put(cache, step, block, name, tensor, index=index, dim=dim)
            tracker.live.add(cache)
            tracker.update()

        def free(cache):
            orig_free(cache)
            tracker.update()
        self._orig = (orig_put, orig_free)
        TokenCache.put, TokenCache.free = put, free

    @staticmethod
    def _type(block) -> str:
        # DragFlow's K/V bank keys blocks as (type, index); LazyDrag captures single blocks by index
        return block[0] if isinstance(block, tuple) else "single"

    def update(self):
        total = sum(c.nbytes for c in self.live)
        if total > self.peak:
            self.peak = total
            by: dict = {}
            for c in self.live:
                for key, e in c._entries.items():
                    t = self._type(key[1])
                    by[t] = by.get(t, 0) + e.nbytes
            self.peak_by_type = by

    def reset(self):
        self.peak, self.peak_by_type = 0, {}

    def close(self):
        self.cls.put, self.cls.free = self._orig


class BlockTimer:
    """Wall time spent inside the double and the single blocks (forward, recompute included),
    for the CPU extrapolation to full depth; CPU work is synchronous, so the hooks time it."""

    def __init__(self, dm):
        self.t = {"double": 0.0, "single": 0.0}
        self.handles = []
        for kind, blocks in (("double", dm.double_blocks), ("single", dm.single_blocks)):
            for b in blocks:
                self.handles.append(b.register_forward_pre_hook(self._pre))
                self.handles.append(b.register_forward_hook(self._post(kind)))
        self._start: list = []

    def _pre(self, _m, _a):
        self._start.append(time.perf_counter())

    def _post(self, kind):
        def hook(_m, _a, _o):
            self.t[kind] += time.perf_counter() - self._start.pop()
        return hook

    def reset(self):
        self.t = {"double": 0.0, "single": 0.0}
        self._start = []

    def close(self):
        for h in self.handles:
            h.remove()


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:  # Linux: "5" resets the peak resident set size (VmHWM) to the current one
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _pinned_peak() -> int | None:
    """Peak bytes of torch's pinned host allocator since the last reset (key names vary by torch)."""
    import torch

    if not hasattr(torch.cuda, "host_memory_stats"):
        return None
    try:
        hs = torch.cuda.host_memory_stats()
    except Exception:
        return None
    flat: dict = {}

    def walk(d, pre=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{pre}{k}.")
            else:
                flat[f"{pre}{k}"] = v
    walk(hs)
    for want in ("active_bytes", "allocated_bytes"):
        for k, v in flat.items():
            if want in k and "peak" in k:
                return int(v)
    return None


def measure(fn, cuda: bool, tracker: CacheTracker, timer: BlockTimer | None) -> dict:
    """Run ``fn`` once; seconds, peak memory and cache bytes."""
    import torch

    gc.collect()
    tracker.reset()
    if timer:
        timer.reset()
    if cuda:
        torch.cuda.synchronize()  # no empty_cache: the timed run keeps the allocator's warm blocks
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        try:
            torch.cuda.reset_peak_host_memory_stats()
        except Exception:  # older torch: no pinned-host statistics
            pass
    else:
        _reset_peak_rss()
        base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    out = {"seconds": sec, "cache_peak_bytes": tracker.peak, "cache_peak_by_type": dict(tracker.peak_by_type)}
    if cuda:
        out["device_peak_bytes"] = torch.cuda.max_memory_allocated()
        out["device_before_bytes"] = base
        out["device_reserved_peak_bytes"] = torch.cuda.max_memory_reserved()
        out["pinned_host_peak_bytes"] = _pinned_peak()
    else:
        peak = _status_kib("VmHWM")
        out["rss_peak_bytes"] = peak
        out["rss_before_bytes"] = base
        out["rss_run_bytes"] = (peak - base) if peak is not None and base is not None else None
    if timer:
        out["block_seconds"] = dict(timer.t)
    return out


# ---------------------------------------------------------------------------------- the table
def plan_runs(args, steps: dict) -> list:
    """The runs in priority order (a time budget cuts the tail): the methods at each size with
    their vanilla bases; fp8 weights at the largest size; the memory-only sequential-offload runs
    (the smallest VRAM per method at the largest size); the cache-policy levers; last fp8 at the
    other sizes and DragFlow on fp8."""
    def run(name, method, side, weights="default", lever="", base=None, **kw):
        return dict(name=name, method=method, side=side, weights=weights, lever=lever, base=base, **kw)

    top, pols = max(args.sizes), list(args.cache_policies)
    first_pol = pols[0]
    core, levers, fp8_top, fp8_rest, offload = [], [], [], [], []
    for side in args.sizes:
        van, kv = f"vanilla_{side}", f"kontext_vanilla_{side}"
        core += [run(van, "vanilla", side),
                 run(f"lazydrag_{side}" + ("" if first_pol == "cpu" else f"_cache_{first_pol}"), "lazydrag",
                     side, lever=f"cache_policy {first_pol}", base=van, policy=first_pol),
                 run(f"attentiondrag_{side}", "attentiondrag", side, base=van),
                 run(kv, "kontext_vanilla", side),
                 run(f"contextdrag_{side}", "contextdrag", side, base=kv),
                 run(f"dragflow_{side}", "dragflow", side, base=van)]
        levers += [run(f"lazydrag_{side}_cache_{p}", "lazydrag", side, lever=f"cache_policy {p}", base=van,
                       policy=p) for p in pols[1:]]
    if "fp8" in args.weights:
        for side in args.sizes:
            van = f"vanilla_{side}_fp8"
            # quick: one step checks ComfyUI's fp8 manual cast at full width (slow on a CPU)
            rows = [run(van, "vanilla", side, "fp8", "fp8 weights" + (", 1 step" if args.quick else ""),
                        **({"steps": 1} if args.quick else {}))]
            if not args.quick:
                rows += [run(f"lazydrag_{side}_fp8", "lazydrag", side, "fp8", "fp8 weights, cache_policy cpu",
                             van, policy="cpu"),
                         run(f"lazydrag_{side}_fp8_cache_fp8", "lazydrag", side, "fp8",
                             "fp8 weights, cache_policy fp8", van, policy="fp8")]
            (fp8_top if side == top else fp8_rest).extend(rows)
        if not args.quick:
            fp8_rest.append(run(f"dragflow_{top}_fp8", "dragflow", top, "fp8", "fp8 weights",
                                f"vanilla_{top}_fp8"))
    if args.offload:
        for m in ("vanilla", "lazydrag", "attentiondrag", "contextdrag", "dragflow"):
            offload.append(run(f"{m}_{top}_offload", m, top, "fp8",
                               "fp8 weights, cache_policy cpu, sequential offload (novram); memory only",
                               policy="cpu", offload=True))
    return core + fp8_top + offload + levers + fp8_rest


def run_fn(r: dict, models: dict, steps: dict, args):
    """The callable of one planned run."""
    import node_helpers
    import torch

    side, model = r["side"], models[r["weights"]]
    L = side // 8
    g = torch.Generator().manual_seed(side)
    latent = {"samples": torch.randn(1, 16, L, L, generator=g) * 0.5}
    noise = torch.randn(1, 16, L, L, generator=g)
    cond = models["cond"]
    drags = drag_json(side)
    n = args.offload_steps if r.get("offload") else r.get("steps")
    m = r["method"]
    if m == "vanilla":
        return lambda: adapt_vanilla(model, noise, cond, n or steps["lazydrag"])
    if m == "lazydrag":
        return lambda: adapt_lazydrag(model, latent, drags, cond, n or steps["lazydrag"], r["policy"])
    if m == "attentiondrag":
        return lambda: adapt_attentiondrag(model, latent, drags, cond, n or steps["attentiondrag"],
                                           steps["attentiondrag_strength"])
    kontext = node_helpers.conditioning_set_values(cond, {"reference_latents": [latent["samples"]]}, append=True)
    if m == "kontext_vanilla":
        return lambda: adapt_vanilla(model, noise, kontext, n or steps["contextdrag"])
    if m == "contextdrag":
        return lambda: adapt_contextdrag(model, noise, kontext, latent["samples"], drags, n or steps["contextdrag"])
    if m == "dragflow":
        st = n or steps["dragflow"]
        skip = min(steps["dragflow_skip"], st - 1)
        iters = args.dragflow_iters if args.dragflow_iters is not None else steps["dragflow_iters"]
        if r.get("offload"):  # memory only: the peak does not grow with the iterations
            iters = min(iters, 2)
        return lambda: adapt_dragflow(model, latent, cond, side, st, skip, iters)
    raise ValueError(m)


def cache_block_scale(method: str, depth: tuple) -> dict:
    """How many more blocks fill a cache at FLUX.1's 19 + 38 blocks than at ``depth``, per block
    type: LazyDrag captures every single block; DragFlow's K/V bank its preset's layers
    (``non-ridge``: 6 double + 7 single on FLUX.1, mapped proportionally on fewer blocks)."""
    if method == "dragflow":
        from fluxdrag.core.dragflow_layers import kv_layers

        full, small = kv_layers("non-ridge", FLUX1["depth"], FLUX1["depth_single_blocks"]), kv_layers("non-ridge", *depth)
        return {"double": len(full.double) / max(1, len(small.double)),
                "single": len(full.single) / max(1, len(small.single))}
    return {"double": FLUX1["depth"] / depth[0], "single": FLUX1["depth_single_blocks"] / depth[1]}


def extrapolate(row: dict, counts: dict, weight_bytes: float, depth: tuple) -> dict:
    """CPU quick mode → FLUX.1's 19 + 38 blocks (an extrapolation, labelled so):
    time: the run's seconds plus its measured double/single block time × (full ÷ quick blocks − 1);
    device memory: the full model's weights + the run's working memory above the process
    (activations: depth-independent in inference; on a CPU the peak RSS above what the process
    held before, which understates a run whose memory the allocator had kept from an earlier
    run) + a device cache scaled per block type (``cache_block_scale``). Backward passes
    (DragFlow's iterations) are not inside the forward hooks: their blocks' share is scaled only
    through the recompute forward, so DragFlow's time is a lower bound."""
    kd, ks = FLUX1["depth"] / depth[0], FLUX1["depth_single_blocks"] / depth[1]
    bs = row.get("block_seconds", {"double": 0.0, "single": 0.0})
    t = row["seconds"] + bs["double"] * (kd - 1) + bs["single"] * (ks - 1)
    by, cs = row.get("cache_peak_by_type", {}), cache_block_scale(row["method"], depth)
    cache_full = by.get("double", 0) * cs["double"] + by.get("single", 0) * cs["single"]
    weights_full = counts["total"] * weight_bytes
    run_mem = max(0, (row.get("rss_run_bytes") or 0) - row.get("cache_peak_bytes", 0))
    device_cache = cache_full if row.get("policy") == "device" else 0
    return {"seconds": t, "device_bytes": weights_full + run_mem + device_cache,
            "host_cache_bytes": 0 if row.get("policy") == "device" else cache_full,
            "weights_bytes": weights_full}


def fmt_gib(b) -> str:
    return "-" if b is None else f"{b / GIB:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="CPU smoke: full width, 1+1 blocks, 128², 2 steps, extrapolated to 19+38 blocks")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="image sides (default 512 1024)")
    ap.add_argument("--weights", nargs="+", default=["default", "fp8"], choices=["default", "fp8"],
                    help="UNETLoader weight_dtype: default (bf16 on a GPU, fp32 on a CPU) and fp8_e4m3fn")
    ap.add_argument("--cache-policies", nargs="+", default=None,
                    help="LazyDrag cache policies (default cpu fp8 device paired; quick: cpu paired)")
    ap.add_argument("--offload", dest="offload", action="store_true", default=None,
                    help="the sequential-offload memory runs (default: on a GPU only)")
    ap.add_argument("--no-offload", dest="offload", action="store_false",
                    help="skip the sequential-offload memory runs")
    ap.add_argument("--offload-steps", type=int, default=4, help="steps of the memory-only offload runs")
    ap.add_argument("--dragflow-iters", type=int, default=None,
                    help="DragFlow optimisation iterations (default: the shipped workflow's)")
    ap.add_argument("--depth", type=int, nargs=2, default=None, metavar=("DOUBLE", "SINGLE"),
                    help="blocks (default FLUX.1's 19 38; quick 1 1): fewer to check the GPU plan on a CPU")
    ap.add_argument("--steps", type=int, default=None, help="override every method's step count")
    ap.add_argument("--tokens", type=int, default=None, help=f"T5 tokens (default {T5_TOKENS}; quick 32)")
    ap.add_argument("--budget-s", type=float, default=0.0,
                    help="skip the runs left once this many seconds have passed (0: no limit)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--only", default="", help="run only the runs whose name matches this regular expression")
    ap.add_argument("--out", type=Path, default=None, help="write every row as JSON (after each run)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    import torch

    from .common import setup_comfy

    cuda = torch.cuda.is_available() and not args.quick
    if cuda:
        from tools import comfy_env

        comfy_env.import_comfy(cpu=False)
    else:
        setup_comfy()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    import comfy.model_management as mm

    if args.quick:
        args.sizes = args.sizes or [QUICK["side"]]
        args.offload = bool(args.offload)
        if args.dragflow_iters is None:
            args.dragflow_iters = 1
        args.cache_policies = args.cache_policies or QUICK["cache_policies"]
    args.sizes = args.sizes or [512, 1024]
    args.cache_policies = args.cache_policies or ["cpu", "fp8", "device", "paired"]
    if args.offload is None:
        args.offload = cuda
    tokens = args.tokens or (QUICK["tokens"] if args.quick else T5_TOKENS)
    steps = shipped_steps()
    if args.quick:
        steps = dict(steps, lazydrag=QUICK["steps"], dragflow=QUICK["steps"], dragflow_skip=1,
                     attentiondrag=QUICK["steps"], contextdrag=QUICK["steps"])
    if args.steps:
        steps = dict(steps, lazydrag=args.steps, dragflow=args.steps, attentiondrag=args.steps,
                     contextdrag=args.steps, dragflow_skip=min(steps["dragflow_skip"], args.steps - 1))
    depth = tuple(args.depth) if args.depth else (
        (QUICK["depth"], QUICK["depth_single_blocks"]) if args.quick else (FLUX1["depth"], FLUX1["depth_single_blocks"]))

    device_name = (torch.cuda.get_device_name() if cuda else
                   f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    print(f"real-scale benchmark on {device_name}; torch {torch.__version__}; "
          f"FLUX.1 width, {depth[0]} double + {depth[1]} single blocks, T5 tokens {tokens}", flush=True)
    runs = plan_runs(args, steps)
    if args.only:
        runs = [r for r in runs if re.search(args.only, r["name"])]
        args.weights = [w for w in args.weights if any(r["weights"] == w for r in runs)] or args.weights[:1]
    t0 = time.perf_counter()
    sd = flux_state_dict(*depth)
    models = {"cond": conditioning(tokens)}
    for w in args.weights:
        models[w] = load_like_unetloader(sd, "fp8_e4m3fn" if w == "fp8" else "default")
    del sd
    gc.collect()
    counts, full_counts = param_counts(*depth), param_counts(FLUX1["depth"], FLUX1["depth_single_blocks"])
    any_model = models[args.weights[0]]
    dm0 = any_model.get_model_object("diffusion_model")
    print(f"built in {time.perf_counter() - t0:.1f} s: {counts['total'] / 1e9:.2f} B parameters "
          f"(full depth {full_counts['total'] / 1e9:.2f} B); ComfyUI detected "
          f"{type(any_model.model).__name__}, weights {next(dm0.parameters()).dtype}, "
          f"manual cast {any_model.model.manual_cast_dtype}, load device {any_model.load_device}", flush=True)

    tracker = CacheTracker()
    results = {"device": device_name, "torch": torch.__version__, "quick": bool(args.quick),
               "depth": list(depth), "t5_tokens": tokens, "steps": steps,
               "parameters": counts["total"], "parameters_full_depth": full_counts["total"],
               "weights": {w: {"stored": str(next(models[w].get_model_object("diffusion_model").parameters()).dtype),
                               "compute": str(models[w].model.manual_cast_dtype or "as stored")}
                           for w in args.weights},
               "rows": []}
    warm: set = set()
    resident = {"weights": None}

    def warm_up(r):
        """Outside the timed run: a 1-step generation the first time a (weights, size) runs (kernels,
        first allocations; on a CPU only the first run's); on a GPU only this run's model resident,
        so that the peak is what a user with this one model needs."""
        model, key = models[r["weights"]], (r["weights"], r["side"])
        if cuda and resident["weights"] != r["weights"]:
            mm.unload_all_models()
            gc.collect()
            torch.cuda.empty_cache()
            resident["weights"] = r["weights"]
        if key not in warm and (cuda or not warm):
            adapt_vanilla(model, torch.randn(1, 16, r["side"] // 8, r["side"] // 8), models["cond"], 1)
            warm.add(key)
        if cuda:
            mm.load_models_gpu([model])
            torch.cuda.synchronize()

    rows = results["rows"]
    for r in runs:
        if args.budget_s and time.perf_counter() - t_start > args.budget_s:
            rows.append(dict(r, skipped=f"time budget {args.budget_s:.0f} s spent"))
            print(f"{r['name']:34s} skipped (time budget)", flush=True)
            continue
        if not r.get("offload"):
            try:
                warm_up(r)
            except Exception as e:
                print(f"warm-up before {r['name']} failed: {type(e).__name__}: {e}", flush=True)
        row = {k: v for k, v in r.items()}
        timer = BlockTimer(models[r["weights"]].get_model_object("diffusion_model")) if not cuda else None
        prev_state = mm.vram_state
        try:
            if r.get("offload"):
                mm.unload_all_models()
                resident["weights"] = None
                mm.vram_state = mm.VRAMState.NO_VRAM
            row.update(measure(run_fn(r, models, steps, args), cuda, tracker, timer))
            if cuda:  # model weights ComfyUI pinned in host RAM for offloading (cudaHostRegister)
                row["comfy_pinned_weights_bytes"] = getattr(mm, "TOTAL_PINNED_MEMORY", None)
        except Exception as e:  # an OOM or a failure is a result too
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            traceback.print_exc(limit=3)
            if cuda:
                torch.cuda.empty_cache()
        finally:
            if r.get("offload"):
                mm.vram_state = prev_state
                mm.unload_all_models()
            if timer:
                timer.close()
        base = next((x for x in rows if x["name"] == r["base"]), None) if r["base"] else None
        if base and "seconds" in row and "seconds" in base:
            row["ratio"] = row["seconds"] / base["seconds"]
        if args.quick and "seconds" in row:
            wb = 1 if r["weights"] == "fp8" else 2
            row["extrapolated_full_depth"] = extrapolate(row, full_counts, wb, depth)
            if base and "extrapolated_full_depth" in base:
                row["extrapolated_full_depth"]["ratio"] = (row["extrapolated_full_depth"]["seconds"]
                                                           / base["extrapolated_full_depth"]["seconds"])
        rows.append(row)
        mem = row.get("device_peak_bytes", row.get("rss_run_bytes"))
        print(f"{r['name']:34s} " + (f"ERROR {row['error']}" if "error" in row else
              f"{row['seconds']:8.2f} s  mem {fmt_gib(mem)} GiB  cache {fmt_gib(row['cache_peak_bytes'])} GiB"
              + (f"  ×{row['ratio']:.2f}" if "ratio" in row else "")), flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1, default=str))
    tracker.close()
    results["wall_seconds"] = time.perf_counter() - t_start
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    print()
    print(report(results))
    # quick: any failure fails (the smoke test); on a GPU an out-of-memory row is a result
    return 1 if args.quick and any("error" in r for r in rows) else 0


def report(results: dict) -> str:
    """The table (markdown) and the named lines."""
    from .common import table

    quick = results["quick"]
    lines, named = [], []
    if quick:
        lines.append(f"CPU SMOKE RUN ({results['device']}): FLUX.1 width, {results['depth'][0]} double + "
                     f"{results['depth'][1]} single block(s), {results['t5_tokens']} T5 tokens. Columns "
                     "'full-depth' are an EXTRAPOLATION to 19 + 38 blocks, not a measurement.")
        hdr = ["run", "lever", "s (measured)", "RSS above process GiB (measured)", "cache GiB", "÷ base",
               "s full-depth (extrap.)", "device GiB full-depth (extrap.)", "host cache GiB (extrap.)",
               "÷ base (extrap.)"]
    else:
        d = results["depth"]
        lines.append(f"Run on {results['device']}: FLUX.1-dev architecture ({d[0]} double + {d[1]} single "
                     f"blocks), random weights, {results['t5_tokens']} T5 tokens, steps {results['steps']}."
                     + ("" if "CPU" not in results["device"] else " (CPU: memory is the run's peak RSS "
                        "above the process, not device memory.)"))
        hdr = ["run", "lever", "s / edit", "peak device GiB", "weights resident GiB", "cache peak GiB",
               "pinned host peak GiB", "÷ base"]
    rows = []
    for r in results["rows"]:
        if "skipped" in r or "error" in r:
            rows.append([r["name"], r.get("lever", ""), r.get("skipped") or r.get("error")] + [""] * (len(hdr) - 3))
            continue
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
        if quick:
            e = r["extrapolated_full_depth"]
            rows.append([r["name"], r["lever"], f"{r['seconds']:.2f}", fmt_gib(r.get("rss_run_bytes")),
                         fmt_gib(r["cache_peak_bytes"]), ratio, f"{e['seconds']:.1f}",
                         fmt_gib(e["device_bytes"]), fmt_gib(e["host_cache_bytes"]),
                         f"{e['ratio']:.2f}" if "ratio" in e else "-"])
            s, b = e["seconds"], e["device_bytes"]
        else:
            b = r.get("device_peak_bytes", r.get("rss_run_bytes")) or 0  # a CPU check of the plan: RSS
            rows.append([r["name"], r["lever"], f"{r['seconds']:.2f}" if not r.get("offload") else "(memory only)",
                         fmt_gib(b), fmt_gib(r.get("device_before_bytes")),
                         fmt_gib(r["cache_peak_bytes"]), fmt_gib(r.get("pinned_host_peak_bytes")), ratio])
            s = r["seconds"]
        key = f"realscale_{r['name']}"
        if not r.get("offload"):
            named.append(f"{key}_s: {s:.3f}")
        named.append(f"{key}_gib: {b / GIB:.3f}")
        if "ratio" in r:
            named.append(f"{key}_ratio: {(r['extrapolated_full_depth'] if quick else r).get('ratio', math.nan):.3f}")
    lines.append(table(rows, hdr))
    if quick:
        lines.append("(extrapolated time: measured seconds + block time × (full ÷ quick blocks − 1); DragFlow's "
                     "backward is not scaled, a lower bound. Extrapolated device memory: full-depth weights + "
                     "the run's measured working memory + a device cache scaled per block type; at 128², "
                     "not at 512² / 1024².)")
    lines.append(f"wall time {results.get('wall_seconds', 0):.1f} s")
    if quick:  # the smoke run's own time bound (the tier-2 test only checks that it runs)
        named.append(f"realscale_quick_wall_s: {results.get('wall_seconds', 0):.1f}  "
                     f"(goal ≤ 60 on an idle 2-core machine)")
    return "\n".join(lines + named)


if __name__ == "__main__":
    sys.exit(main())
