"""One attention router per MODEL, many composable controllers, through ComfyUI's native hooks only.

How it is wired (all on a ``model.clone()``; the MODEL passed in is never written to):

- ``transformer_options["optimized_attention_override"]`` = an :class:`AttentionRouter`. ComfyUI's
  ``wrap_attn`` calls it as ``router(original_func, q, k, v, heads, **kw)`` with q and k already
  rotated (RoPE) and shapes (B, heads, N, D) for FLUX. The router asks each controller in order
  whether it claims the call (block type/index, step, sigma); claimed calls run through the
  controllers as a chain (each may rewrite q/k/v/mask before calling the next, and rewrite the
  output after); unclaimed calls go to the original function with the arguments untouched. An
  override that was there before ours (another pack) stays the end of the chain.
- a ``DIFFUSION_MODEL`` wrapper builds a :class:`ForwardContext` per model call: sigma and step
  within ``sample_sigmas``, token layout (text first, image tokens, Kontext reference tokens
  appended after the image), token grids, the batch's cond/uncond order, and the FLUX module
  (for its rotary embedder). Controllers see it as ``call.ctx``.
- a ``post_input`` patch records the token ids (and lets controllers rewrite them, e.g. the
  reference tokens' positions for ContextDrag) before FLUX computes its rotary embedding.
- an ``OUTER_SAMPLE`` wrapper builds the run state (:class:`RunState`) on the run's own copy of
  ``model_options`` (ComfyUI's guider makes that copy per ``sample`` call): each controller's
  :meth:`Controller.start_run` result, found by the controllers through ``transformer_options``
  (``call.state(c)``, ``ctx.state(c)``, the ``after_step`` hooks). It is dropped in ``finally`` —
  also when the run ends in an exception or a ComfyUI interrupt — after :meth:`Controller.end_run`.

Routers and controllers are immutable specs once installed (``__deepcopy__`` returns the same
object, so ComfyUI's ``clone()`` shares them safely): everything a run counts, caches or switches
lives in its run state, so one patched MODEL feeding two samplers, or queued twice, gives each run
the same result as a run of its own. Adding a controller installs a new router on a new clone.
Nothing here swaps classes or overrides ``forward_orig``, and weights are never touched, so fp8
and GGUF models work the same.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch

CTX_KEY = "fluxdrag_ctx"
RUN_KEY = "fluxdrag_run"
WRAPPER_KEY = "fluxdrag_router"

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("fluxdrag_forward", default=None)
_WATCH: contextvars.ContextVar = contextvars.ContextVar("fluxdrag_watch", default=None)


# --------------------------------------------------------------------------------------------
# run state
# --------------------------------------------------------------------------------------------
class RunState:
    """The per-run state of one router's controllers (one sampling run: one guider ``sample``).

    Built by the ``OUTER_SAMPLE`` wrapper, stored under ``transformer_options[RUN_KEY]`` of the
    run's own ``model_options`` copy (not a dict, so ComfyUI's per-call copies share it), dropped
    when the run ends. ``error`` is the exception the run ended with (None: success or running).
    """

    def __init__(self, controllers: Sequence["Controller"], sigmas):
        self.controllers = tuple(controllers)
        self.sigmas = sigmas
        self.error: Optional[BaseException] = None
        self._states: dict = {}

    def of(self, controller: "Controller") -> Any:
        """``controller``'s state in this run (its :meth:`Controller.start_run` result)."""
        return self._states.get(id(controller))

    def __repr__(self) -> str:
        return f"RunState({', '.join(c.name for c in self.controllers)})"


def run_of(transformer_options: Optional[dict]) -> Optional[RunState]:
    """The run state in ``transformer_options`` (None outside a run)."""
    r = (transformer_options or {}).get(RUN_KEY)
    return r if isinstance(r, RunState) else None


def state_of(controller: "Controller", transformer_options: Optional[dict]) -> Any:
    """``controller``'s state in the run ``transformer_options`` belong to. Outside a sampling run
    (a model called directly, without a guider) every call gets a fresh state of its own."""
    run = run_of(transformer_options)
    if run is not None and id(controller) in run._states:
        return run._states[id(controller)]
    return controller.start_run(None)


