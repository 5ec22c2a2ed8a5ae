"""DragFlow's K/V bank, an attention-router controller (arXiv 2510.02253, notes §2.5).

**K/V injection** (:class:`KVBank`, an attention-router controller). During inversion it captures
K and V of the chosen blocks' attention calls; during the optimisation forwards and sampling it
replaces them: K ← η·K + (1−η)·K̄, V ← η·V + (1−η)·V̄ (η = 0: full replacement, DragFlow's
default). The router hands us K after QK-norm and RoPE. Capture and injection happen at the
*same* token positions, and RoPE is linear per position, so blending rotated keys equals rotating
blended keys: no un-rotation is needed (the notes' "pre-RoPE" is honoured exactly). DragFlow
blends ``to_k`` outputs *before* the QK RMS-norm; for η ∈ (0, 1) we blend after it [guess:
differs only for partial blends; η = 0 and η = 1 are identical]. Double blocks: image tokens
only (DragFlow's ``to_k``/``to_v`` there see image tokens only). Single blocks: text and image
tokens, as in DragFlow (notes §2.5) — ``inject_text=True`` default; when the captured and the
current text lengths differ, the text part is skipped for that call and noted (ComfyUI pads
FLUX T5 prompts to 256 tokens, so this only happens for longer prompts). Entries are keyed by
sigma like LazyDrag's cache (``TokenCache``), with a nearest-key fallback of ±``key_tolerance``
µσ for rounding; the edit adds one capture at the inversion's end point σ₀ (FireFlow never
evaluates there while inverting), which the optimisation forwards and the first sampling step use.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Optional

import torch

from ..core.cache import TokenCache, sigma_key
from ..core.dragflow_layers import LayerSelection
from ..core.geometry import repeat_batch
from .autograd import autograd_alias
from .router import AttentionCall, Controller

CACHE_NAME = "dragflow_kv"


class KVBank(Controller):
    """Capture K/V of selected blocks during inversion; inject them afterwards (see module doc).

    ``mode``: "capture", "inject" or "off" (set by the edit as it goes)."""

    name = "dragflow_kv"

    def __init__(self, layers: LayerSelection, cache: TokenCache, eta: float = 0.0,
                 inject_text: bool = True, key_tolerance: int = 2, mode: str = "capture"):
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        self.layers, self.cache, self.eta = layers, cache, float(eta)
        self.inject_text, self.key_tolerance, self.mode = inject_text, int(key_tolerance), mode
        self.block_types = {t for t, ix in (("double", layers.double), ("single", layers.single)) if ix}
        self.block_indices = {"double": set(layers.double), "single": set(layers.single)}
        self.keys: list[int] = []
        self.n_txt: dict = {}
        self.captured = self.hits = self.misses = 0
        self.notes: list[str] = []
        #: image tokens whose K/V may be replaced (bool (n_img,), True = inject) or None = all
        #: (the paper). Set per branch by the edit: DragFlow's ``kv_scope`` [ours] keeps the
        #: edited branch's own K/V on the regions' source and destination tokens.
        self.scope: Optional[torch.Tensor] = None

    def claims(self, call: AttentionCall) -> bool:
        if self.mode == "off" or not self.block_types:
            return False
        if self.mode == "inject" and self.eta >= 1.0:
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
        j = bisect.bisect_left(self.keys, key)
        best = None
        for c in (j - 1, j):
            if 0 <= c < len(self.keys) and abs(self.keys[c] - key) <= self.key_tolerance:
                if best is None or abs(self.keys[c] - key) < abs(best - key):
                    best = self.keys[c]
        return best

    def attention(self, call: AttentionCall, next_fn):
        ctx = call.ctx
        if ctx.sigma <= 0:
            return next_fn(call.q, call.k, call.v, call.mask)
        blk = (call.block_type, call.block_index)
        start, stop, n_txt = self._span(call)
        if self.mode == "capture":
            key = sigma_key(ctx.sigma)
            idx = torch.arange(start, stop, device=call.k.device)
            self.cache.put(key, blk, "k", call.k, index=idx, dim=2)
            self.cache.put(key, blk, "v", call.v, index=idx, dim=2)
            self.n_txt[(key, blk)] = n_txt
            if key not in self.keys:
                bisect.insort(self.keys, key)
            self.captured += 1
            return next_fn(call.q, call.k, call.v, call.mask)
        key = self._lookup(sigma_key(ctx.sigma))
        if key is None or not self.cache.has(key, blk, "k"):
            self.misses += 1
            return next_fn(call.q, call.k, call.v, call.mask)
        self.hits += 1
        k, v = call.k, call.v
        kb = self.cache.get(key, blk, "k", k.device, k.dtype)
        vb = self.cache.get(key, blk, "v", v.device, v.dtype)
        c_txt = self.n_txt.get((key, blk), 0)
        if c_txt != n_txt:  # text lengths differ: inject the image part only
            if len(self.notes) < 4:
                self.notes.append(f"{blk}: captured {c_txt} text tokens, now {n_txt}; image only")
            kb, vb = kb[:, :, c_txt:], vb[:, :, c_txt:]
            start += n_txt
        kb, vb = (autograd_alias(repeat_batch(kb, k.shape[0], "FluxDrag DragFlow", "the captured batch")),
                  autograd_alias(repeat_batch(vb, v.shape[0], "FluxDrag DragFlow", "the captured batch")))
        if kb.shape[2] != stop - start:
            raise RuntimeError(f"FluxDrag DragFlow: cached K/V of block {blk} cover {kb.shape[2]} "
                               f"tokens but the call has {stop - start}; the image size changed")
        keep = None
        if self.scope is not None:
            n_img = call.slices()["img"].stop - call.slices()["img"].start
            if self.scope.numel() != n_img:
                raise RuntimeError(f"FluxDrag DragFlow: K/V scope covers {self.scope.numel()} image "
                                   f"tokens but the call has {n_img}")
            img_start = call.slices()["img"].start
            sel = torch.ones(stop - start, dtype=torch.bool, device=k.device)
            sel[img_start - start:] = self.scope.to(k.device)
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
        need = estimate_kv_bytes(self.bank.layers, n_evals, shape[0], dm.num_heads,
                                 dm.hidden_size // dm.num_heads, (shape[-2] // 2) * (shape[-1] // 2),
                                 self.n_txt, self.bank.inject_text, bytes_per_element(cache.policy, dtype))
        cache.reserve(need)
        self.bank.cache = cache
        self.bank.mode = "capture"
        return [self.bank] if self.bank.block_types else []
