"""DragFlow on FLUX through ComfyUI's own hooks: features with early exit, autograd, K/V injection.

Method: DragFlow (arXiv 2510.02253), notes ``anchors.md`` §2.3–2.5, §9; the maths (affines,
loss, background mask, optimisation loop, lockstep sampling) is in ``core/dragflow.py`` and
``core/affine.py``. Written from the notes only. What lives here:

**Block hooks** (:class:`DragFlowHooks`). Every double and single block gets a
``patches_replace["dit"][(kind, i)]`` entry on a *clone* of the MODEL (a replacement another pack
installed before is kept and called inside ours). Outside a gradient forward they only count the
call and run ``original_block``. Features of the feature blocks (default: the last two double
blocks, D17/D18 on FLUX.1):

- ``-0``, the image stream's AdaLN-modulated ``norm1`` output (the block's attention input), is
  *read* from the block's own submodules on the block input: ``img_mod(vec)`` gives (shift,
  scale), then ``apply_mod(img_norm1(img), 1 + scale, shift)`` with ComfyUI's ``apply_mod`` — the
  tensor the block feeds to ``img_attn.qkv``, bit for bit (tier-2 test). Models with global
  modulation (``vec`` already a tuple) use their first image modulation the same way.
- ``-2``, the image stream's block output, is the ``img`` that ``original_block`` returns.

Only image tokens are kept (reference tokens appended after them are dropped).

**Early exit.** When a capture session asks for it, the hook of the last feature block raises a
private exception carrying nothing but a flag; :meth:`DragFlowHooks.features` catches it around the
model call, so the single blocks and the final layer never run and the graph ends at the features.
The gradient is the same as through the full forward (the loss does not depend on the skipped
blocks; tier-2 test, allclose).

**Autograd through ComfyUI's FLUX** needs three things, all local to a gradient forward:

1. ComfyUI's blocks add their residuals in place into their inputs (``img += …`` after
   ``img_norm1`` saved ``img``), which autograd rejects. Each block therefore gets clones of its
   stream inputs, and a ``saved_tensors_hooks`` pack hook snapshots (clones) any saved tensor
   that shares storage with them, so the values saved before the in-place add are the ones used.
2. Weights loaded by a ComfyUI server are *inference tensors* (nodes run under
   ``torch.inference_mode()``), which autograd may not save. For the duration of a gradient
   forward (and a checkpoint recompute) every plain inference-mode parameter/buffer of the FLUX
   module is rebound to a zero-copy alias of the same storage made outside inference mode, then
   put back (same objects, same storage, values never written). Quantised/GGUF tensor
   subclasses are left alone: their per-forward dequantisation already makes normal tensors.
3. ``comfy_kitchen``'s RoPE custom ops ship without a backward; :func:`enable_rope_autograd`
   registers the exact one (RoPE is a per-pair rotation R, so ∂/∂x = Rᵀ, i.e. the op with the
   transposed table). Forward results are unchanged.

Gradient checkpointing (option, default on as in DragFlow's config) recomputes each block in
backward by calling the block *module* with the arguments it got (``original_block`` is a
closure over ComfyUI's loop variable, so it cannot be re-called after the loop moved on), with a
snapshot of ``transformer_options`` taken at forward time so attention controllers see the same
block. Memory then holds one block's activations instead of all.

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
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from ..core.cache import TokenCache, format_bytes, sigma_key
from ..core.dragflow import (
    LayerSelection,
    cut_features,
    optimise_latent,
    paired_fireflow,
    unpack_token_features,
)
from .router import AttentionCall, Controller
from .sampling import direct_sampler

WRAPPER_KEY = "fluxdrag_dragflow"
CACHE_NAME = "dragflow_kv"

# --------------------------------------------------------------------------------------------
# autograd helpers
# --------------------------------------------------------------------------------------------
_ROPE_STATE = {"checked": False, "registered": []}


def enable_rope_autograd() -> list[str]:
    """Register backward formulas for ComfyUI's RoPE custom ops when they have none.

    Probes ``comfy.ldm.flux.math.apply_rope1`` with a tiny tensor; only if that cannot be
    differentiated are ``comfy_kitchen::apply_rope`` / ``apply_rope1`` given the exact backward
    (the rotation with the transposed table). Idempotent; returns the ops registered so far."""
    if _ROPE_STATE["checked"]:
        return list(_ROPE_STATE["registered"])
    import comfy.ldm.flux.math as fm

    def probe() -> bool:
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.zeros(1, 1, 1, 2, requires_grad=True)
            pe = torch.eye(2).reshape(1, 1, 1, 1, 2, 2)
            try:
                fm.apply_rope1(x, pe).sum().backward()
                return True
            except RuntimeError:
                return False

    if not probe():
        ops = getattr(torch.ops, "comfy_kitchen", None)

        def rot_t(g, pe):
            if g is None:
                return None
            return torch.ops.comfy_kitchen.apply_rope1(g.contiguous(), pe.transpose(-1, -2).contiguous())

        def setup3(ctx, inputs, output):
            ctx.save_for_backward(inputs[2])

        def back2(ctx, gq, gk):
            (pe,) = ctx.saved_tensors
            return rot_t(gq, pe), rot_t(gk, pe), None

        def setup2(ctx, inputs, output):
            ctx.save_for_backward(inputs[1])

        def back1(ctx, g):
            (pe,) = ctx.saved_tensors
            return rot_t(g, pe), None

        for name, bwd, setup in (("apply_rope", back2, setup3), ("apply_rope1", back1, setup2)):
            if ops is not None and hasattr(ops, name):
                torch.library.register_autograd(f"comfy_kitchen::{name}", bwd, setup_context=setup)
                _ROPE_STATE["registered"].append(f"comfy_kitchen::{name}")
        if not probe():
            raise RuntimeError("FluxDrag DragFlow: FLUX's RoPE in this ComfyUI cannot be "
                               "differentiated and no known op was found to register a backward for")
    _ROPE_STATE["checked"] = True
    return list(_ROPE_STATE["registered"])


def autograd_alias(t: torch.Tensor) -> torch.Tensor:
    """A normal (non-inference) tensor viewing the same storage as ``t`` (zero copy); ``t``
    itself when it is not an inference tensor or is a tensor subclass."""
    if not isinstance(t, torch.Tensor) or not t.is_inference() or type(t) not in (torch.Tensor, torch.nn.Parameter):
        return t
    with torch.inference_mode(False):
        return torch.empty(0, dtype=t.dtype, device=t.device).set_(
            t.untyped_storage(), t.storage_offset(), t.size(), t.stride())


@contextlib.contextmanager
def autograd_safe_params(module: torch.nn.Module):
    """Rebind ``module``'s plain parameters/buffers that are inference tensors or require grad
    to zero-copy aliases that are neither, for the duration of the block; then put the original
    objects back. (No weight gradient is ever built or stored.)"""
    swapped: list = []
    try:
        for mod in module.modules():
            for store in (mod._parameters, mod._buffers):
                for name, p in list(store.items()):
                    if p is None or not (p.is_inference() or p.requires_grad):
                        continue
                    if type(p) is torch.nn.Parameter:
                        if type(p.data) is not torch.Tensor:
                            continue
                        new = torch.nn.Parameter(autograd_alias(p.data.detach()), requires_grad=False)
                    elif type(p) is torch.Tensor:
                        new = autograd_alias(p.detach())
                    else:
                        continue
                    swapped.append((store, name, p))
                    store[name] = new
        yield
    finally:
        for store, name, p in reversed(swapped):
            store[name] = p


@contextlib.contextmanager
def snapshot_saved(*tensors: Optional[torch.Tensor]):
    """Saved-tensor hooks: a tensor saved for backward that shares storage with ``tensors``
    (inputs the block will modify in place) is saved as a copy taken at save time."""
    ptrs = set()
    for t in tensors:
        if t is not None:
            ptrs.add(t.untyped_storage().data_ptr())

    def pack(t):
        try:
            p = t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            return t
        return t.detach().clone() if p in ptrs else t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


class _Recompute(torch.autograd.Function):
    """Checkpoint: forward without a graph, backward re-runs ``run`` with a graph and
    differentiates it (``run`` must be safe to call again: it clones its inputs)."""

    @staticmethod
    def forward(ctx, run, *inputs):
        ctx.run = run
        ctx.save_for_backward(*inputs)
        with torch.no_grad():
            outs = run(*inputs)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        inputs = [x.detach().requires_grad_(x.requires_grad) for x in ctx.saved_tensors]
        with torch.enable_grad():
            outs = ctx.run(*inputs)
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        need = [x for x in inputs if x.requires_grad]
        got: Sequence = []
        if pairs and need:
            got = torch.autograd.grad([o for o, _ in pairs], need, [g for _, g in pairs],
                                      allow_unused=True)
        it = iter(got)
        return (None, *[(next(it) if x.requires_grad else None) for x in inputs])


# --------------------------------------------------------------------------------------------
# block hooks: features, early exit, gradient-safe blocks
# --------------------------------------------------------------------------------------------
class _FeaturesReady(Exception):
    """Raised by the last feature block to stop the forward (caught in DragFlowHooks.features)."""


def modulated_input(block, img: torch.Tensor, vec) -> torch.Tensor:
    """The image stream's attention input of a FLUX double block: AdaLN-modulated norm1(img)."""
    from comfy.ldm.flux.layers import apply_mod

    if getattr(block, "modulation", True):
        mod1, _ = block.img_mod(vec)
    else:  # global modulation: vec = ((img_mod1, img_mod2), (txt_mod1, txt_mod2))
        (mod1, _), _ = vec
    return apply_mod(block.img_norm1(img), 1 + mod1.scale, mod1.shift)


