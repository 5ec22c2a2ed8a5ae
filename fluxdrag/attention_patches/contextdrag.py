"""ContextDrag controllers on the router: context-preserving token injection (CTI) and
position-consistent attention (PCA) on FLUX.1 Kontext (arXiv 2512.08477; docs/contextdrag.md).

Kontext appends the reference image's noise-free VAE tokens after the image tokens
(``call.slices()["ref"]``, ids (index 1, h, w) for a single reference). The latent-space reverse
mapping (``core/reverse_mapping.py``) gives every destination token q a source token src(q).

* :class:`ContextTokenInjection` (CTI): the reference token at src(q) is injected for the image
  queries at q, in every claimed attention call. Two readings, parameter ``mode``:
  ``"replace"`` — the K/V of the image token at q are replaced by the reference token's K/V at
  src(q), its key re-encoded with RoPE from its own position to q's; ``"append"`` — the same
  re-encoded K/V are appended as extra keys (like LazyDrag's identity tokens), visible to the
  queries named by ``visible_to``.
* :class:`PositionConsistentAttention` (PCA): a ``post_input`` hook rewrites the reference
  tokens' position ids so a moved token carries its destination position
  (:func:`~fluxdrag.core.reverse_ids.reference_position_ids`), and an overlap-aware additive
  attention mask hides a set of reference tokens (:meth:`ReverseMap.hide_mask`) from the image
  queries.

PCA also re-embeds reference tokens with the model's own input layer (``post_input``): the moved
ones shifted below the token grid (``subtoken``) and composited onto the destination's background
(``composite``), and, with ``hole_fill``, the non-source tokens under the destination as a fill of
the vacated tokens; with ``background_lock`` its ``on_forward_end`` replaces the velocity outside
the edited latent pixels by the one that denoises to the reference (issue 28; docs/contextdrag.md).

Both work on any number of double/single blocks (index lists) and a step window, and compose in
either order on one router: CTI re-encodes from the reference positions the model really used
(``ctx.pe()``, after PCA's rewrite), PCA's mask covers the sequence's own keys and leaves keys
appended by CTI open; CTI's append mask keeps an incoming mask.

No official code exists. Documented guesses (each a parameter, the guess the default):

* CTI ``mode="replace"`` [guess; "append" is the other reading]; ``visible_to="image"`` for
  appended tokens: all image queries see them, text and reference queries do not [guess];
  all double and single blocks, all steps (``start=0, end=1``) [guess].
* PCA: ``hide="vacated_overlap"`` hidden from ``hide_from="image"`` queries [guess]: the
  vacated area M_SRC \\ M_DST plus the non-moved reference tokens under the destination, which
  share their (rewritten) positions with the moved ones — the "conflicting" reference features
  of the notes. ``exclude_sources=None`` follows ``rewrite_ids``: with the rewrite a token that
  is a source sits at its destination and is never hidden, without it the whole vacated area is
  [guess]. (For a rigid move with the rewrite on, ``"vacated"`` alone would hide nothing: every
  vacated token is a source and has moved — the default was ``"vacated"`` before, an empty mask.)
  The rewrite keeps the index channel
  (``keep_index=True``) and gives a token that is the source of several destinations their mean
  position (``collision="mean"``) [guess]; vacated tokens keep their ids
  (``vacated_offset=None``) [guess]; mask in all blocks, all steps [guess].
* ``reference_index=0``: the map applies to the first reference latent [our choice].
* Step window: a model call at step i of T (``ctx.step``, index in the sampler's sigmas) is
  active when ``start * T <= i < end * T``; a call whose sigma is not on the schedule is active
  only for the full window.
* A model call without reference tokens raises :class:`ContextDragError` naming the fix (add
  ReferenceLatent) unless the call holds only unconditional rows (a negative prompt without the
  reference, with CFG > 1), which run unchanged.

Memory/speed: replace adds two gathers and index copies per block; the PCA mask is one dense
(1, 1, N, N) additive mask in the attention dtype, built once per sampling run and device
(N = text + image + reference tokens: 151 MB at 1024² in bf16); a mask makes PyTorch's SDPA use
a kernel with bias instead of flash attention.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..core.errors import public_name
from ..core.reverse_depth import depth_groups, filled_reference, hole_rim_pixels, kept_behind
from ..core.reverse_ids import hole_slots, reference_position_ids
from ..core.reverse_landed import edited_pixels, hole_spill_of
from ..core.reverse_mapping import HIDE_SETS, ReverseMap, injection_pairs
from ..core.reverse_tokens import WARPS, moved_patch_pixels
from .contextdrag_masks import as_additive, combine_masks, extras_mask, key_hiding_mask, pad_keys  # noqa: F401
from .rope import pe_tokens, rope_reencode
from .router import AttentionCall, Controller, ForwardContext

CTI_MODES = ("replace", "append")
VISIBILITY = ("image", "destination", "all")
HIDE_FROM = ("image", "image_text", "all")
HOLE_FILLS = ("none", "surroundings", "harmonic", "continued")
DEPTHS = ("auto", "under", "over")
SKIP_KEY = "contextdrag_skip"
_RANGE = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")

NO_REFERENCE_FIX = (
    "Add ComfyUI's ReferenceLatent node to the positive conditioning: VAEEncode the source image "
    "(after FluxKontextImageScale) and connect it as ReferenceLatent's latent.")


@public_name
class ContextDragError(RuntimeError):
    """A ContextDrag patch met a model call it cannot serve; the message names the fix."""


# --------------------------------------------------------------------------------------------
# small pure helpers
# --------------------------------------------------------------------------------------------
def parse_block_list(spec: Any, n_blocks: Optional[int] = None, what: str = "blocks") -> Optional[frozenset]:
    """Block indices from ``"all"`` (None), ``"none"``/``""`` (empty) or ``"0-3, 7"`` / a list.

    Ranges are inclusive; with ``n_blocks`` every index must be below it.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            return None
        if s in ("", "none"):
            return frozenset()
        out: set = set()
        for part in s.replace(";", ",").split(","):
            part = part.strip()
            if not part:
                continue
            m = _RANGE.match(part)
            if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
                raise ValueError(f"{what}: {part!r} is not an index or a range like 0-5 "
                                 f"(write 'all', 'none' or e.g. '0-5, 9')")
            lo = int(m.group(1))
            out.update(range(lo, (int(m.group(2)) if m.group(2) is not None else lo) + 1))
    else:
        out = {int(i) for i in spec}
    bad = sorted(i for i in out if i < 0 or (n_blocks is not None and i >= n_blocks))
    if bad:
        limit = f"0..{n_blocks - 1}" if n_blocks is not None else ">= 0"
        raise ValueError(f"{what}: indices {bad} are outside {limit}")
    return frozenset(out)


