"""DragFlow's K/V bank, an attention-router controller (arXiv 2510.02253; docs/dragflow.md, "K/V injection").

**K/V injection** (:class:`KVBank`, an attention-router controller). During inversion it captures
K and V of the chosen blocks' attention calls; during the optimisation forwards and sampling it
replaces them: K ← η·K + (1−η)·K̄, V ← η·V + (1−η)·V̄ (η = 0: full replacement, DragFlow's
default). The router hands us K after QK-norm and RoPE. Capture and injection happen at the
*same* token positions, and RoPE is linear per position, so blending rotated keys equals rotating
blended keys: no un-rotation is needed (the notes' "pre-RoPE" is honoured exactly). DragFlow
blends ``to_k`` outputs *before* the QK RMS-norm; for η ∈ (0, 1) we blend after it [guess:
differs only for partial blends; η = 0 and η = 1 are identical]. Double blocks: image tokens
only (DragFlow's ``to_k``/``to_v`` there see image tokens only). Single blocks: text and image
tokens, as in DragFlow — ``inject_text=True`` default; when the captured and the
current text lengths differ, the text part is skipped for that call and noted (ComfyUI pads
FLUX T5 prompts to 256 tokens, so this only happens for longer prompts). Entries are keyed by
sigma like LazyDrag's cache (``TokenCache``), with a nearest-key fallback of ±``key_tolerance``
µσ for rounding; the edit adds one capture at the inversion's end point σ₀ (FireFlow never
evaluates there while inverting), which the optimisation forwards and the first sampling step use.

The bank is an immutable spec. Whether a call captures or injects, and which image tokens it may
replace, travel with the call (:func:`kv_call_options`: the edit passes them per velocity call in
``transformer_options``; without them the bank does what its ``mode`` says); what a run counts is
its :class:`KVRun`; the captured entries, their sigma keys and text lengths are the cache's.
"""
from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..core.cache import TokenCache, sigma_key
from ..core.dragflow_layers import LayerSelection
from ..core.geometry import repeat_batch
from .autograd import autograd_alias
from .router import AttentionCall, Controller

CACHE_NAME = "dragflow_kv"
KV_KEY = "fluxdrag_kv"
MODES = ("capture", "inject", "off")

log = logging.getLogger("FluxDrag")


@dataclass(frozen=True)
class KVCall:
    """How the bank treats the calls of one model evaluation (see :func:`kv_call_options`)."""

    mode: str
    #: image tokens whose K/V may be replaced (bool (n_img,), True = inject) or None = all
    scope: Optional[torch.Tensor] = None


def kv_call_options(model_options: dict, mode: str, scope: Optional[torch.Tensor] = None) -> dict:
    """A shallow copy of ``model_options`` whose calls the bank treats with ``mode`` and ``scope``
    (the input is not changed; the run state and wrappers are shared)."""
    if mode not in MODES:
        raise ValueError(f"K/V mode must be one of {MODES}, got {mode!r}")
    mo = dict(model_options)
    mo["transformer_options"] = {**mo.get("transformer_options", {}), KV_KEY: KVCall(mode, scope)}
    return mo


@dataclass
class KVRun:
    """What one run of a :class:`KVBank` counts."""

    captured: int = 0
    hits: int = 0
    misses: int = 0
    notes: list = field(default_factory=list)