@dataclass
class _Session:
    early_exit: bool
    n_img: int
    grad: bool
    features: dict = field(default_factory=dict)


class _BlockPatch:
    """One ``patches_replace["dit"]`` entry; shared by clones (``deepcopy`` returns it)."""

    def __init__(self, hooks: "DragFlowHooks", kind: str, index: int, prev: Optional[Callable]):
        self.hooks, self.kind, self.index, self.prev = hooks, kind, index, prev

    def __deepcopy__(self, memo):
        return self

    def __call__(self, args: dict, extra: dict) -> dict:
        return self.hooks._block(self, args, extra)


class _ModelWrapper:
    """``DIFFUSION_MODEL`` wrapper: gradient forwards see autograd-safe parameters."""

    def __init__(self, hooks: "DragFlowHooks"):
        self.hooks = hooks

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, *args, **kwargs):
        s = self.hooks.session
        if s is not None and s.grad:
            with autograd_safe_params(executor.class_obj):
                return executor(*args, **kwargs)
        return executor(*args, **kwargs)


class DragFlowHooks:
    """Block replacements for feature capture, early exit and differentiable blocks.

    ``feature_blocks``: double-block indices whose ``-0``/``-2`` image features form F (default:
    the last two). ``checkpointing``: recompute blocks in backward (less memory, ~⅓ more time
    per iteration). ``calls`` counts block executions per kind (tests, bench)."""

    def __init__(self, diffusion_model, feature_blocks: Optional[Sequence[int]] = None,
                 checkpointing: bool = True):
        self.dm = diffusion_model
        self.n_double = len(diffusion_model.double_blocks)
        self.n_single = len(diffusion_model.single_blocks)
        if self.n_double < 1:
            raise ValueError("DragFlow needs a FLUX model with double-stream blocks")
        if feature_blocks is None:
            feature_blocks = tuple(range(max(0, self.n_double - 2), self.n_double))
        fb = tuple(int(i) for i in feature_blocks)
        bad = [i for i in fb if not 0 <= i < self.n_double]
        if not fb or bad:
            raise ValueError(f"feature blocks {list(fb)} are not double blocks of this model "
                             f"(it has {self.n_double})")
        self.feature_blocks = fb
        self.last_feature_block = max(fb)
        self.checkpointing = checkpointing
        self.calls = {"double": 0, "single": 0}
        self.session: Optional[_Session] = None

    def __deepcopy__(self, memo):
        return self

    # ------------------------------------------------------------------ install
    def install(self, model):
        """A clone of ``model`` with the block replacements and the wrapper."""
        import comfy.patcher_extension as pe

        m = model.clone()
        to = m.model_options.setdefault("transformer_options", {})
        dit = to.get("patches_replace", {}).get("dit", {})
        for kind, n in (("double", self.n_double), ("single", self.n_single)):
            for i in range(n):
                prev = dit.get((f"{kind}_block", i))
                if isinstance(prev, _BlockPatch):
                    prev = prev.prev
                m.set_model_patch_replace(_BlockPatch(self, kind, i, prev), "dit", f"{kind}_block", i)
        m.remove_wrappers_with_key(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY)
        m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, _ModelWrapper(self))
        return m

    # ------------------------------------------------------------------ capture
    def features(self, call_model: Callable[[], Any], n_img: int, early_exit: bool = True) -> dict:
        """Run ``call_model`` with capture on; returns {block: (f0, f2)} token features
        (B, n_img, C) in the model's dtype. With ``early_exit`` the forward stops after the last
        feature block."""
        if self.session is not None:
            raise RuntimeError("DragFlow feature capture is not re-entrant")
        grad = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        self.session = _Session(early_exit, n_img, grad)
        try:
            try:
                call_model()
            except _FeaturesReady:
                pass
            feats = self.session.features
        finally:
            self.session = None
        missing = [i for i in self.feature_blocks if i not in feats]
        if missing:
            raise RuntimeError(f"DragFlow: feature blocks {missing} did not run")
        return feats

    # ------------------------------------------------------------------ the hook
    def _module(self, kind: str, i: int):
        return (self.dm.double_blocks if kind == "double" else self.dm.single_blocks)[i]

    @staticmethod
    def _own_call(kind: str, block) -> Callable[[dict], dict]:
        def call(a: dict) -> dict:
            if kind == "double":
                img, txt = block(img=a["img"], txt=a["txt"], vec=a["vec"], pe=a["pe"],
                                 attn_mask=a.get("attn_mask"),
                                 transformer_options=a.get("transformer_options"))
                return {"img": img, "txt": txt}
            return {"img": block(a["img"], vec=a["vec"], pe=a["pe"], attn_mask=a.get("attn_mask"),
                                 transformer_options=a.get("transformer_options"))}
        return call

    def _block(self, patch: _BlockPatch, args: dict, extra: dict) -> dict:
        kind, i, prev = patch.kind, patch.index, patch.prev
        self.calls[kind] += 1
        s = self.session
        feat = s is not None and kind == "double" and i in self.feature_blocks
        grad = s is not None and s.grad
        if feat:
            f0 = modulated_input(self._module(kind, i), args["img"], args["vec"])[:, :s.n_img]
        if grad:
            out = self._grad_block(kind, i, prev, args, extra)
        else:
            out = prev(args, extra) if prev is not None else extra["original_block"](args)
        if feat:
            # a copy: without a graph the next block adds into this tensor in place
            s.features[i] = (f0, out["img"][:, :s.n_img].clone())
            if s.early_exit and i == self.last_feature_block:
                raise _FeaturesReady()
        return out

    def _grad_block(self, kind, i, prev, args, extra) -> dict:
        keys = ("img", "txt") if kind == "double" else ("img",)
        if not self.checkpointing:
            a = dict(args)
            for k in keys:
                a[k] = args[k].clone()
            with snapshot_saved(*(a[k] for k in keys)):
                return prev(a, extra) if prev is not None else extra["original_block"](a)
        block = self._module(kind, i)
        own = self._own_call(kind, block)
        frozen = dict(args)
        frozen["transformer_options"] = dict(args.get("transformer_options") or {})

        def run(*ts):
            a = dict(frozen)
            for k, t in zip(keys, ts):
                a[k] = t.clone()
            with autograd_safe_params(block), snapshot_saved(*(a[k] for k in keys)):
                out = prev(a, {"original_block": own}) if prev is not None else own(a)
            return tuple(out[k] for k in keys)

        outs = _Recompute.apply(run, *(args[k] for k in keys))
        return dict(zip(keys, outs))


