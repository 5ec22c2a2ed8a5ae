"""Token cache: tensors captured during one pass (inversion) and read back in another (sampling).

Entries are keyed by ``(step, block, name)`` — ``step`` is whatever the controller uses to align
passes (the sigma key from :func:`sigma_key` for LazyDrag), ``block`` e.g. ``("single", 3)``,
``name`` e.g. ``"k"``. Only the token indices a controller asks for are stored (``index`` along
the token axis, dim −2 of (B, heads, N, D) or dim 1 of (B, N, C) — the caller says which).

Storage policies (docs/lazydrag.md, docs/performance.md):
- ``device``: kept where it was produced (fast, costs accelerator memory);
- ``cpu``: moved to CPU memory, pinned where CUDA exists so it streams back asynchronously;
- ``fp8``: CPU, ``float8_e4m3fn`` with one scale per entry (amax / 448), half of bf16.

The cache reports its bytes, refuses to grow past ``budget_bytes`` with :class:`CacheBudgetError`
(also before a run via :meth:`TokenCache.reserve` where the need is known) and is emptied by
:meth:`TokenCache.free`. Who frees it is its owner's business: an inversion record that is a node
output is never freed by the nodes downstream (it goes when ComfyUI drops that output); a cache a
pipeline makes for one run of its own (DragFlow's K/V) is freed when that run ends, also on error
and interrupt. Nothing here counts across caches or processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Optional

import torch

from .errors import public_name

POLICIES = ("device", "cpu", "fp8")
FP8_MAX = 448.0  # largest finite float8_e4m3fn value


@public_name
class CacheBudgetError(RuntimeError):
    """The cache would exceed its memory budget."""


@public_name
class CacheFreedError(RuntimeError):
    """A cache entry was requested after the cache was freed."""


def sigma_key(sigma: float) -> int:
    """An integer key for a sigma value (aligns inversion and sampling evaluations exactly)."""
    return int(round(float(sigma) * 1_000_000))


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def bytes_per_element(policy: str, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes one stored element takes under ``policy`` for tensors produced in ``dtype``."""
    if policy not in POLICIES:
        raise ValueError(f"unknown cache policy {policy!r}: choose one of {', '.join(POLICIES)}")
    if policy == "fp8":
        return 1
    return torch.empty((), dtype=dtype).element_size()


@dataclass
class _Entry:
    data: torch.Tensor
    scale: Optional[torch.Tensor]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()


class TokenCache:
    """Store of selected tokens, with a storage policy and a byte budget. ``meta`` holds what a
    controller records about its entries (e.g. DragFlow's captured text length per entry)."""

    def __init__(self, policy: str = "device", budget_bytes: Optional[int] = None,
                 pin_memory: Optional[bool] = None, name: str = "FluxDrag cache", budget_label: str = ""):
        if policy not in POLICIES:
            raise ValueError(f"unknown cache policy {policy!r}: choose one of {', '.join(POLICIES)}")
        self.policy = policy
        self.budget_bytes = budget_bytes
        #: where the budget came from, for the refusal message (e.g. the automatic share of free RAM)
        self.budget_label = budget_label
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.name = name
        self._entries: dict[tuple, _Entry] = {}
        self._steps: set = set()
        self._sorted_steps: Optional[list] = None
        self._bytes = 0
        self.meta: dict = {}
        self.freed = False

    # ------------------------------------------------------------------ budget
    def reserve(self, estimated_bytes: int) -> None:
        """Refuse up front when a known need exceeds the budget."""
        if self.budget_bytes is not None and estimated_bytes > self.budget_bytes:
            raise CacheBudgetError(
                f"{self.name}: estimated need {format_bytes(estimated_bytes)} exceeds the budget "
                f"{self._budget_text()} (policy {self.policy!r}). Raise the budget, pick a "
                f"smaller cache policy (fp8, or a paired/no-cache mode where the node offers it), or use "
                f"fewer steps / a smaller image.")

    def _budget_text(self) -> str:
        text = format_bytes(self.budget_bytes)
        return f"{text} ({self.budget_label})" if self.budget_label else text

    # ------------------------------------------------------------------ store
    def put(self, step: Hashable, block: Hashable, name: str, tensor: torch.Tensor,
            index: Optional[torch.Tensor] = None, dim: int = -2) -> None:
        """Store ``tensor`` (only ``index`` along ``dim`` when given) under (step, block, name)."""
        if self.freed:
            self.freed = False  # a new pass starts filling a freed cache again
        t = tensor.detach()
        if index is not None:
            t = t.index_select(dim, index.to(t.device))
        key = (step, block, name)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        entry = self._encode(t)
        if self.budget_bytes is not None and self._bytes + entry.nbytes > self.budget_bytes:
            raise CacheBudgetError(
                f"{self.name}: storing {name!r} for block {block} would use "
                f"{format_bytes(self._bytes + entry.nbytes)}, over the budget "
                f"{self._budget_text()} (policy {self.policy!r}). Raise the budget or pick "
                f"a smaller cache policy.")
        self._entries[key] = entry
        self._bytes += entry.nbytes
        if step not in self._steps:
            self._steps.add(step)
            self._sorted_steps = None

    def _encode(self, t: torch.Tensor) -> _Entry:
        if self.policy == "device":
            return _Entry(t.clone(), None, t.dtype)
        if self.policy == "cpu":
            data = t.to("cpu", copy=True)
            if self.pin_memory:
                data = data.pin_memory()
            return _Entry(data, None, t.dtype)
        amax = t.abs().amax().float().clamp(min=1e-12)
        scale = (amax / FP8_MAX).to("cpu")
        data = (t.float() / scale.to(t.device)).to(torch.float8_e4m3fn).to("cpu")
        if self.pin_memory:
            data = data.pin_memory()
        return _Entry(data, scale, t.dtype)

    # ------------------------------------------------------------------ read
    def has(self, step: Hashable, block: Hashable, name: str) -> bool:
        return (step, block, name) in self._entries

    def get(self, step: Hashable, block: Hashable, name: str,
            device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The stored tensor, decoded to ``dtype`` (default: as produced) on ``device``."""
        if self.freed:
            raise CacheFreedError(
                f"{self.name} was freed when the run that owned it ended; run the inversion again "
                f"(re-queue the workflow) to refill it.")
        try:
            e = self._entries[(step, block, name)]
        except KeyError:
            raise KeyError(f"{self.name} has no entry {name!r} for block {block} at step {step}") from None
        out_dtype = dtype or e.dtype
        data = e.data.to(device, non_blocking=True) if device is not None else e.data
        if e.scale is not None:
            return (data.float() * e.scale.to(data.device)).to(out_dtype)
        return data.to(out_dtype)

    def keys(self):
        return list(self._entries.keys())

    def steps(self) -> list:
        """The steps that hold entries, sorted (steps must be comparable, e.g. sigma keys)."""
        if self._sorted_steps is None:
            self._sorted_steps = sorted(self._steps)
        return self._sorted_steps

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held right now."""
        return self._bytes

    def free(self) -> None:
        """Drop every entry and the metadata (idempotent)."""
        self._entries.clear()
        self._steps.clear()
        self._sorted_steps = None
        self.meta.clear()
        self._bytes = 0
        self.freed = True