def step_active(step: Optional[float], sample_sigmas: Optional[Sequence[float]], start: float, end: float) -> bool:
    """Whether a model call at sampler step ``step`` (of T = len(sample_sigmas) − 1) lies in the
    window ``start * T <= step < end * T``; unknown steps count only for the full window."""
    full = start <= 0.0 and end >= 1.0
    if full:
        return True
    if step is None or not sample_sigmas or len(sample_sigmas) < 2:
        return False
    total = len(sample_sigmas) - 1
    return start * total - 1e-9 <= step < end * total - 1e-9


# --------------------------------------------------------------------------------------------
# shared base
# --------------------------------------------------------------------------------------------
@dataclass
class ContextDragRun:
    """One sampling run of a ContextDrag controller: its count of controlled attention calls and
    what it derived once for the run (index tensors on the device, masks, rewritten ids)."""

    active_calls: int = 0
    on_device: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    ids: Optional[tuple] = None


class _ContextDragController(Controller):
    """Block/step filtering, reference bookkeeping and the sampling-time checks."""

    display = "FluxDrag ContextDrag"  # how errors name the patch (its node's display name)

    def __init__(self, rmap: ReverseMap, *, start: float, end: float, reference_index: int,
                 double_blocks: Optional[Sequence[int]] = None,
                 single_blocks: Optional[Sequence[int]] = None, sigma_range: Optional[tuple] = None):
        """Settings by keyword, from ``pipelines.contextdrag.ContextDragSettings`` (no defaults
        here); ``double_blocks`` / ``single_blocks`` None = every block."""
        if not isinstance(rmap, ReverseMap):
            raise TypeError(f"rmap must be a ReverseMap, got {type(rmap).__name__}")
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError(f"need 0 <= start <= end <= 1, got start={start}, end={end}")
        if reference_index < 0:
            raise ValueError(f"reference_index must be >= 0, got {reference_index}")
        self.rmap = rmap
        self.block_indices = {
            "double": None if double_blocks is None else frozenset(double_blocks),
            "single": None if single_blocks is None else frozenset(single_blocks),
        }
        self.start, self.end = float(start), float(end)
        self.sigma_range = sigma_range
        self.reference_index = int(reference_index)
        dst, src = injection_pairs(rmap)
        self._pairs_cpu = (dst, src)

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _on(state: ContextDragRun, t: torch.Tensor, device) -> torch.Tensor:
        key = (id(t), str(device))
        hit = state.on_device.get(key)
        if hit is None:
            hit = state.on_device[key] = t.to(device)
        return hit

    def pairs(self, device, state: Optional[ContextDragRun] = None) -> tuple:
        """(dst, src) flat token indices on ``device`` (moved once per run with ``state``)."""
        d, s = self._pairs_cpu
        if state is None:
            return d.to(device), s.to(device)
        return self._on(state, d, device), self._on(state, s, device)

    def start_run(self, sigmas) -> ContextDragRun:
        return ContextDragRun()

    def ref_offset(self, ctx: ForwardContext) -> int:
        """Tokens of the references before the one the map applies to."""
        return sum(h * w for h, w in ctx.ref_grids[: self.reference_index])

    def active(self, ctx: ForwardContext) -> bool:
        if ctx.scratch.get(SKIP_KEY):
            return False
        if self.sigma_range is not None and not (self.sigma_range[0] <= ctx.sigma <= self.sigma_range[1]):
            return False
        return step_active(ctx.step, ctx.sample_sigmas, self.start, self.end)

    def claims(self, call: AttentionCall) -> bool:
        if call.ctx is None or not super().claims(call):
            return False
        return self.active(call.ctx)

    # -- lifecycle -------------------------------------------------------------------------
    def on_forward_start(self, ctx: ForwardContext) -> None:
        h, w = self.rmap.grid_hw
        tag = self.display
        if len(ctx.ref_grids) <= self.reference_index:
            uncond_only = bool(ctx.cond_or_uncond) and all(c == 1 for c in ctx.cond_or_uncond)
            if uncond_only and not ctx.ref_grids:
                ctx.scratch[SKIP_KEY] = True  # a negative prompt without the reference: unchanged
                return
            if not ctx.ref_grids:
                raise ContextDragError(
                    f"{tag}: the model is sampled without a Kontext reference image (no reference "
                    f"tokens in the sequence), so there is nothing to inject or re-position. "
                    f"{NO_REFERENCE_FIX} The model must be FLUX.1 Kontext [dev].")
            raise ContextDragError(
                f"{tag}: reference_index {self.reference_index} asks for reference latent "
                f"#{self.reference_index + 1}, but the conditioning holds {len(ctx.ref_grids)}; "
                f"lower reference_index or chain another ReferenceLatent.")
        rg = tuple(ctx.ref_grids[self.reference_index])
        if rg != (h, w):
            raise ContextDragError(
                f"{tag}: the reverse map was built for a {w}x{h} token grid ({w * 16}x{h * 16} px) "
                f"but the reference latent is {rg[1]}x{rg[0]} tokens ({rg[1] * 16}x{rg[0] * 16} px). "
                f"Build FluxDrag Reverse Mapping from the same latent that goes into ReferenceLatent.")
        if tuple(ctx.grid) != (h, w):
            g = ctx.grid
            raise ContextDragError(
                f"{tag}: the sampled latent is {g[1] * 16}x{g[0] * 16} px but the reference is "
                f"{w * 16}x{h * 16} px; ContextDrag needs both the same size. Sample an empty latent "
                f"of the reference's size (e.g. EmptySD3LatentImage fed by GetImageSize of the "
                f"scaled source image).")



