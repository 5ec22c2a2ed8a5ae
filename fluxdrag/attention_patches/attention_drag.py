"""AttentionDrag on the router: capture one self-attention layer's map to the handles, and DDIM.

Method: ``core/attention_drag.py`` + ``core/attention_drag_move.py`` (docs/attentiondrag.md). Here:

- :class:`AttentionCapture`, a router controller that, on the one model call it is armed for,
  reads q/k of one layer's *image* self-attention and turns them into attention-to-handle maps
  right away (only the small maps are kept, unless ``keep_qk``). Layers:
  SD-family UNet (``needs_unet``): the transformer block named by ComfyUI's
  ``transformer_options["block"]`` (``("input"|"middle"|"output", i)``) and ``block_index``; the
  self-attention (attn1) call is told from the cross-attention (attn2) call by k's length (= q's
  for self-attention) and, for grids whose size equals the text length, by call order (attn1 comes
  first in every ``BasicTransformerBlock``). q/k come as (B, N, heads·D) and are reshaped by heads.
  FLUX: a ``single``/``double`` block's joint attention, sliced to the image tokens
  (``call.slices()["img"]``), q/k after RoPE, at the sigma it is armed for.
  Only rows of the positive (cond) chunk are read.
- :func:`ddim_eps_function`: ε(x_ddim, t) over ComfyUI's denoiser for EPS models
  (x_comfy = x_ddim·√(1 + σ_t²), ε = (x_comfy − D(x_comfy, σ_t)) / σ_t; see ``core/ddim.py``).
- :func:`unet_attention_layers` / :func:`default_unet_layer`: the UNet blocks holding attention and
  their resolution level; the default layer is the first output block at half the latent's
  resolution (SD1.5: ``("output", 6)``, 32×32 for a 512² image) [guess: the paper's layer is not
  recoverable]. FLUX's default is the middle single block (FLUX.1: ``single.19``) [guess].
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..core.attention_drag_move import LATENT_PX, attention_maps_from_qk, block_grid
from .router import AttentionCall, Controller

UNET_BLOCKS = ("input", "middle", "output")


@dataclass(frozen=True)
class LayerRef:
    """A self-attention layer: UNet ``(kind, index)`` (+ transformer ``depth`` index) or FLUX
    ``single``/``double`` block ``index``."""

    kind: str
    index: int
    depth: int = 0

    @property
    def unet(self) -> bool:
        return self.kind in UNET_BLOCKS

    def __str__(self) -> str:
        return f"{self.kind}.{self.index}" + (f".{self.depth}" if self.depth else "")


@dataclass
class Capture:
    """What :class:`AttentionCapture` read on its call."""

    maps: torch.Tensor              # (b, n_handles, h_b, w_b) float32 on the CPU, per latent row
    grid: tuple                     # layer grid (h_b, w_b)
    factor: int                     # latent cells per layer cell (side)
    layer: str                      # e.g. "output.1" or "single.1"
    block: tuple                    # ComfyUI's name: ("output", 1, 0) / ("single", 1)
    sigma: Optional[float]
    heads: int
    q: Optional[torch.Tensor] = None  # (b, heads, N, D) image q, k when keep_qk
    k: Optional[torch.Tensor] = None
    extra: dict = field(default_factory=dict)


class AttentionCapture(Controller):
    """Reads one layer's image self-attention on the armed call(s); the last read wins.

    ``handles_px``: (x, y) pixel handles; ``latent_hw``: the latent's (h, w) (8 px cells);
    ``batch``: the latent batch (rows of the cond chunk). FLUX: armed whenever the call's sigma is
    within ``sigma_tol`` (relative) of ``sigma``; UNet: armed by setting ``armed`` around the
    call (UNet calls carry no sigma context).
    """

    name = "attentiondrag_capture"

    def __init__(self, layer: LayerRef, handles_px, latent_hw: tuple, batch: int = 1,
                 direction: str = "query", heads_reduce: str = "mean", sigma: Optional[float] = None,
                 sigma_tol: float = 1e-4, keep_qk: bool = False):
        self.layer = layer
        self.needs_unet = layer.unet
        self.handles_px = [tuple(float(c) for c in p) for p in handles_px]
        self.latent_hw = (int(latent_hw[0]), int(latent_hw[1]))
        self.batch = int(batch)
        self.direction, self.heads_reduce = direction, heads_reduce
        self.sigma, self.sigma_tol = sigma, sigma_tol
        self.keep_qk = keep_qk
        self._armed = False
        self._counts: dict = defaultdict(int)
        self.capture: Optional[Capture] = None
        self.captures = 0

    # -- arming (UNet) -------------------------------------------------------------------------
    @property
    def armed(self) -> bool:
        return self._armed

    @armed.setter
    def armed(self, value: bool) -> None:
        self._armed = bool(value)
        self._counts.clear()

    # -- claiming --------------------------------------------------------------------------------
    def claims(self, call: AttentionCall) -> bool:
        if call.ctx is None:
            return self.layer.unet and self._armed and self._unet_self_attention(call)
        if self.layer.unet or call.block_type != self.layer.kind or call.block_index != self.layer.index:
            return False
        if self.sigma is None:
            return self._armed
        return abs(call.ctx.sigma - self.sigma) <= self.sigma_tol * max(1.0, abs(self.sigma))

    def _unet_self_attention(self, call: AttentionCall) -> bool:
        to = call.transformer_options
        block = to.get("block")
        if block is None or tuple(block) != (self.layer.kind, self.layer.index):
            return False
        if int(to.get("block_index", 0)) != self.layer.depth:
            return False
        key = (tuple(block), int(to.get("block_index", 0)))
        order = self._counts[key]
        self._counts[key] += 1
        if call.skip_reshape or call.q.ndim != 3:
            return False
        n_q, n_k = call.q.shape[1], call.k.shape[1]
        shape = to.get("activations_shape")
        n_grid = int(shape[-2]) * int(shape[-1]) if shape is not None and len(shape) == 4 else n_q
        # self-attention: keys are the image tokens; attn1 precedes attn2 in each transformer block
        return n_k == n_q == n_grid and order % 2 == 0

    # -- reading ---------------------------------------------------------------------------------
    def _cond_rows(self, labels: list, total: int) -> Optional[slice]:
        if not labels:
            return slice(0, min(self.batch, total))
        if 0 not in labels:
            return None
        chunk = total // len(labels)
        i = labels.index(0)
        return slice(i * chunk, i * chunk + chunk)

    def attention(self, call: AttentionCall, next_fn):
        if call.ctx is None:
            b_all, n, c = call.q.shape
            heads = int(call.heads)
            q = call.q.reshape(b_all, n, heads, c // heads).transpose(1, 2)
            k = call.k.reshape(b_all, n, heads, c // heads).transpose(1, 2)
            labels = list(call.transformer_options.get("cond_or_uncond", []))
            block = (self.layer.kind, self.layer.index, self.layer.depth)
            sigma = None
            sig = call.transformer_options.get("sigmas")
            if torch.is_tensor(sig) and sig.numel():
                sigma = float(sig.reshape(-1)[0])
        else:
            img = call.slices()["img"]
            q, k = call.q[:, :, img], call.k[:, :, img]
            heads = int(q.shape[1])
            labels = list(call.ctx.cond_or_uncond)
            block = (call.block_type, call.block_index)
            sigma = call.ctx.sigma
        rows = self._cond_rows(labels, q.shape[0])
        if rows is not None:
            self._read(q[rows], k[rows], heads, block, sigma)
        return next_fn(call.q, call.k, call.v, call.mask)

    def _read(self, q: torch.Tensor, k: torch.Tensor, heads: int, block: tuple, sigma) -> None:
        hb, wb, f = block_grid(q.shape[2], self.latent_hw)
        maps = torch.stack([
            attention_maps_from_qk(q[r:r + 1], k[r:r + 1], self.handles_px, (hb, wb), LATENT_PX * f,
                                   direction=self.direction, heads_reduce=self.heads_reduce)
            for r in range(q.shape[0])
        ]).float().cpu()
        self.capture = Capture(
            maps=maps, grid=(hb, wb), factor=f, layer=str(self.layer), block=block, sigma=sigma,
            heads=heads, q=q.detach().float().cpu().clone() if self.keep_qk else None,
            k=k.detach().float().cpu().clone() if self.keep_qk else None)
        self.captures += 1


class BackgroundLock(Controller):
    """Keeps the cells an AttentionDrag move left alone on the inversion's own path while
    sampling back [ours, not in the paper; setting ``background_lock``, paper value 0].

    After each of the first ``steps`` sampling steps the cells where ``keep`` (B, 1, h, w) is True
    are set to the inversion's latent at the level just reached (``trajectory``: key → latent of
    the whole batch; FLUX keys are ``sigma_key(σ)``, the σ = 0 entry the source). Everything the
    move wrote or vacated (the mask ∪ the destinations) is sampled freely. Claims no attention
    call and keeps no run state (an immutable spec). FLUX: through the router's ``after_step``
    (FluxDrag's own samplers); SD1.x: the DDIM loop calls :meth:`lock` with its own keys.

    Content lock [ours; setting ``content_lock``, paper value 0]: for the first ``content_steps``
    steps the cells the move wrote (``written``, (B, 1, h, w)) take ``move(ref)``, the same
    one-step move applied to the inversion's latent at that level, so the moved content follows
    its source's own path instead of being re-generated at high noise; the rest of the steps
    blend it in.
    """

    name = "attentiondrag_background_lock"
    block_types: set = set()   # no attention call

    def __init__(self, keep: torch.Tensor, trajectory: dict, steps: int,
                 written: Optional[torch.Tensor] = None, move: Optional[Callable] = None,
                 content_steps: int = 0):
        self.keep = keep.bool()
        self.trajectory = trajectory
        self.steps = int(steps)
        self.written = None if written is None else written.bool()
        self.move = move
        self.content_steps = int(content_steps) if move is not None and written is not None else 0

    def lock(self, i: int, key, x: torch.Tensor) -> Optional[torch.Tensor]:
        if i >= max(self.steps, self.content_steps):
            return None
        ref = self.trajectory.get(key)
        if ref is None or tuple(ref.shape) != tuple(x.shape):
            return None
        ref = ref.to(device=x.device, dtype=x.dtype)
        if i < self.steps:
            x = torch.where(self.keep.to(x.device), ref, x)
        if i < self.content_steps:
            x = torch.where(self.written.to(x.device), self.move(ref).to(x.dtype), x)
        return x

    def after_step(self, state, i: int, sigma_next: float, x: torch.Tensor) -> Optional[torch.Tensor]:
        from ..core.cache import sigma_key

        return self.lock(i, sigma_key(sigma_next), x)


def flux_trajectory(sigmas: torch.Tensor, trajectory: list, z_0: Optional[torch.Tensor]) -> dict:
    """``sigma_key(σ)`` → model-space latent of a FLUX inversion record (its sampling ``sigmas``,
    its per-step ``trajectory`` and the source ``z_0`` at σ = 0)."""
    from ..core.cache import sigma_key

    inv = sigmas.flip(0).tolist()
    out = {sigma_key(s): z for s, z in zip(inv[1:], trajectory)}
    if z_0 is not None:
        out[sigma_key(0.0)] = z_0.detach().cpu()
    return out


# --------------------------------------------------------------------------------------------
# sampling helpers
# --------------------------------------------------------------------------------------------
def ddim_eps_function(model_k, extra_args: dict, sigma_table: torch.Tensor,
                      before_call: Optional[Callable[[int], None]] = None,
                      after_call: Optional[Callable[[int], None]] = None) -> Callable:
    """ε(x_ddim, t) over ComfyUI's denoiser ``model_k`` for an EPS model with σ table
    ``sigma_table`` (index = timestep): the UNet sees x_ddim (ComfyUI divides x_comfy by
    √(1 + σ²)). Checks for a ComfyUI interrupt before every call."""
    import comfy.model_management

    table = [float(s) for s in sigma_table.reshape(-1).tolist()]

    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        comfy.model_management.throw_exception_if_processing_interrupted()
        s = table[int(t)]
        xc = x * math.sqrt(1.0 + s * s)
        if before_call is not None:
            before_call(int(t))
        try:
            den = model_k(xc, xc.new_ones([xc.shape[0]]) * s, **extra_args)
        finally:
            if after_call is not None:
                after_call(int(t))
        return (xc - den) / s

    return eps


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------
def _contains(module, cls) -> bool:
    return any(isinstance(m, cls) for m in module.modules())


def unet_attention_layers(dm) -> dict:
    """``{("input"|"middle"|"output", i): level}`` for every UNet block holding a transformer
    (level = number of 2× downsamplings of its resolution relative to the latent)."""
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, Upsample

    out: dict = {}
    level = 0
    for i, blk in enumerate(dm.input_blocks):
        if _contains(blk, Downsample):
            level += 1
        if _contains(blk, SpatialTransformer):
            out[("input", i)] = level
    if dm.middle_block is not None and _contains(dm.middle_block, SpatialTransformer):
        out[("middle", 0)] = level
    for i, blk in enumerate(dm.output_blocks):
        if _contains(blk, SpatialTransformer):
            out[("output", i)] = level
        if _contains(blk, Upsample):
            level -= 1
    return out


def default_unet_layer(dm) -> LayerRef:
    """The first output block at half the latent resolution (else the output block at the
    lowest level above 0, else the first layer) [guess]."""
    layers = unet_attention_layers(dm)
    if not layers:
        raise ValueError("this UNet has no attention layers")
    outs = [(lvl, i) for (kind, i), lvl in layers.items() if kind == "output"]
    at_half = sorted(i for lvl, i in outs if lvl == 1)
    if at_half:
        return LayerRef("output", at_half[0])
    above = sorted((lvl, i) for lvl, i in outs if lvl > 0)
    if above:
        return LayerRef("output", above[0][1])
    kind, i = next(iter(layers))
    return LayerRef(kind, i)


def default_flux_layer(dm) -> LayerRef:
    """The middle single-stream block (FLUX.1: 19 of 38) [guess]."""
    return LayerRef("single", len(dm.single_blocks) // 2)


__all__ = [
    "AttentionCapture",
    "BackgroundLock",
    "Capture",
    "LayerRef",
    "ddim_eps_function",
    "default_flux_layer",
    "default_unet_layer",
    "flux_trajectory",
    "unet_attention_layers",
]
