"""LazyDrag controllers on the router: capture during inversion, control during sampling.

Math and index sets: ``core/lazydrag.py``; method: LazyDrag (arXiv 2509.12203) and
docs/lazydrag.md. Only single-stream blocks are touched (all of them, as in the paper). Cache keys
are the sigma of each model call, so the inversion's evaluations line up with the sampler's
(Uni-Inv ↔ Euler exactly, ``core/solvers.MATCHING_SAMPLER``); a
call with no cache entry (e.g. FireFlow's first sampling evaluation at σ = 1) runs unchanged.
Latent locks after each sampling step [ours, not in the paper; docs/lazydrag.md]: background
(``background_lock``), moved content (``content_lock``) and vacated area (``hole_lock``); with a
latent-pixel map (``cmap.fine``) they follow the editable mask per latent pixel.

The controllers are immutable specs; what a sampling run counts (hits, misses, locked steps) and
the hole fill it derives live in its :class:`LazyDragRun` (``router.RunState``). The cache is the
inversion record's and is only read here: it lives as long as that record (the Invert node's
output) and the patched MODEL holding this controller.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..core.cache import TokenCache, bytes_per_element, format_bytes, sigma_key
from ..core.correspondence import (
    CorrespondenceMap,
    continued_texture,
    harmonic_fill,
    inpaint_noise,
)
from ..core.geometry import repeat_batch
from ..core.lazydrag import (
    LazyDragIndices,
    activation_sigma,
    estimate_cache_bytes,
    extra_kv_mask,
    gated_merge,
    lazydrag_indices,
    output_gate,
)
from .rope import pe_tokens, rope_reencode
from .router import AttentionCall, Controller

log = logging.getLogger("FluxDrag")

CACHE_NAME = "lazydrag"
BACKGROUND_QUERY = ("cached", "live")
#: what the hole lock's vacated pixels follow: the image's own continuation (``texture_fill``) or
#: the harmonic membrane of the surroundings (``harmonic_fill``)
HOLE_FILLS = ("texture", "membrane")


@dataclass(eq=False)
class LazyDragPlan:
    """The map record (``FLUXDRAG_MAP``) a LazyDrag edit carries from the map node onwards."""

    cmap: CorrespondenceMap
    activation: float = 0.8          # fraction of sampling steps with identity/output control
    seed: int = 0                    # inpaint noise
    background: bool = True          # what the inversion must cache
    identity: bool = True
    refine: bool = True
    #: "cached": background q, k, v all come from the inversion (the paper); "live" [ours: the
    #: paper caches all three]: only k, v are cached and replaced, the background queries stay the edit's
    #: own — a third less background cache. With the latent background lock on every step (the
    #: Patch's default) background queries only shape background outputs, which the lock
    #: overwrites, so "live" gives bitwise the same edit (tested); without the lock it drifts more.
    background_query: str = "live"
    cache_name: str = CACHE_NAME
    indices: LazyDragIndices = field(init=False)

    def __post_init__(self):
        if self.background_query not in BACKGROUND_QUERY:
            raise ValueError(f"background_query must be one of {BACKGROUND_QUERY}, got {self.background_query!r}")
        self.indices = lazydrag_indices(self.cmap)

    @property
    def bg_names(self) -> tuple[str, ...]:
        """The background tensors the inversion caches and the control replaces."""
        return ("q", "k", "v") if self.background_query == "cached" else ("k", "v")

    def estimate_bytes(self, model, sigmas: torch.Tensor, batch: int, policy: str) -> int:
        dm = model.get_model_object("diffusion_model")
        n = len(sigmas) - 1
        act = activation_sigma(sigmas, self.activation)
        n_active = sum(1 for s in sigmas[:-1].tolist() if s > act)
        ix = self.indices
        dtype = model.model.get_dtype() if hasattr(model.model, "get_dtype") else torch.bfloat16
        return estimate_cache_bytes(
            len(dm.single_blocks), n, n_active, n_bg=ix.bg.numel() if self.background else 0,
            n_uid=ix.id_src_unique.numel() if self.identity else 0,
            n_uy=ix.y_src_unique.numel() if self.refine else 0,
            hidden=dm.hidden_size, batch=batch, bytes_per_element=bytes_per_element(policy, dtype),
            bg_tensors=len(self.bg_names))

    def capture_controllers(self, cache: TokenCache, sigmas: torch.Tensor, shape: tuple, model):
        h, w = shape[-2] // 2, shape[-1] // 2
        if (h, w) != tuple(self.cmap.grid_hw):
            raise ValueError(
                f"FluxDrag Invert: input 'edit_map' was built for a {self.cmap.grid_hw} token grid but "
                f"the latent has {(h, w)}; build the map from this latent.")
        need = self.estimate_bytes(model, sigmas, shape[0], cache.policy)
        cache.reserve(need)
        log.info("[FluxDrag] LazyDrag cache estimate: %s (policy %s)", format_bytes(need), cache.policy)
        return [LazyDragCapture(self, cache, activation_sigma(sigmas, self.activation))]


def _batch(t: torch.Tensor, b: int) -> torch.Tensor:
    return repeat_batch(t, b, "FluxDrag LazyDrag", "the inversion's batch")


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
            live = {"q": call.q, "k": call.k, "v": call.v}
            for name in self.plan.bg_names:
                c.put(key, blk, name, live[name], index=pos, dim=2)
        active = s > self.act_sigma
        if active and self.plan.identity and ix.id_src_unique.numel():
            pos = ix.id_src_unique + off
            c.put(key, blk, "k_id", call.k, index=pos, dim=2)
            c.put(key, blk, "v_id", call.v, index=pos, dim=2)
        out = next_fn(call.q, call.k, call.v, call.mask)
        if active and self.plan.refine and ix.y_src_unique.numel():
            c.put(key, blk, "y", out, index=ix.y_src_unique + off, dim=1)
        return out


@dataclass
class LazyDragRun:
    """What one sampling run of a :class:`LazyDragControl` counts and derives."""

    hits: int = 0           # attention calls that found their sources
    misses: int = 0         # calls with no cache entry (ran unchanged)
    locked: int = 0         # steps whose background the latent lock set
    hole: Optional[tuple] = None   # (fill, noise) of the hole lock, built on first use
    darkening: Optional[torch.Tensor] = None   # the carried shadow's z_0 − fill, built on first use
    textures: Optional[list] = None   # continued_texture of each source latent (None: smooth), once


class LazyDragControl(Controller):
    """During sampling: background replacement, re-encoded identity K/V, gated output merging.

    Sources come from the inversion cache, or — ``paired=True`` (cache policy "paired") — live
    from a reconstruction branch sampled in the same batch: rows ``[edit b | recon b]`` per
    cond/uncond chunk; the reconstruction rows run unedited (the appended identity tokens are
    masked for them) and feed the edit rows. No cache at all, about twice the compute.
    """

    name = "lazydrag_control"
    block_types = {"single"}

    def __init__(self, plan: LazyDragPlan, cache: Optional[TokenCache], sigmas: torch.Tensor, *,
                 background: bool, identity: bool, refine: bool, mask_text: bool, h_max: float,
                 hold: float, end: float, background_lock: float, content_lock: float,
                 hole_lock: float, hole_fill: str, hole_copies: int, lock_margin: int, hole_rim: int,
                 swing_rim: bool, trajectory: Optional[dict] = None,
                 free_on_end: bool = True, paired_batch: int = 0):
        """The settings fields come from ``pipelines.lazydrag.LazyDragSettings`` (its Patch
        fields, by keyword; no defaults here); ``trajectory``, ``free_on_end`` and
        ``paired_batch`` are the run's."""
        self.plan, self.cache = plan, cache
        for name, val in (("background_lock", background_lock), ("content_lock", content_lock),
                          ("hole_lock", hole_lock)):
            if not 0.0 <= val <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {val}")
            if val > 0 and not trajectory:
                raise ValueError(f"{name} needs the inversion trajectory")
        if lock_margin < 0 or hole_rim < 0:
            raise ValueError(f"lock_margin and hole_rim must be >= 0, got {lock_margin}, {hole_rim}")
        if hole_fill not in HOLE_FILLS:
            raise ValueError(f"hole_fill must be one of {HOLE_FILLS}, got {hole_fill!r}")
        if hole_copies < 1:
            raise ValueError(f"hole_copies must be >= 1, got {hole_copies}")
        self.hole_fill, self.hole_copies = hole_fill, int(hole_copies)
        # latent-level background lock [ours, not in the paper]: after each of the first
        # ``background_lock``·N sampling steps the background tokens' latent is set to the
        # inversion's latent at the same sigma (1.0: every step, the background ends exactly as
        # the source). Keys: sigma_key → model-space latent (B, C, h, w).
        self.background_lock = float(background_lock)
        self.trajectory = trajectory or {}
        cm = plan.cmap
        n_steps = len(sigmas) - 1
        self.fine = cm.fine
        if self.fine is None:  # the paper's token regions: R_bg, upsampled to latent pixels
            self.bg_pixels = cm.background.repeat_interleave(2, 0).repeat_interleave(2, 1)
        else:  # [ours] pixel precision: everything but the moved content and what it vacates
            free = self.fine.free
            if lock_margin:
                free = F.max_pool2d(free[None, None].float(), 2 * lock_margin + 1, 1,
                                    lock_margin)[0, 0].bool()
            if self.fine.released is not None:    # [ours] reveal_release: the hidden part's place
                free = free | self.fine.released.to(free.device)
            self.bg_pixels = ~free
        has_bg = bool(self.bg_pixels.any())
        self.lock_steps = int(round(self.background_lock * n_steps)) if has_bg else 0
        # [ours] content lock: the destination pixels follow the inversion trajectory of their
        # sources (the object moved along its own denoising path) for the first content_lock·N
        # steps; hole lock: the vacated pixels follow (1 − σ)·fill + σ·ε, fill = the harmonic
        # interpolation of the source around the editable region, ε = the inpaint noise.
        has_fine = self.fine is not None
        # [ours] the map's carried shadow (cast_shadow): each target pixel adds its shadow source's
        # deviation from the hole fill, (1 − σ)·(z_0 − fill), on top of the value its own lock sets
        self.shadow = None if not has_fine or self.fine.shadow is None else self.fine.shadow
        self.content_steps = int(round(content_lock * n_steps)) if has_fine else 0
        self.hole_steps = int(round(hole_lock * n_steps)) if has_fine else 0
        # [ours] hole_rim: the vacated pixels within hole_rim latent pixels of the moved content stay
        # under the hole lock as long as the content lock holds the content (a free one next to the
        # locked outline is where the model extends the object it sees); around a swing's part
        # (FineMap.joined) only with swing_rim (else its vacated neighbours are the model's)
        self.rim = None
        if has_fine and hole_rim > 0 and self.hole_steps > 0 and self.content_steps > self.hole_steps:
            joined = None if swing_rim else self.fine.joined
            rigid = self.fine.destination if joined is None else self.fine.destination & ~joined
            near = F.max_pool2d(rigid[None, None].float(), 2 * hole_rim + 1, 1, hole_rim)[0, 0].bool()
            rim = near & self.fine.vacated
            self.rim = rim.reshape(-1) if bool(rim.any()) else None
        self.paired = paired_batch > 0
        self.paired_batch = paired_batch
        if cache is None and not self.paired:
            raise ValueError("LazyDragControl needs a cache unless it runs paired")
        self.act_sigma = activation_sigma(sigmas, plan.activation)
        self.background = background and plan.background
        self.identity = identity and plan.identity
        self.refine = refine and plan.refine
        self.mask_text = mask_text
        self.h = (h_max, hold, end)
        #: kept for the signature; ignored: the cache belongs to the inversion record (Invert's
        #: output), which no downstream node frees — it goes when that output goes
        self.free_on_end = free_on_end

    def start_run(self, sigmas) -> LazyDragRun:
        return LazyDragRun()

    def end_run(self, state: Any, error: Optional[BaseException]) -> None:
        if error is None and self.lock_steps > 0 and state.locked == 0 and (state.hits or state.misses):
            log.warning(
                "[FluxDrag] LazyDrag: background_lock is %.2f but this sampler never called the lock "
                "(only FluxDrag Sample From Inversion and the FluxDrag FireFlow / Uni-Inv SAMPLER nodes "
                "do); the background was kept by attention control alone. Sample with FluxDrag Sample "
                "From Inversion, or set background_lock to 0 to silence this.", self.background_lock)

    def after_step(self, state: Any, i: int, sigma_next: float, x: torch.Tensor) -> Optional[torch.Tensor]:
        if i >= max(self.lock_steps, self.content_steps, self.hole_steps):
            return None
        ref = self.trajectory.get(sigma_key(sigma_next))
        if ref is None or tuple(ref.shape[-2:]) != tuple(x.shape[-2:]):
            return None
        ref = _batch(ref.to(device=x.device, dtype=x.dtype), x.shape[0])
        if i < self.lock_steps:
            state.locked += 1
            x = torch.where(self.bg_pixels.to(x.device), ref, x)
        if i < self.content_steps or i < self.hole_steps:
            B, C, H, W = x.shape
            x = x.reshape(B, C, H * W).clone()
            if i < self.content_steps:
                src = self.fine.source.to(x.device)
                dst = src >= 0
                x[..., dst] = ref.reshape(B, C, H * W)[..., src[dst]]
            vac = self._held(i)
            if vac is not None:
                fill, eps = self._hole_terms(state, x.shape, x.device, x.dtype)
                vac = vac.to(x.device)
                s = float(sigma_next)
                x[..., vac] = (1 - s) * fill[..., vac] + s * eps[..., vac]
            x = x.reshape(B, C, H, W)
        if self.shadow is not None:
            x = self._darken(state, i, float(sigma_next), x)
        return x

    def _darken(self, state: LazyDragRun, i: int, sigma: float, x: torch.Tensor) -> torch.Tensor:
        """[ours] The carried shadow on the pixels a lock set at this step (the locked background,
        the vacated area under the hole lock): + (1 − σ)·(z_0 − fill) of each one's shadow source,
        on a smooth ground only (where the hole fill's held-out ring test picks the membrane)."""
        B, C, H, W = x.shape
        dev = x.device
        on = torch.zeros(H * W, dtype=torch.bool, device=dev)
        if i < self.lock_steps:
            on |= self.bg_pixels.reshape(-1).to(dev)
        held = self._held(i)
        if held is not None:
            on |= held.to(dev)
        shadow = self.shadow.to(dev)
        on &= shadow >= 0
        if not bool(on.any()):
            return x
        if state.darkening is None or state.darkening.shape[:2] != (B, C):
            fill, _ = self._hole_terms(state, (B, C, H * W), dev, x.dtype)
            z0 = self.trajectory[sigma_key(0.0)].to(device=dev, dtype=torch.float32)
            # on a textured ground (the texture continued wins the hole fill's held-out ring test)
            # z_0 − fill is mostly the fill's own error, not a shadow: nothing is carried
            smooth = all(t is None for t in self._textures(state, z0))
            z0 = _batch(z0.to(x.dtype), B).reshape(B, C, H * W)
            state.darkening = (z0 - fill) if smooth else torch.zeros_like(z0)
        x = x.reshape(B, C, H * W).clone()
        x[..., on] += (1 - sigma) * state.darkening[..., shadow[on]]
        return x.reshape(B, C, H, W)

    def _held(self, i: int) -> Optional[torch.Tensor]:
        """(H·W,) the vacated pixels the hole lock sets after step ``i`` (None: none): all of them for
        the first ``hole_lock``·N steps, then the rim next to the moved content (``hole_rim``) while
        the content lock lasts."""
        if i < self.hole_steps:
            return self.fine.vacated.reshape(-1)
        if self.rim is not None and i < self.content_steps:
            return self.rim
        return None

    def _hole_terms(self, state: LazyDragRun, shape, device, dtype):
        if state.hole is None or state.hole[0].shape != shape:
            z0 = self.trajectory.get(sigma_key(0.0))
            if z0 is None:
                raise RuntimeError("FluxDrag LazyDrag: hole_lock needs the source latent (σ = 0) in "
                                   "the inversion trajectory")
            B, C = shape[:2]
            H, W = self.fine.hw
            z0 = z0.to(device=device, dtype=torch.float32)
            fill = harmonic_fill(z0, self.fine.hole_region)
            if self.hole_fill == "texture":    # [ours] the texture continued where it predicts the ring
                fill = torch.stack([f if t is None else t.to(f) for f, t in zip(fill, self._textures(state, z0))])
            fill = _batch(fill, B).reshape(B, C, H * W).to(dtype)
            eps = _batch(inpaint_noise(z0.shape, self.plan.seed, device, dtype), B)  # as composed
            state.hole = (fill, eps.reshape(B, C, H * W))
        return state.hole

    def _textures(self, state: LazyDragRun, z0: torch.Tensor) -> list:
        """:func:`~fluxdrag.core.correspondence_latent.continued_texture` of each source latent in
        ``z0`` (B0, C, H, W) over the fill region (None: the membrane wins, a smooth ground), once
        per run: the hole fill and the carried shadow both read it."""
        if state.textures is None:
            state.textures = [continued_texture(z, self.fine.hole_region, copies=self.hole_copies)
                              for z in z0.reshape(-1, *z0.shape[-3:])]
        return state.textures

    def _rows(self, B: int, dev) -> tuple:
        b = self.paired_batch
        if B % (2 * b):
            raise RuntimeError(
                f"FluxDrag LazyDrag (paired): batch {B} is not [edit | reconstruction] pairs of {b}; "
                f"sample with FluxDrag Sample From Inversion, which builds the paired batch.")
        rows = torch.arange(B, device=dev)
        edit = (rows % (2 * b)) < b
        return rows[edit], rows[~edit]

    def attention(self, call: AttentionCall, next_fn):
        ctx = call.ctx
        key, blk, c, ix = sigma_key(ctx.sigma), call.block_index, self.cache, self.plan.indices
        active = ctx.sigma > self.act_sigma
        do_bg = self.background and ix.bg.numel() > 0
        do_id = active and self.identity and ix.id_dst.numel() > 0
        do_y = active and self.refine and ix.y_dst.numel() > 0 and ctx.step is not None
        needed = [n for n, on in ((self.plan.bg_names[0], do_bg), ("k_id", do_id), ("y", do_y)) if on]
        if not needed:
            return next_fn(call.q, call.k, call.v, call.mask)
        state = call.state(self)
        if not self.paired and not all(c.has(key, blk, n) for n in needed):
            state.misses += 1
            return next_fn(call.q, call.k, call.v, call.mask)
        state.hits += 1
        q, k, v, mask = call.q, call.k, call.v, call.mask
        B, dev = q.shape[0], q.device
        off = call.slices()["img"].start
        if self.paired:
            E, R = self._rows(B, dev)
            live = {"q": q, "k": k, "v": v}

            def src(name, t, idx, dim):  # the reconstruction rows' tokens
                base = live[name[0]] if name != "y" else t
                return base.index_select(0, R).index_select(dim, (idx + off).to(dev))
        else:
            E = R = None

            def src(name, t, idx, dim):
                return _batch(c.get(key, blk, name, dev, t.dtype), B)

        def write(t, dim, pos, value):  # t[E][dim=pos] = value (all rows when not paired)
            if E is None:
                return t.index_copy(dim, pos, value)
            return t.index_copy(0, E, t.index_select(0, E).index_copy(dim, pos, value))

        if do_bg:
            pos = (ix.bg + off).to(dev)
            names = self.plan.bg_names
            q, k, v = (write(t, 2, pos, src(n, t, ix.bg, 2)) if n in names else t
                       for n, t in (("q", q), ("k", k), ("v", v)))
        if do_id:
            src_pos = ix.id_src_pos.to(dev)
            k_src = src("k_id", k, ix.id_src_unique, 2).index_select(2, src_pos)
            v_src = src("v_id", v, ix.id_src_unique, 2).index_select(2, src_pos)
            nb = k_src.shape[0]
            pe = ctx.pe()
            k_extra = rope_reencode(k_src, _batch(pe_tokens(pe, ix.id_src + off), B)[:nb],
                                    _batch(pe_tokens(pe, ix.id_dst + off), B)[:nb])
            if E is not None:
                full_k = k.new_zeros(B, k.shape[1], k_extra.shape[2], k.shape[3])
                k_extra = full_k.index_copy(0, E, k_extra)
                v_src = full_k.index_copy(0, E, v_src.to(full_k.dtype))
            n_k = k.shape[2]
            k = torch.cat((k, k_extra), dim=2)
            v = torch.cat((v, v_src), dim=2)
            txt = call.slices()["txt"] if self.mask_text else None
            mask = extra_kv_mask(q.shape[2], n_k, k_extra.shape[2], txt, dtype=q.dtype, device=dev, base=mask)
            if E is not None:  # the reconstruction rows never see the extras
                if mask is None:
                    mask = torch.zeros(1, 1, q.shape[2], k.shape[2], dtype=q.dtype, device=dev)
                mask = mask.expand(B, mask.shape[1], q.shape[2], k.shape[2]).clone()
                mask[R, :, :, n_k:] = -torch.inf
        out = next_fn(q, k, v, mask)
        if do_y:
            total = len(ctx.sample_sigmas) - 1
            h_t = output_gate(ctx.step, total, *self.h)
            if h_t > 0:
                pos = (ix.y_dst + off).to(dev)
                y_c = src("y", out, ix.y_src_unique, 1).index_select(1, ix.y_src_pos.to(dev))
                gamma = h_t * ix.y_weight.to(dev)
                rows = out if E is None else out.index_select(0, E)
                write_val = gated_merge(rows.index_select(1, pos), y_c, gamma)
                out = write(out, 1, pos, write_val)
        return out
