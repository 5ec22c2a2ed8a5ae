"""LazyDrag controllers on the router: capture during inversion, control during sampling.

Math and index sets: ``core/lazydrag.py``; method: anchors §1.3–1.6. Only single-stream blocks
are touched (all of them, as in the paper). Cache keys are the sigma of each model call, so the
inversion's evaluations line up with the sampler's (Uni-Inv ↔ Euler exactly, anchors §1.5); a
call with no cache entry (e.g. FireFlow's first sampling evaluation at σ = 1) runs unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..core.cache import TokenCache, bytes_per_element, format_bytes, sigma_key
from ..core.correspondence import CorrespondenceMap
from ..core.lazydrag import (
    LazyDragIndices, activation_sigma, estimate_cache_bytes, extra_kv_mask, gated_merge,
    lazydrag_indices, output_gate,
)
from .rope import pe_tokens, rope_reencode
from .router import AttentionCall, Controller

CACHE_NAME = "lazydrag"


@dataclass(eq=False)
class LazyDragPlan:
    """The map record (``FLUXDRAG_MAP``) a LazyDrag edit carries from the map node onwards."""

    cmap: CorrespondenceMap
    activation: float = 0.8          # fraction of sampling steps with identity/output control
    seed: int = 0                    # inpaint noise
    background: bool = True          # what the inversion must cache
    identity: bool = True
    refine: bool = True
    cache_name: str = CACHE_NAME
    indices: LazyDragIndices = field(init=False)

    def __post_init__(self):
        self.indices = lazydrag_indices(self.cmap)

    def estimate_bytes(self, model, sigmas: torch.Tensor, batch: int, policy: str) -> int:
        dm = model.get_model_object("diffusion_model")
        n = len(sigmas) - 1
        act = activation_sigma(sigmas, self.activation)
        n_active = sum(1 for s in sigmas[:-1].tolist() if s > act)
        ix = self.indices
        dtype = model.model.get_dtype() if hasattr(model.model, "get_dtype") else torch.bfloat16
        return estimate_cache_bytes(
            len(dm.single_blocks), n, n_active, ix.bg.numel() if self.background else 0,
            ix.id_src_unique.numel() if self.identity else 0,
            ix.y_src_unique.numel() if self.refine else 0,
            dm.hidden_size, batch, bytes_per_element(policy, dtype))

    def capture_controllers(self, cache: TokenCache, sigmas: torch.Tensor, shape: tuple, model):
        h, w = shape[-2] // 2, shape[-1] // 2
        if (h, w) != tuple(self.cmap.grid_hw):
            raise ValueError(
                f"FluxDrag Invert: input 'edit_map' was built for a {self.cmap.grid_hw} token grid but "
                f"the latent has {(h, w)}; build the map from this latent.")
        need = self.estimate_bytes(model, sigmas, shape[0], cache.policy)
        cache.reserve(need)
        print(f"[FluxDrag] LazyDrag cache estimate: {format_bytes(need)} (policy {cache.policy})")
        return [LazyDragCapture(self, cache, activation_sigma(sigmas, self.activation))]


def _batch(t: torch.Tensor, b: int) -> torch.Tensor:
    if t.shape[0] == b:
        return t
    if b % t.shape[0] == 0:  # cond+uncond batches share the cached source branch
        return t.repeat(b // t.shape[0], *([1] * (t.ndim - 1)))
    raise RuntimeError(f"FluxDrag LazyDrag: batch {b} does not match the inversion's batch {t.shape[0]}")


class LazyDragCapture(Controller):
    """During inversion: store background q/k/v, identity-source k/v and merge-source outputs."""

    name = "lazydrag_capture"
    block_types = {"single"}

    def __init__(self, plan: LazyDragPlan, cache: TokenCache, act_sigma: float):
        self.plan, self.cache, self.act_sigma = plan, cache, act_sigma

    def attention(self, call: AttentionCall, next_fn):
        s = call.ctx.sigma
        if s <= 0:  # sampling never evaluates at σ = 0
            return next_fn(call.q, call.k, call.v, call.mask)
        key, blk, c, ix = sigma_key(s), call.block_index, self.cache, self.plan.indices
        off = call.slices()["img"].start
        if self.plan.background and ix.bg.numel():
            pos = ix.bg + off
            for name, t in (("q", call.q), ("k", call.k), ("v", call.v)):
                c.put(key, blk, name, t, index=pos, dim=2)
        active = s > self.act_sigma
        if active and self.plan.identity and ix.id_src_unique.numel():
            pos = ix.id_src_unique + off
            c.put(key, blk, "k_id", call.k, index=pos, dim=2)
            c.put(key, blk, "v_id", call.v, index=pos, dim=2)
        out = next_fn(call.q, call.k, call.v, call.mask)
        if active and self.plan.refine and ix.y_src_unique.numel():
            c.put(key, blk, "y", out, index=ix.y_src_unique + off, dim=1)
        return out


class LazyDragControl(Controller):
    """During sampling: background replacement, re-encoded identity K/V, gated output merging."""

    name = "lazydrag_control"
    block_types = {"single"}

    def __init__(self, plan: LazyDragPlan, cache: TokenCache, sigmas: torch.Tensor,
                 background: bool = True, identity: bool = True, refine: bool = True,
                 mask_text: bool = True, h_max: float = 0.8, hold: float = 0.2, end: float = 0.6,
                 free_on_end: bool = True):
        self.plan, self.cache = plan, cache
        self.act_sigma = activation_sigma(sigmas, plan.activation)
        self.background = background and plan.background
        self.identity = identity and plan.identity
        self.refine = refine and plan.refine
        self.mask_text = mask_text
        self.h = (h_max, hold, end)
        self.free_on_end = free_on_end
        self.misses = 0
        self.hits = 0

    def on_sample_end(self, error: Optional[BaseException]) -> None:
        if self.free_on_end:
            self.cache.free()

    def attention(self, call: AttentionCall, next_fn):
        ctx = call.ctx
        key, blk, c, ix = sigma_key(ctx.sigma), call.block_index, self.cache, self.plan.indices
        active = ctx.sigma > self.act_sigma
        do_bg = self.background and ix.bg.numel() > 0
        do_id = active and self.identity and ix.id_dst.numel() > 0
        do_y = active and self.refine and ix.y_dst.numel() > 0 and ctx.step is not None
        needed = [n for n, on in (("q", do_bg), ("k_id", do_id), ("y", do_y)) if on]
        if not needed:
            return next_fn(call.q, call.k, call.v, call.mask)
        if not all(c.has(key, blk, n) for n in needed):
            self.misses += 1
            return next_fn(call.q, call.k, call.v, call.mask)
        self.hits += 1
        q, k, v, mask = call.q, call.k, call.v, call.mask
        B, dev = q.shape[0], q.device
        off = call.slices()["img"].start
        if do_bg:
            pos = (ix.bg + off).to(dev)
            q, k, v = (t.index_copy(2, pos, _batch(c.get(key, blk, n, dev, t.dtype), B))
                       for n, t in (("q", q), ("k", k), ("v", v)))
        if do_id:
            src_pos = ix.id_src_pos.to(dev)
            k_src = _batch(c.get(key, blk, "k_id", dev, k.dtype), B).index_select(2, src_pos)
            v_src = _batch(c.get(key, blk, "v_id", dev, v.dtype), B).index_select(2, src_pos)
            pe = ctx.pe()
            k_extra = rope_reencode(k_src, _batch(pe_tokens(pe, ix.id_src + off), B),
                                    _batch(pe_tokens(pe, ix.id_dst + off), B))
            n_k = k.shape[2]
            k = torch.cat((k, k_extra), dim=2)
            v = torch.cat((v, v_src), dim=2)
            txt = call.slices()["txt"] if self.mask_text else None
            mask = extra_kv_mask(q.shape[2], n_k, k_extra.shape[2], txt, q.dtype, dev, base=mask)
        out = next_fn(q, k, v, mask)
        if do_y:
            total = len(ctx.sample_sigmas) - 1
            h_t = output_gate(ctx.step, total, *self.h)
            if h_t > 0:
                pos = (ix.y_dst + off).to(dev)
                y_c = _batch(c.get(key, blk, "y", dev, out.dtype), B).index_select(1, ix.y_src_pos.to(dev))
                gamma = h_t * ix.y_weight.to(dev)
                out = out.index_copy(1, pos, gated_merge(out.index_select(1, pos), y_c, gamma))
        return out
