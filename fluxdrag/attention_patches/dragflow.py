"""DragFlow's block hooks on FLUX through ComfyUI's own hooks: features with early exit and
differentiable blocks (arXiv 2510.02253; docs/dragflow.md).

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

The autograd plumbing the gradient blocks use is ``attention_patches/autograd.py``; the K/V bank
is ``attention_patches/kv_bank.py``; the edit itself is ``pipelines/dragflow.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from ..core.dragflow import cut_features, token_maps, unpack_token_features
from .autograd import _Recompute, autograd_safe_params, snapshot_saved

WRAPPER_KEY = "fluxdrag_dragflow"


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


def autograd_attention(options: Optional[dict]) -> dict:
    """[ours] A copy of a block's ``transformer_options`` for a run with gradients: calls that
    would go to ComfyUI's sub-quadratic attention (its choice on a CPU) go to its PyTorch (SDPA)
    attention, the same maths. Sub-quadratic attention chunks the keys when free memory runs low
    and then exponentiates in place, which autograd refuses: a DragFlow optimisation on a loaded
    CPU crashed so. Through ``optimized_attention_override`` (a native hook); an override already
    there (the router, another pack's) still runs, handed the substitute as the function it wraps."""
    from comfy.ldm.modules.attention import attention_pytorch

    out = dict(options or {})
    prev = out.get("optimized_attention_override")

    def override(func, *args, **kwargs):
        if getattr(func, "__name__", "") == "attention_sub_quad":
            func = attention_pytorch
        return prev(func, *args, **kwargs) if prev is not None else func(*args, **kwargs)

    out["optimized_attention_override"] = override
    return out


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
    def install(self, model, clone: bool = True):
        """A clone of ``model`` with the block replacements and the wrapper (``clone=False``: on
        ``model`` itself, a clone the caller owns; see ``router.patch_model``)."""
        import comfy.patcher_extension as pe

        m = model.clone() if clone else model
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
            a["transformer_options"] = autograd_attention(args.get("transformer_options"))
            for k in keys:
                a[k] = args[k].clone()
            with snapshot_saved(*(a[k] for k in keys)):
                return prev(a, extra) if prev is not None else extra["original_block"](a)
        block = self._module(kind, i)
        own = self._own_call(kind, block)
        frozen = dict(args)
        frozen["transformer_options"] = autograd_attention(args.get("transformer_options"))

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
                 out_hw: Optional[tuple[int, int]]) -> torch.Tensor:
    """F: for each feature block in ``order`` its ``-0`` and ``-2`` tokens unpacked to 2×2 maps
    (``unpack_token_features``), bilinear-resized to ``out_hw``, channel-concatenated; float32.
    With ``out_hw`` None [ours, ``feature_grid`` "token"] the tokens are taken as they are on
    the token grid ``grid_hw``, one cell per token (no 2×2 reading, no resize)."""
    maps = []
    token_grid = out_hw is None
    for i in order:
        for t in feats[i]:
            maps.append(token_maps(t.float(), grid_hw) if token_grid else
                        unpack_token_features(t.float(), grid_hw))
    return torch.cat(maps, dim=1) if token_grid else cut_features(maps, out_hw)