# --------------------------------------------------------------------------------------------
# CTI
# --------------------------------------------------------------------------------------------
class ContextTokenInjection(_ContextDragController):
    """Context-preserving token injection: reference tokens at src(q) for the image queries at q.

    ``mode="replace"`` [guess] overwrites the image tokens' K/V at q; ``"append"`` adds them as
    extra keys visible to ``visible_to`` queries (``"image"`` [guess], ``"destination"``: only
    the query at q sees its own token, ``"all"``). Keys are re-encoded with RoPE from the
    reference token's position (as the model encoded it) to the image token q's position.
    """

    name = "contextdrag_cti"
    display = "FluxDrag Context Token Injection"

    def __init__(self, rmap: ReverseMap, *, mode: str, visible_to: str, **kw):
        super().__init__(rmap, **kw)
        if mode not in CTI_MODES:
            raise ValueError(f"mode must be one of {CTI_MODES}, got {mode!r}")
        if visible_to not in VISIBILITY:
            raise ValueError(f"visible_to must be one of {VISIBILITY}, got {visible_to!r}")
        self.mode, self.visible_to = mode, visible_to

    def injected(self, call: AttentionCall) -> tuple:
        """(dst sequence positions, source K re-encoded at dst, source V): the tokens CTI puts in."""
        ctx, dev = call.ctx, call.k.device
        sl = call.slices()
        dst, src = self.pairs(dev, call.state(self))
        dst_pos = dst + sl["img"].start
        src_pos = src + (sl["ref"].start + self.ref_offset(ctx))
        pe = ctx.pe()
        k_src = call.k.index_select(2, src_pos)
        v_src = call.v.index_select(2, src_pos)
        k_new = rope_reencode(k_src, pe_tokens(pe, src_pos), pe_tokens(pe, dst_pos)).to(call.k.dtype)
        return dst_pos, k_new, v_src

    def attention(self, call: AttentionCall, next_fn):
        if not self._pairs_cpu[0].numel():
            return next_fn(call.q, call.k, call.v, call.mask)
        call.state(self).active_calls += 1
        dst_pos, k_new, v_new = self.injected(call)
        if self.mode == "replace":
            k = call.k.index_copy(2, dst_pos, k_new)
            v = call.v.index_copy(2, dst_pos, v_new.to(call.v.dtype))
            return next_fn(call.q, k, v, call.mask)
        n_q, n_k, m = call.q.shape[2], call.k.shape[2], k_new.shape[2]
        k = torch.cat((call.k, k_new), dim=2)
        v = torch.cat((call.v, v_new.to(call.v.dtype)), dim=2)
        mask = combine_masks(call.mask, self._extras_mask(call, n_q, n_k, m, dst_pos))
        if mask is not None:
            mask = pad_keys(mask, n_k + m, call.q.dtype)
        return next_fn(call.q, k, v, mask)

    def _extras_mask(self, call: AttentionCall, n_q: int, n_k: int, m: int, dst_pos: torch.Tensor):
        if self.visible_to == "all":
            return None
        sl = call.slices()
        key = (n_q, n_k, m, sl["img"].start, sl["img"].stop, call.q.dtype, str(call.q.device))
        masks = call.state(self).masks
        hit = masks.get(key)
        if hit is None:
            if self.visible_to == "image":
                hit = extras_mask(n_q, n_k, m, [sl["img"]], dtype=call.q.dtype, device=call.q.device)
            else:
                hit = extras_mask(n_q, n_k, m, None, dtype=call.q.dtype, device=call.q.device, pairs=dst_pos)
            masks[key] = hit
        return hit