@contextlib.contextmanager
def watch_runs() -> Iterator[list]:
    """Collects the :class:`RunState` of every run that ends inside the block, in order (tests and
    benchmarks read what a run counted; the runs themselves keep nothing after they end)."""
    seen: list = []
    token = _WATCH.set(seen)
    try:
        yield seen
    finally:
        _WATCH.reset(token)


# --------------------------------------------------------------------------------------------
# context objects
# --------------------------------------------------------------------------------------------
@dataclass
class ForwardContext:
    """What controllers know about the model call in progress."""

    model: Any                      # the FLUX nn.Module (comfy.ldm.flux.model.Flux)
    sigma: float                    # sigma of this call (ComfyUI passes sigma as FLUX's timestep)
    step: Optional[float]           # index of sigma in sample_sigmas; x.5 between two entries
    sample_sigmas: Optional[list]   # the schedule of the running sampler
    direction: int                  # +1 inverting (sigmas increasing), −1 sampling, 0 unknown
    batch: int
    n_txt: int
    n_img: int
    grid: tuple                     # image token grid (h, w)
    ref_grids: list                 # token grid of each Kontext reference latent
    cond_or_uncond: list
    transformer_options: dict
    txt_ids: Optional[torch.Tensor] = None
    img_ids: Optional[torch.Tensor] = None
    ref_latents: list = field(default_factory=list)   # the Kontext reference latents of this call
    x: Optional[torch.Tensor] = None   # the model's input latent of this call (B, C, H, W)
    scratch: dict = field(default_factory=dict)   # per-call storage shared by controllers
    _pe: Optional[torch.Tensor] = None

    def state(self, controller: "Controller") -> Any:
        """``controller``'s state in the run this call belongs to (see :func:`state_of`)."""
        return state_of(controller, self.transformer_options)

    @property
    def n_ref(self) -> int:
        return sum(h * w for h, w in self.ref_grids)

    @property
    def n_tokens(self) -> int:
        return self.n_txt + self.n_img + self.n_ref

    def slices(self, block_type: str, block_index: int) -> dict:
        """Token slices ``txt``/``img``/``ref`` of the attention sequence in a block."""
        img_first = False
        if block_type == "double":
            blocks = getattr(self.model, "double_blocks", None)
            if blocks is not None and 0 <= block_index < len(blocks):
                img_first = bool(getattr(blocks[block_index], "flipped_img_txt", False))
        if img_first:
            img = slice(0, self.n_img)
            ref = slice(self.n_img, self.n_img + self.n_ref)
            txt = slice(self.n_img + self.n_ref, self.n_tokens)
        else:
            txt = slice(0, self.n_txt)
            img = slice(self.n_txt, self.n_txt + self.n_img)
            ref = slice(self.n_txt + self.n_img, self.n_tokens)
        return {"txt": txt, "img": img, "ref": ref}

    def pe(self) -> torch.Tensor:
        """FLUX's rotary table for the whole (text + image + reference) sequence, as the model uses it.

        Shape (B, 1, N, D/2, 2, 2); computed once per call with the model's own embedder from the
        ids the ``post_input`` patches returned.
        """
        if self._pe is None:
            if self.txt_ids is None or self.img_ids is None:
                raise RuntimeError("token ids not recorded yet: pe() is only available inside blocks")
            ids = torch.cat((self.txt_ids, self.img_ids), dim=1)
            self._pe = self.model.pe_embedder(ids)
        return self._pe


@dataclass(kw_only=True)
class AttentionCall:
    """One intercepted attention call."""

    ctx: Optional[ForwardContext]
    block_type: Optional[str]
    block_index: Optional[int]
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    heads: int
    mask: Optional[torch.Tensor]
    transformer_options: dict
    skip_reshape: bool

    def slices(self) -> dict:
        return self.ctx.slices(self.block_type, self.block_index)

    def state(self, controller: "Controller") -> Any:
        """``controller``'s state in the run this call belongs to (see :func:`state_of`)."""
        return state_of(controller, self.transformer_options)


Next = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