class KVBank(Controller):
    """Capture K/V of selected blocks during inversion; inject them afterwards (see module doc).

    ``mode``: "capture", "inject" or "off" for calls that do not say (:func:`kv_call_options`)."""

    name = "dragflow_kv"

    def __init__(self, layers: LayerSelection, cache: TokenCache, eta: float = 0.0,
                 inject_text: bool = True, key_tolerance: int = 2, mode: str = "capture"):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.layers, self.cache, self.eta = layers, cache, float(eta)
        self.inject_text, self.key_tolerance, self.mode = inject_text, int(key_tolerance), mode
        self.block_types = {t for t, ix in (("double", layers.double), ("single", layers.single)) if ix}
        self.block_indices = {"double": set(layers.double), "single": set(layers.single)}

    @property
    def keys(self) -> list:
        """The sigma keys captured so far (the cache's steps)."""
        return self.cache.steps()

    def start_run(self, sigmas) -> KVRun:
        return KVRun()

    def end_run(self, state: Any, error: Optional[BaseException]) -> None:
        if state.notes:
            log.info("[FluxDrag] DragFlow K/V: %s", "; ".join(state.notes))

    def _call(self, call: AttentionCall) -> KVCall:
        """The mode and scope of this call: the edit's per-call options, else ``self.mode`` over all
        tokens. DragFlow's ``kv_scope`` [ours] keeps the edited branch's own K/V on the regions'
        source and destination tokens through the scope."""
        kv = (call.transformer_options or {}).get(KV_KEY)
        return kv if isinstance(kv, KVCall) else KVCall(self.mode)

    def claims(self, call: AttentionCall) -> bool:
        mode = self._call(call).mode
        if mode == "off" or not self.block_types:
            return False
        if mode == "inject" and self.eta >= 1.0:
            return False  # η = 1 keeps the model's own K/V: not touching the call is bitwise that
        return super().claims(call)

    def _span(self, call: AttentionCall) -> tuple[int, int, int]:
        """(start, stop, n_txt_in_span) of the replaced token range in the attention sequence."""
        sl = call.slices()
        img, txt = sl["img"], sl["txt"]
        if call.block_type == "single" and self.inject_text and txt.stop == img.start:
            return txt.start, img.stop, txt.stop - txt.start
        return img.start, img.stop, 0

    def _lookup(self, key: int) -> Optional[int]:
        keys = self.cache.steps()
        j = bisect.bisect_left(keys, key)
        best = None
        for c in (j - 1, j):
            if 0 <= c < len(keys) and abs(keys[c] - key) <= self.key_tolerance:
                if best is None or abs(keys[c] - key) < abs(best - key):
                    best = keys[c]
        return best

    def attention(self, call: AttentionCall, next_fn):
        ctx = call.ctx
        if ctx.sigma <= 0:
            return next_fn(call.q, call.k, call.v, call.mask)
        blk = (call.block_type, call.block_index)
        start, stop, n_txt = self._span(call)
        kv, run = self._call(call), call.state(self)
        if kv.mode == "capture":
            key = sigma_key(ctx.sigma)
            idx = torch.arange(start, stop, device=call.k.device)
            self.cache.put(key, blk, "k", call.k, index=idx, dim=2)
            self.cache.put(key, blk, "v", call.v, index=idx, dim=2)
            self.cache.meta[(key, blk, "n_txt")] = n_txt
            run.captured += 1
            return next_fn(call.q, call.k, call.v, call.mask)
        key = self._lookup(sigma_key(ctx.sigma))
        if key is None or not self.cache.has(key, blk, "k"):
            run.misses += 1
            return next_fn(call.q, call.k, call.v, call.mask)
        run.hits += 1
        k, v = call.k, call.v
        kb = self.cache.get(key, blk, "k", k.device, k.dtype)
        vb = self.cache.get(key, blk, "v", v.device, v.dtype)
        c_txt = self.cache.meta.get((key, blk, "n_txt"), 0)
        if c_txt != n_txt:  # text lengths differ: inject the image part only
            if len(run.notes) < 4:
                run.notes.append(f"{blk}: captured {c_txt} text tokens, now {n_txt}; image only")
            kb, vb = kb[:, :, c_txt:], vb[:, :, c_txt:]
            start += n_txt
        kb, vb = (autograd_alias(repeat_batch(kb, k.shape[0], "FluxDrag DragFlow", "the captured batch")),
                  autograd_alias(repeat_batch(vb, v.shape[0], "FluxDrag DragFlow", "the captured batch")))
        if kb.shape[2] != stop - start:
            raise RuntimeError(f"FluxDrag DragFlow: cached K/V of block {blk} cover {kb.shape[2]} "
                               f"tokens but the call has {stop - start}; the image size changed")
        keep = None
        if kv.scope is not None:
            n_img = call.slices()["img"].stop - call.slices()["img"].start
            if kv.scope.numel() != n_img:
                raise RuntimeError(f"FluxDrag DragFlow: K/V scope covers {kv.scope.numel()} image "
                                   f"tokens but the call has {n_img}")
            img_start = call.slices()["img"].start
            sel = torch.ones(stop - start, dtype=torch.bool, device=k.device)
            sel[img_start - start:] = kv.scope.to(k.device)
            keep = sel
        k = self._blend(k, kb, start, stop, keep)
        v = self._blend(v, vb, start, stop, keep)
        return next_fn(call.q, k, v, call.mask)

    def _blend(self, t: torch.Tensor, cached: torch.Tensor, start: int, stop: int,
               inject: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``t`` with the span [start, stop) blended towards ``cached``; with ``inject`` (bool over
        the span) only where it is True — elsewhere the span keeps ``t`` bit for bit."""
        own = t[:, :, start:stop]
        seg = cached if self.eta == 0.0 else self.eta * own + (1.0 - self.eta) * cached
        if inject is not None:
            seg = torch.where(inject.view(1, 1, -1, 1), seg, own)
        return torch.cat((t[:, :, :start], seg, t[:, :, stop:]), dim=2)


def estimate_kv_bytes(layers: LayerSelection, n_evals: int, batch: int, heads: int, head_dim: int,
                      n_img: int, n_txt: int, inject_text: bool, bytes_per: int) -> int:
    """Bytes of the K/V cache: per evaluation, per chosen block, K and V of the replaced tokens."""
    per_double = n_img
    per_single = n_img + (n_txt if inject_text else 0)
    tokens = len(layers.double) * per_double + len(layers.single) * per_single
    return 2 * n_evals * batch * heads * head_dim * tokens * bytes_per


@dataclass(eq=False)
class DragFlowKVPlan:
    """``edit_map``-style object for ``run_inversion``: installs the capture controller."""

    bank: KVBank
    n_txt: int
    cache_name: str = CACHE_NAME

    def capture_controllers(self, cache: TokenCache, sigmas: torch.Tensor, shape: tuple, model):
        from ..core.cache import bytes_per_element

        dm = model.get_model_object("diffusion_model")
        n_evals = len(sigmas)  # FireFlow: one per step + the end point the edit adds
        dtype = model.model.get_dtype() if hasattr(model.model, "get_dtype") else torch.bfloat16
        need = estimate_kv_bytes(self.bank.layers, n_evals, batch=shape[0], heads=dm.num_heads,
                                 head_dim=dm.hidden_size // dm.num_heads,
                                 n_img=(shape[-2] // 2) * (shape[-1] // 2), n_txt=self.n_txt,
                                 inject_text=self.bank.inject_text,
                                 bytes_per=bytes_per_element(cache.policy, dtype))
        cache.reserve(need)
        # the bank is wired to the inversion's cache before it is installed anywhere; it captures
        # in that run because its mode says so (the edit's calls say what they want)
        self.bank.cache = cache
        return [self.bank] if self.bank.block_types else []