# --------------------------------------------------------------------------------------------
# PCA
# --------------------------------------------------------------------------------------------
def _ref_key(ref: torch.Tensor) -> tuple:
    """What a per-run cache derived from a reference latent is keyed on: its device, dtype, shape
    (ComfyUI may batch cond and uncond in one call and not in the next) and storage."""
    return str(ref.device), ref.dtype, tuple(ref.shape), ref.data_ptr()


class PositionConsistentAttention(_ContextDragController):
    """Position-consistent attention: moved reference tokens carry their destination ids, and an
    overlap-aware mask hides ``hide`` reference tokens from ``hide_from`` queries.

    ``rewrite_ids=False`` keeps Kontext's ids (mask only); ``hide="none"`` keeps every key
    visible (ids only). Block lists restrict the mask; the id rewrite covers the whole model
    call (FLUX computes one rotary table per call) within the step window.
    """

    name = "contextdrag_pca"
    display = "FluxDrag Position-Consistent Attention"

    def __init__(self, rmap: ReverseMap, *, rewrite_ids: bool, hide: str, hide_from: str, collision: str,
                 subtoken: bool = False, composite: bool = False, hole_fill: str = "none",
                 background_lock: float = 0.0, lock_margin: int = 1, warp: str = "token",
                 occluder_contrast: float = 0.0, depth: str = "over", exclude_sources: Optional[bool] = None,
                 keep_index: bool = True, hole_rim: int = 0, fill_in_place: bool = False,
                 vacated_offset: Optional[Sequence[float]] = None, **kw):
        super().__init__(rmap, **kw)
        if hole_fill not in HOLE_FILLS:
            raise ValueError(f"hole_fill must be one of {HOLE_FILLS}, got {hole_fill!r}")
        self.subtoken, self.composite, self.hole_fill = bool(subtoken), bool(composite), hole_fill
        if warp not in WARPS:
            raise ValueError(f"warp must be one of {WARPS}, got {warp!r}")
        self.warp = warp
        self.occluder_contrast = float(occluder_contrast)
        #: [ours] fill_in_place: vacated tokens that are no source show the fill in place (and take lost edge pixels)
        self.fill_in_place = bool(fill_in_place) and bool(rewrite_ids) and hole_fill != "none"
        self._spill_onto = self.fill_in_place and self.composite     # moved_patch_pixels spills with composite
        #: a lost edge row landing in a hole: pasted over the fill its slot shows (hole_patches)
        self._hole_spill = hole_spill_of(rmap, subtoken=self.subtoken, warp=warp) if self._spill_onto else None
        self._pixels = moved_patch_pixels(rmap, subtoken=self.subtoken, composite=self.composite, warp=warp,
                                          fill_vacated=hole_fill != "none" and rmap.painted is not None,
                                          spill_onto=self._spill_onto)
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, got {depth!r}")
        #: (part, rule) of each drag group whose moved content stays behind some objects in front
        self._depth = [(part, rule) for part, rule in depth_groups(rmap, depth) if rule != "over"]
        empty = torch.zeros(0, dtype=torch.long)
        self._slots = hole_slots(rmap) if rewrite_ids and hole_fill != "none" else (empty, empty)
        if not 0.0 <= background_lock <= 1.0 or lock_margin < 0 or hole_rim < 0:
            raise ValueError(f"need 0 <= background_lock <= 1, lock_margin >= 0 and hole_rim >= 0, got "
                             f"{background_lock}, {lock_margin}, {hole_rim}")
        self.background_lock, self.lock_margin = float(background_lock), int(lock_margin)
        # the moved content is shifted whenever subtoken is on (composite or not): keep those pixels free
        edit = edited_pixels(rmap, subtoken=self.subtoken, warp=warp, spill_onto=self._spill_onto).float()[None, None]
        self._edited = edit[0, 0] > 0
        k = 2 * self.lock_margin + 1
        #: latent pixels held to the reference (outside the edited pixels grown by lock_margin)
        self.locked = ~(torch.nn.functional.max_pool2d(edit, k, stride=1, padding=self.lock_margin)[0, 0] > 0)
        #: [ours] hole_rim: the vacated pixels next to the landed content, held to the filled reference
        #: (the objects in front carried with the content left free where they reveal; per run, rim_pixels)
        self.hole_rim = int(hole_rim) if hole_fill != "none" and rmap.fine_mask is not None else 0
        if hide not in HIDE_SETS:
            raise ValueError(f"hide must be one of {HIDE_SETS}, got {hide!r}")
        if hide_from not in HIDE_FROM:
            raise ValueError(f"hide_from must be one of {HIDE_FROM}, got {hide_from!r}")
        self.rewrite_ids, self.hide, self.hide_from = bool(rewrite_ids), hide, hide_from
        self.id_kw = dict(keep_index=keep_index, collision=collision, vacated_offset=vacated_offset)
        self.exclude_sources = self.rewrite_ids if exclude_sources is None else bool(exclude_sources)
        self.hidden = torch.nonzero(rmap.hide_mask(hide, self.exclude_sources).reshape(-1)).flatten()
        if self.fill_in_place:
            # [ours] the vacated tokens that are no source stay in place, re-embedded from the filled
            # reference as their own slots (those given spilled edge pixels from _pixels), and are no
            # longer hidden (they show no old content)
            stay = torch.nonzero((rmap.vacated_mask & ~rmap.used_source_mask).reshape(-1)).flatten()
            if stay.numel():
                self.hidden = self.hidden[~torch.isin(self.hidden, stay)]
                stay = stay[~torch.isin(stay, self._pixels[0])]
                self._slots = (torch.cat([self._slots[0], stay]), torch.cat([self._slots[1], stay]))

    def intended_ids(self, base_ids: torch.Tensor) -> torch.Tensor:
        """The reference tokens' ids after the rewrite, for their Kontext ids ``base_ids``
        (the hole-fill slots take their hole's ids)."""
        out = reference_position_ids(base_ids, self.rmap.grid_hw, self.rmap, **self.id_kw)
        slots, holes = self._slots
        if slots.numel():
            d = base_ids.device
            out[..., slots.to(d), 1:] = base_ids[..., holes.to(d), 1:]
        return out

    def post_input(self, ctx: ForwardContext, d: dict) -> dict:
        if not self.rewrite_ids or not self.active(ctx):
            return d
        h, w = self.rmap.grid_hw
        a = ctx.n_img + self.ref_offset(ctx)
        ids = d["img_ids"]
        seg = ids[:, a:a + h * w]
        state = ctx.state(self)
        last = state.ids
        if last is not None and last[0].shape == seg.shape and last[0].device == seg.device \
                and torch.equal(last[0], seg):
            new = last[1]
        else:
            new = self.intended_ids(seg)
            state.ids = (seg.clone(), new)
        out = ids.clone()
        out[:, a:a + h * w] = new
        d = dict(d)
        d["img_ids"] = out
        if (self._pixels[0].numel() or self._depth) and ctx.ref_latents:   # the depth rule may add tokens
            d["img"] = self._reembed(ctx, d["img"], a, "shifted")
        if self._slots[0].numel() and ctx.ref_latents:
            d["img"] = self._reembed(ctx, d["img"], a, "holes")
        return d

    def on_forward_end(self, ctx: ForwardContext, out: torch.Tensor) -> Optional[torch.Tensor]:
        """Background lock [ours]: outside the edited latent pixels (the region and where it
        lands, :func:`~fluxdrag.core.reverse_landed.edited_pixels`, grown by ``lock_margin``) the
        model's velocity becomes the one that denoises to the reference,
        (x − reference) / σ, in the first ``background_lock`` fraction of the steps."""
        if self.background_lock <= 0.0 or ctx.x is None or not ctx.ref_latents or not self.active(ctx):
            return None
        if ctx.sigma <= 0.0 or not step_active(ctx.step, ctx.sample_sigmas, 0.0, self.background_lock):
            return None
        x = ctx.x
        ref = ctx.ref_latents[self.reference_index]
        H, W = min(x.shape[-2], ref.shape[-2], self.locked.shape[0]), min(x.shape[-1], ref.shape[-1],
                                                                           self.locked.shape[1])
        keep = self.locked[:H, :W].to(out.device)
        held = ref[..., :H, :W].to(x.device).float()
        if self.hole_rim:
            state = ctx.state(self)
            rim = self.rim_pixels(state, ref)[:H, :W].to(out.device)
            keep = keep | rim
            held = torch.where(rim, self.filled_for(state, ref)[..., :H, :W].to(x.device).float(), held)
        v = (x[..., :H, :W].float() - held) / ctx.sigma
        new = out.clone()
        new[..., :H, :W] = torch.where(keep, v.to(out.dtype), out[..., :H, :W])
        return new

    def rim_pixels(self, state: ContextDragRun, ref: torch.Tensor) -> torch.Tensor:
        """(2h, 2w) bool, once per run: :func:`~fluxdrag.core.reverse_depth.hole_rim_pixels` with
        ``hole_rim`` on the reference."""
        key = ("rim", self.hole_rim, *_ref_key(ref))
        if key not in state.masks:     # on the moving shape where composite shows the background off it
            state.masks[key] = hole_rim_pixels(self.rmap, ref, rim=self.hole_rim, subtoken=self.subtoken,
                                               warp=self.warp, contrast=self.occluder_contrast,
                                               on_shape=self.composite, spill_onto=self._spill_onto)
        return state.masks[key]

    def filled_for(self, state: ContextDragRun, ref: torch.Tensor) -> torch.Tensor:
        """:meth:`filled` of the reference (padded to the grid at the border), once per run and
        reference (a batch of cond and uncond rows, or of one, is another key)."""
        key = ("filled", *_ref_key(ref))
        if key not in state.masks:
            state.masks[key] = self.filled(self._on_grid(ref))
        return state.masks[key]

    def _on_grid(self, ref: torch.Tensor) -> torch.Tensor:
        """``ref`` cropped to the map's grid of latent pixels, its edge pixels repeated where it is
        smaller."""
        p = 2
        h, w = self.rmap.grid_hw
        x = ref
        if x.shape[-2] < h * p or x.shape[-1] < w * p:
            x = torch.nn.functional.pad(x, (0, w * p - x.shape[-1], 0, h * p - x.shape[-2]), mode="replicate")
        return x[..., :h * p, :w * p]

    def hole_patches(self, ref: torch.Tensor, filled: Optional[torch.Tensor] = None) -> tuple:
        """(slot token indices, (B, n, C·p·p) patches): each hole token's reference pixels with the
        painted region filled (:meth:`filled`, or ``filled``: it already), in FLUX's patchify order."""
        slots, holes = self._slots
        p = 2
        h, w = self.rmap.grid_hw
        x = self._on_grid(ref)
        filled = self.filled(x) if filled is None else filled
        off = torch.arange(p)
        rows = ((holes // w)[:, None] * p + off[None]).to(x.device)
        cols = ((holes % w)[:, None] * p + off[None]).to(x.device)
        patches = filled[:, :, rows[:, :, None], cols[:, None, :]]          # (B, C, n, p, p)
        if self._hole_spill is not None:     # lost edge pixels landing in a hole, over its fill
            spilled, s_rows, s_cols, take = self._hole_spill
            for i, q in enumerate(holes.tolist()):
                j = (spilled == q).nonzero().flatten()
                if j.numel():
                    j = int(j[0])
                    got = x[:, :, s_rows[j].to(x.device), s_cols[j].to(x.device)].to(patches.dtype)
                    patches[:, :, i] = torch.where(take[j].to(x.device), got, patches[:, :, i])
        return slots, patches.permute(0, 2, 1, 3, 4).reshape(x.shape[0], slots.numel(), x.shape[1] * p * p)

    def depth_pixels(self, ref: torch.Tensor) -> tuple:
        """``moved_patch_pixels``' (tokens, rows, cols) with the depth rule (``kept_behind``)."""
        return kept_behind(self.rmap, self._pixels, ref, groups=self._depth, contrast=self.occluder_contrast,
                           edited=self._edited)

    def filled(self, x: torch.Tensor) -> torch.Tensor:
        """The reference (cropped to the grid) with its painted region (else M_SRC's tokens) filled
        (:func:`~fluxdrag.core.reverse_depth.filled_reference`, ``hole_fill``'s method)."""
        p = 2
        fine = self.rmap.painted
        if fine is None:
            fine = self.rmap.src_mask.repeat_interleave(p, 0).repeat_interleave(p, 1)
        return filled_reference(x, fine, method=self.hole_fill, contrast=self.occluder_contrast)

    def shifted_patches(self, ref: torch.Tensor, pixels: tuple | None = None,
                        filled: Optional[torch.Tensor] = None) -> tuple:
        """(token indices, (B, n, C·p·p) patches): the moved tokens' reference content shifted by
        :func:`~fluxdrag.core.reverse_tokens.subtoken_shifts` and composited onto the destination's
        background (``moved_patch_pixels``, or ``pixels``: :meth:`depth_pixels`; edge pixels
        repeated at the border), in the order of FLUX's patchify
        ("b c (h ph) (w pw) -> b (h w) (c ph pw)"); ``filled``: :meth:`filled` of it, if known."""
        src, rows, cols = self._pixels if pixels is None else pixels
        p = rows.shape[-1]
        h, w = self.rmap.grid_hw
        x = self._on_grid(ref)
        if bool((rows >= h * p).any()):               # vacated pixels show the filled reference
            x = torch.cat([x, self.filled(x) if filled is None else filled], dim=-2)
        patches = x[:, :, rows.to(x.device), cols.to(x.device)]           # (B, C, n, p, p)
        return src, patches.permute(0, 2, 1, 3, 4).reshape(x.shape[0], src.numel(), x.shape[1] * p * p)

    def _reembed(self, ctx: ForwardContext, img: torch.Tensor, a: int, name: str) -> torch.Tensor:
        """The embedded sequence with reference tokens re-embedded from new patches: ``name``
        "shifted", the moved tokens' shifted / composited content (:meth:`shifted_patches` of
        :meth:`depth_pixels`), or "holes", the hole-fill slots' filled reference
        (:meth:`hole_patches`); embedded once per run (the reference is fixed)."""
        state = ctx.state(self)
        ref = ctx.ref_latents[self.reference_index]
        key = (name, str(img.device), img.dtype, *_ref_key(ref))
        if key not in state.masks:
            if name == "shifted":
                pix = self.depth_pixels(ref)
                vac = bool((pix[1] >= self.rmap.grid_hw[0] * pix[1].shape[-1]).any())   # rows in the fill
                idx, patches = self.shifted_patches(ref, pix, filled=self.filled_for(state, ref) if vac else None)
            else:
                idx, patches = self.hole_patches(ref, filled=self.filled_for(state, ref))
            state.masks[key] = (idx, ctx.model.img_in(patches.to(device=img.device, dtype=img.dtype)))
        idx, emb = state.masks[key]
        if not idx.numel():
            return img
        if emb.shape[0] != img.shape[0]:
            emb = emb.expand(img.shape[0], -1, -1) if emb.shape[0] == 1 else emb
        out = img.clone()
        out[:, a + idx.to(img.device)] = emb.to(img.dtype)
        return out

    def claims(self, call: AttentionCall) -> bool:
        return bool(self.hidden.numel()) and super().claims(call)

    def mask_for(self, call: AttentionCall) -> torch.Tensor:
        """The additive (1, 1, n_q, n_seq) mask PCA adds over the sequence's own keys."""
        sl = call.slices()
        n_q = call.q.shape[2]
        n_seq = call.ctx.n_tokens
        cols0 = sl["ref"].start + self.ref_offset(call.ctx)
        key = (n_q, n_seq, cols0, sl["img"].start, sl["txt"].start, call.q.dtype, str(call.q.device))
        masks = call.state(self).masks
        hit = masks.get(key)
        if hit is None:
            rows = {"image": [sl["img"]], "image_text": [sl["img"], sl["txt"]],
                    "all": [slice(0, n_q)]}[self.hide_from]
            hit = key_hiding_mask(n_q, n_seq, rows, self.hidden + cols0, dtype=call.q.dtype, device=call.q.device)
            masks[key] = hit
        return hit

    def attention(self, call: AttentionCall, next_fn):
        call.state(self).active_calls += 1
        mask = combine_masks(call.mask, self.mask_for(call))
        if mask.shape[-1] != call.k.shape[2]:
            mask = pad_keys(mask, call.k.shape[2], call.q.dtype)
        return next_fn(call.q, call.k, call.v, mask)