class Controller:
    """Base class: a piece of attention control that the router composes with others.

    Subclasses set ``block_types`` (e.g. ``{"single"}``), optionally ``block_indices``
    (``{"single": {0, 3}}``) and ``sigma_range`` (lo, hi inclusive), or override :meth:`claims`.
    ``needs_unet`` controllers also see SD-family UNet calls (no FLUX context).

    A controller is an immutable spec, shared by every clone and every run of the MODEL it is
    installed on: what a run counts, caches or switches goes in the object :meth:`start_run`
    returns, which the calls find with ``call.state(self)`` / ``ctx.state(self)`` and
    :meth:`after_step` / :meth:`end_run` receive. Nothing is assigned to ``self`` after
    ``__init__`` (tested for the LazyDrag and ContextDrag controllers; AttentionDrag's capture
    controller still keeps its capture on itself).
    """

    name = "controller"
    block_types: Optional[set] = None
    block_indices: Optional[dict] = None
    sigma_range: Optional[tuple] = None
    needs_unet = False

    def claims(self, call: AttentionCall) -> bool:
        if call.ctx is None:
            return self.needs_unet
        if self.block_types is not None and call.block_type not in self.block_types:
            return False
        if self.block_indices is not None:
            allowed = self.block_indices.get(call.block_type)
            if allowed is not None and call.block_index not in allowed:
                return False
        if self.sigma_range is not None:
            lo, hi = self.sigma_range
            if not (lo <= call.ctx.sigma <= hi):
                return False
        return True

    def attention(self, call: AttentionCall, next_fn: Next) -> torch.Tensor:
        return next_fn(call.q, call.k, call.v, call.mask)

    # lifecycle hooks (optional)
    def post_input(self, ctx: ForwardContext, d: dict) -> dict:
        return d

    def on_forward_start(self, ctx: ForwardContext) -> None:
        pass

    def on_forward_end(self, ctx: ForwardContext, out: torch.Tensor) -> Optional[torch.Tensor]:
        return None

    def start_run(self, sigmas: Optional[torch.Tensor]) -> Any:
        """This controller's state for a new sampling run over ``sigmas`` (None: a call outside
        any run). Default: no state."""
        return None

    def after_step(self, state: Any, i: int, sigma_next: float, x: torch.Tensor) -> Optional[torch.Tensor]:
        """Latent-level control after sampling step ``i`` (x is at ``sigma_next``, model space):
        return a replacement x or None. Only FluxDrag's own samplers (Sample From Inversion, the
        FireFlow / Uni-Inv SAMPLER nodes) call it; ComfyUI's samplers do not."""
        return None

    def end_run(self, state: Any, error: Optional[BaseException]) -> None:
        """The run that :meth:`start_run` made ``state`` for ended (``error``: how, None on
        success); called also on exceptions and interrupts. The state is dropped afterwards."""


# --------------------------------------------------------------------------------------------
# the router
# --------------------------------------------------------------------------------------------
class AttentionRouter:
    """The ``optimized_attention_override`` of a patched MODEL."""

    def __init__(self, controllers: Sequence[Controller] = (), previous: Optional[Callable] = None):
        self.controllers = tuple(controllers)
        self.previous = previous

    def __deepcopy__(self, memo):
        return self  # immutable: clones share it; extending makes a new router

    def extended(self, controllers: Iterable[Controller]) -> "AttentionRouter":
        return AttentionRouter(self.controllers + tuple(controllers), self.previous)

    def _fallback(self, func, args, kwargs):
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    def __call__(self, func, *args, **kwargs):
        if not self.controllers:
            return self._fallback(func, args, kwargs)
        to = kwargs.get("transformer_options") or {}
        ctx = to.get(CTX_KEY)
        block_type = to.get("block_type") if ctx is not None else None
        block_index = to.get("block_index") if ctx is not None else None
        q, k, v, heads = args[:4]
        call = AttentionCall(ctx=ctx, block_type=block_type, block_index=block_index, q=q, k=k, v=v,
                             heads=heads, mask=kwargs.get("mask"), transformer_options=to,
                             skip_reshape=bool(kwargs.get("skip_reshape", False)))
        chain = [c for c in self.controllers if c.claims(call)]
        if not chain:
            return self._fallback(func, args, kwargs)
        rest = args[4:]

        def run(i: int, q, k, v, mask):
            if i == len(chain):
                kw = dict(kwargs)
                if mask is not None or "mask" in kw:
                    kw["mask"] = mask
                return self._fallback(func, (q, k, v, heads) + rest, kw)
            c = AttentionCall(ctx=ctx, block_type=block_type, block_index=block_index, q=q, k=k, v=v,
                              heads=heads, mask=mask, transformer_options=to, skip_reshape=call.skip_reshape)
            return chain[i].attention(c, lambda q2, k2, v2, m2: run(i + 1, q2, k2, v2, m2))

        return run(0, q, k, v, call.mask)


