"""Autograd through ComfyUI's FLUX for DragFlow's latent optimisation (arXiv 2510.02253).

Three things are needed, all local to a gradient forward:

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

The RoPE backward is registered only for the duration of a :func:`rope_autograd` block (an edit)
and removed afterwards, also when the block ends by an error or an interrupt; nothing is
registered at import.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch


def _rope_differentiable() -> bool:
    import comfy.ldm.flux.math as fm

    with torch.inference_mode(False), torch.enable_grad():
        x = torch.zeros(1, 1, 1, 2, requires_grad=True)
        pe = torch.eye(2).reshape(1, 1, 1, 1, 2, 2)
        try:
            fm.apply_rope1(x, pe).sum().backward()
            return True
        except RuntimeError:
            return False


def _rope_backwards() -> list:
    """(op name, backward, setup_context) for ``comfy_kitchen``'s RoPE ops: ∂/∂x = Rᵀ, the op with
    the transposed table."""
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

    return [("apply_rope", back2, setup3), ("apply_rope1", back1, setup2)]


#: ops given a backward by the :func:`rope_autograd` blocks running now (tests, diagnostics)
ACTIVE_ROPE_BACKWARDS: list[str] = []


@contextlib.contextmanager
def rope_autograd():
    """Make FLUX's RoPE differentiable for the block: when ``comfy.ldm.flux.math.apply_rope1``
    cannot be differentiated, ``comfy_kitchen::apply_rope`` / ``apply_rope1`` get the exact
    backward, which is removed again when the block ends (however it ends). Nested blocks and
    ComfyUI versions whose RoPE already differentiates register nothing. Yields the op names
    registered by this block."""
    if _rope_differentiable():
        yield []
        return
    from torch._library.custom_ops import OPDEFS

    ops = getattr(torch.ops, "comfy_kitchen", None)
    restore: list = []
    libs: list = []
    names: list[str] = []
    try:
        for name, bwd, setup in _rope_backwards():
            if ops is None or not hasattr(ops, name):
                continue
            qual = f"comfy_kitchen::{name}"
            opdef = OPDEFS.get(qual)
            if opdef is not None:  # a torch.library.custom_op: its formula is an attribute
                restore.append((opdef, opdef._backward_fn, opdef._setup_context_fn))
                opdef.register_autograd(bwd, setup_context=setup)
            else:  # a plain library op: the kernel lives as long as its Library
                lib = torch.library.Library("comfy_kitchen", "FRAGMENT")
                libs.append(lib)
                torch.library.register_autograd(qual, bwd, setup_context=setup, lib=lib)
            names.append(qual)
            ACTIVE_ROPE_BACKWARDS.append(qual)
        if not _rope_differentiable():
            raise RuntimeError("FluxDrag DragFlow: FLUX's RoPE in this ComfyUI cannot be "
                               "differentiated and no known op was found to register a backward for")
        yield list(names)
    finally:
        for opdef, bwd, setup in reversed(restore):
            opdef._backward_fn, opdef._setup_context_fn = bwd, setup
        for lib in libs:
            lib._destroy()
        for qual in names:
            ACTIVE_ROPE_BACKWARDS.remove(qual)


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