def feature_maps(feats: dict, order: Sequence[int], grid_hw: tuple[int, int],
                 out_hw: tuple[int, int]) -> torch.Tensor:
    """F: for each feature block in ``order`` its ``-0`` and ``-2`` tokens unpacked to 2×2 maps
    (``unpack_token_features``), bilinear-resized to ``out_hw``, channel-concatenated; float32."""
    maps = []
    for i in order:
        for t in feats[i]:
            maps.append(unpack_token_features(t.float(), grid_hw))
    return cut_features(maps, out_hw)


# --------------------------------------------------------------------------------------------
# K/V capture and injection
# --------------------------------------------------------------------------------------------
def _repeat_batch(t: torch.Tensor, b: int) -> torch.Tensor:
    if t.shape[0] == b:
        return t
    if b % t.shape[0] == 0:
        return t.repeat(b // t.shape[0], *([1] * (t.ndim - 1)))
    raise RuntimeError(f"FluxDrag DragFlow: batch {b} does not match the captured batch {t.shape[0]}")


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
        kb, vb = autograd_alias(_repeat_batch(kb, k.shape[0])), autograd_alias(_repeat_batch(vb, v.shape[0]))
        if kb.shape[2] != stop - start:
            raise RuntimeError(f"FluxDrag DragFlow: cached K/V of block {blk} cover {kb.shape[2]} "
                               f"tokens but the call has {stop - start}; the image size changed")
        k = self._blend(k, kb, start, stop)
        v = self._blend(v, vb, start, stop)
        return next_fn(call.q, k, v, call.mask)

    def _blend(self, t: torch.Tensor, cached: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        seg = cached if self.eta == 0.0 else self.eta * t[:, :, start:stop] + (1.0 - self.eta) * cached
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


# --------------------------------------------------------------------------------------------
# one edit, as a sampler run
# --------------------------------------------------------------------------------------------
@dataclass
class EditSettings:
    """Optimisation settings (notes §2.2 defaults)."""

    n_transport: int = 50
    n_intensify: int = 20
    lr: float = 1000.0
    early_exit: bool = True
    use_grad_mask: bool = True
    mask_rule: str = "majority"
    weights: Optional[Sequence[float]] = None
    early_stop_tol: Optional[float] = None


@dataclass
class EditResult:
    z: torch.Tensor                  # edited latent at sigma 0 (model space)
    z_orig: torch.Tensor             # the original branch at sigma 0
    z_opt: torch.Tensor              # latent after the optimisation (at sigma_0)
    z_bg: torch.Tensor               # the original branch's half step: background while optimising
    losses: list
    seconds: dict
    peak_bytes: Optional[int]
    calls: dict


def _branch_guider(model, conds: dict):
    import comfy.samplers

    class BranchGuider(comfy.samplers.CFGGuider):
        """Evaluates one of several conditionings (``branch``) at cfg 1."""

        branch = "drag"

        def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006
            return comfy.samplers.sampling_function(self.inner_model, x, timestep, None,
                                                    self.conds[self.branch], 1.0,
                                                    model_options=model_options, seed=seed)

    g = BranchGuider(model)
    g.inner_set_conds(conds)
    g.set_cfg(1.0)
    return g


def run_edit(model, hooks: DragFlowHooks, bank: Optional[KVBank], z_T: torch.Tensor,
             sigmas: torch.Tensor, conds: dict, regions: Sequence, edit_mask: torch.Tensor,
             feature_hw: tuple[int, int], settings: Optional[EditSettings] = None,
             on_iteration: Optional[Callable[[dict], None]] = None,
             on_step: Optional[Callable[[dict], None]] = None) -> EditResult:
    """DragFlow's edit after inversion, on ``model`` (a clone with ``hooks`` installed and,
    when K/V injection is on, ``bank`` in its router), from the inverted latent ``z_T`` at
    ``sigmas[0]`` down ``sigmas`` (decreasing, ending at 0).

    ``conds``: {"drag": target prompt at the drag guidance, "original": target prompt at
    guidance 1 (the original branch), "source": source prompt at guidance 1 (K/V capture at the
    inversion's end point)} as ComfyUI CONDITIONING. ``regions``: ``core.affine.Region`` in
    image pixels; ``edit_mask``: M_bg on the latent grid (bool (h, w)); ``feature_hw``: the
    feature ("cut") grid. Steps: capture K/V at (z_T, σ₀) with the source prompt; F_orig =
    F(z_T); the original branch's half step z_bg; TRANSPORT + INTENSIFY by gradient descent with
    the hard background constraint; then both branches sampled with FireFlow in lockstep, the
    constraint after every step. Returns model-space latents and diagnostics."""
    import comfy.model_management as mm

    settings = settings or EditSettings()
    guider = _branch_guider(model, conds)
    h, w = z_T.shape[-2] // 2, z_T.shape[-1] // 2
    order = tuple(hooks.feature_blocks)
    seconds: dict = {}

    def run(model_wrap, x, sigmas_dev, extra_args):
        s = [float(v) for v in sigmas_dev.tolist()]
        s0 = s[0]

        def v(branch: str, z: torch.Tensor, sigma: float) -> torch.Tensor:
            mm.throw_exception_if_processing_interrupted()
            guider.branch = branch
            den = model_wrap(z, z.new_ones([z.shape[0]]) * sigma, **extra_args)
            return (z - den) / sigma

        def F(z: torch.Tensor, early_exit: bool) -> torch.Tensor:
            feats = hooks.features(lambda: v("drag", z, s0), h * w, early_exit)
            return feature_maps(feats, order, (h, w), feature_hw)

        t0 = time.perf_counter()
        if bank is not None and bank.block_types:
            bank.mode = "capture"
            v("source", x, s0)
            bank.mode = "inject"
        device = x.device
        M = edit_mask.to(device)
        peak = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode(False):
            z_T_n = x.clone()
            with torch.no_grad():
                F_orig = F(z_T_n, settings.early_exit)
                v_orig0 = v("original", z_T_n, s0)
            z_bg = z_T_n + ((s[1] - s0) / 2.0) * v_orig0
            seconds["prepare"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            with torch.enable_grad():
                opt = optimise_latent(
                    z_T_n, lambda z: F(z, settings.early_exit), F_orig, regions, z_bg, M,
                    n_transport=settings.n_transport, n_intensify=settings.n_intensify,
                    lr=settings.lr, callback=on_iteration, weights=settings.weights,
                    use_grad_mask=settings.use_grad_mask, early_stop_tol=settings.early_stop_tol,
                    mask_rule=settings.mask_rule)
            seconds["optimise"] = time.perf_counter() - t1
            if device.type == "cuda":
                peak = int(torch.cuda.max_memory_allocated(device))
            del F_orig
        t2 = time.perf_counter()
        z_opt = opt.z.detach()
        z, z_o = paired_fireflow(lambda z, sg: v("drag", z, sg), lambda z, sg: v("original", z, sg),
                                 z_opt.clone(), x, s, M, v_orig_init=v_orig0.detach(),
                                 callback=on_step)
        seconds["sample"] = time.perf_counter() - t2
        return EditResult(z=z, z_orig=z_o, z_opt=z_opt, z_bg=z_bg.detach(), losses=opt.losses,
                          seconds=seconds,
                          peak_bytes=peak, calls=dict(hooks.calls))

    result: list = []
    sampler, _ = direct_sampler(lambda *a: result.append(run(*a)) or result[0].z)
    enable_rope_autograd()
    guider.sample(z_T, torch.zeros_like(z_T), sampler, sigmas, disable_pbar=True, seed=0)
    return result[0]


def describe_peak(peak: Optional[int]) -> str:
    return "peak GPU memory n/a (CPU)" if peak is None else f"peak GPU memory {format_bytes(peak)}"