# --------------------------------------------------------------------------------------------
# native hook functions (stateless; they find the router in transformer_options)
# --------------------------------------------------------------------------------------------
def _router_of(options: Optional[dict]) -> Optional[AttentionRouter]:
    r = (options or {}).get("optimized_attention_override")
    return r if isinstance(r, AttentionRouter) and r.controllers else None


def _grid(shape_hw: Sequence[int], patch: int) -> tuple:
    h, w = int(shape_hw[0]), int(shape_hw[1])
    return ((h + patch // 2) // patch, (w + patch // 2) // patch)


def _step_of(sigma: float, sample_sigmas: Optional[list]) -> tuple:
    if not sample_sigmas:
        return None, 0
    direction = 1 if sample_sigmas[-1] > sample_sigmas[0] else -1
    tol = 1e-6
    for i, s in enumerate(sample_sigmas):
        if abs(s - sigma) <= tol:
            return float(i), direction
    for i in range(len(sample_sigmas) - 1):
        a, b = sample_sigmas[i], sample_sigmas[i + 1]
        if min(a, b) < sigma < max(a, b):
            return i + 0.5, direction
    return None, direction


def diffusion_model_wrapper(executor, *args, **kwargs):
    """``DIFFUSION_MODEL`` wrapper: builds the ForwardContext for the router's controllers.

    Only FLUX-family modules (those with a rotary ``pe_embedder``) get a context; any other
    diffusion module (an SD-family UNet, whose ``_forward`` takes other positional arguments) is
    called with its arguments untouched, and ``needs_unet`` controllers see its calls with
    ``ctx`` None.
    """
    if not hasattr(executor.class_obj, "pe_embedder"):
        return executor(*args, **kwargs)
    return _flux_forward(executor, *args, **kwargs)


def _flux_forward(executor, x, timestep, context, y=None, guidance=None, ref_latents=None,
                  control=None, transformer_options={}, **kwargs):  # noqa: B006 (ComfyUI signature)
    router = _router_of(transformer_options)
    if router is None:
        return executor(x, timestep, context, y, guidance, ref_latents, control, transformer_options, **kwargs)
    model = executor.class_obj
    patch = int(getattr(model, "patch_size", 2))
    ss = transformer_options.get("sample_sigmas")
    ss_list = [float(s) for s in ss.tolist()] if torch.is_tensor(ss) else (list(ss) if ss is not None else None)
    sigma = float(timestep.reshape(-1)[0])
    step, direction = _step_of(sigma, ss_list)
    ctx = ForwardContext(
        model=model, sigma=sigma, step=step, sample_sigmas=ss_list, direction=direction,
        batch=int(x.shape[0]), n_txt=int(context.shape[1]), n_img=0,
        grid=_grid(x.shape[-2:], patch),
        ref_grids=[_grid(r.shape[-2:], patch) for r in (ref_latents or [])],
        cond_or_uncond=list(transformer_options.get("cond_or_uncond", [])),
        transformer_options=transformer_options, ref_latents=list(ref_latents or []), x=x,
    )
    ctx.n_img = ctx.grid[0] * ctx.grid[1]
    transformer_options[CTX_KEY] = ctx
    token = _CURRENT.set(ctx)
    try:
        for c in router.controllers:
            c.on_forward_start(ctx)
        out = executor(x, timestep, context, y, guidance, ref_latents, control, transformer_options, **kwargs)
        for c in router.controllers:
            new = c.on_forward_end(ctx, out)
            if new is not None:
                out = new
        return out
    finally:
        _CURRENT.reset(token)
        transformer_options.pop(CTX_KEY, None)


def post_input_patch(d: dict) -> dict:
    """``post_input`` patch: records ids for the rotary table and lets controllers rewrite them."""
    ctx = _CURRENT.get()
    if ctx is None:
        return d
    router = _router_of(ctx.transformer_options)
    if router is not None:
        for c in router.controllers:
            d = c.post_input(ctx, d)
    ctx.txt_ids, ctx.img_ids = d["txt_ids"], d["img_ids"]
    ctx._pe = None
    return d


def outer_sample_wrapper(executor, *args, **kwargs):
    """``OUTER_SAMPLE`` wrapper: builds the run state on the run's own ``model_options`` and drops
    it in ``finally`` (also on error and interrupt), after each controller's ``end_run``."""
    guider = executor.class_obj
    options = getattr(guider, "model_options", None)
    router = _router_of((options or {}).get("transformer_options"))
    if router is None:
        return executor(*args, **kwargs)
    sigmas = args[3] if len(args) > 3 else kwargs.get("sigmas")
    to = options["transformer_options"]
    outer = to.get(RUN_KEY, _ABSENT)   # a run inside a run (not expected): restored afterwards
    run = RunState(router.controllers, sigmas)
    to[RUN_KEY] = run
    try:
        for c in router.controllers:
            run._states[id(c)] = c.start_run(sigmas)
        return executor(*args, **kwargs)
    except BaseException as e:  # includes ComfyUI's InterruptProcessingException
        run.error = e
        raise
    finally:
        try:
            for c in router.controllers:
                if id(c) in run._states:
                    c.end_run(run._states[id(c)], run.error)
        finally:
            if outer is _ABSENT:
                to.pop(RUN_KEY, None)
            else:
                to[RUN_KEY] = outer
            seen = _WATCH.get()
            if seen is not None:
                seen.append(run)


_ABSENT = object()


# --------------------------------------------------------------------------------------------
# installing
# --------------------------------------------------------------------------------------------
def after_step_hooks(model_options: Optional[dict]) -> list:
    """``hook(i, sigma_next, x)`` for each controller routed in ``model_options`` that defines
    ``after_step``, bound to its state in the run ``model_options`` belong to."""
    to = (model_options or {}).get("transformer_options", {})
    router = to.get("optimized_attention_override")
    if not isinstance(router, AttentionRouter):
        return []
    hooks = []
    for c in router.controllers:
        if type(c).after_step is not Controller.after_step:
            hooks.append(functools.partial(c.after_step, state_of(c, to)))
    return hooks


def router_of_model(model) -> Optional[AttentionRouter]:
    """The FluxDrag router installed on a MODEL, if any."""
    to = model.model_options.get("transformer_options", {})
    r = to.get("optimized_attention_override")
    return r if isinstance(r, AttentionRouter) else None


def patch_model(model, *controllers: Controller, clone: bool = True):
    """A clone of ``model`` with ``controllers`` appended to its router (installed if absent).

    ``clone=False`` installs them on ``model`` itself, which must be a clone the caller made for
    this run: a pipeline that installs several things puts them all on ONE clone of the input
    MODEL. A clone of a clone whose middle copy is dropped leaves ComfyUI a dead model entry
    ("memory leak with model …" on every later prompt), because its loaded-model record falls
    back to the parent of a clone that died and finds it gone."""
    import comfy.patcher_extension as pe

    m = model.clone() if clone else model
    to = m.model_options.setdefault("transformer_options", {})
    existing = to.get("optimized_attention_override")
    if isinstance(existing, AttentionRouter):
        router = existing.extended(controllers)
    else:
        router = AttentionRouter(controllers, previous=existing)
    to["optimized_attention_override"] = router
    if not m.get_wrappers(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY):
        m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, diffusion_model_wrapper)
    if not m.get_wrappers(pe.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY):
        m.add_wrapper_with_key(pe.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, outer_sample_wrapper)
    post = to.get("patches", {}).get("post_input", [])
    if post_input_patch not in post:
        m.set_model_post_input_patch(post_input_patch)
    return m
