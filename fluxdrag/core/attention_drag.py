"""AttentionDrag, pure-torch core: one-step latent move guided by self-attention to the handle.

Paper: AttentionDrag (IJCAI 2025, arXiv 2506.13301); docs/attentiondrag.md, hole filling
after FastDrag (arXiv 2405.15769, bilateral nearest-neighbour interpolation). The paper's
repository has no code, so everything beyond the formula A_t(h, j) = softmax_j(q_h·k_j/√d_k),
"movement weighted by attention", "mask = attention above τ = 2.0" and "holes filled by
attention-weighted interpolation" is a reconstruction; each such choice is a parameter whose
default is the guess, marked "[guess]" where it is documented.

Works on any grid of ``N = h·w`` image tokens in row-major order: the SD1.5 latent grid
(8-px cells) or the FLUX token grid (16-px tokens); the caller picks the grid and gives
handles/targets in continuous *cell* coordinates ``(x, y) = (column, row)`` whose cell centres
are integers (pixel ``p`` → ``p / cell_px − 0.5``, see :func:`pixel_to_cell`).

Pipeline (:func:`attention_drag`):
  A = :func:`attention_to_handle`                      (n, h, w) one map per handle
  M = :func:`auto_mask` (A > τ · mean A, ∪ handle)      (n, h, w)
  v = :func:`attention_displacement_field`              (h, w, 2) = Σ_i w_i(p) · d_i
  z' = :func:`warp_latent_one_step` (forward splat)     + hole mask
  z'' = :func:`fill_holes_attention_weighted`           holes from background neighbours

Why one long module: the five steps above are one method whose reconstruction choices depend on
each other (the mask, the field and the hole filling share their conventions); kept in one file so
the guesses can be read together.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .geometry import round_half_up

Point = tuple[float, float]
Points = Point | Sequence[Point] | torch.Tensor

_DIRECTIONS = ("query", "key")
_REDUCES = ("mean", "max")
_RELATIVE = ("mean", "max", "absolute", "zscore")
_NORMALISE = ("max", "handle", "none", "threshold")
_FUSE = ("sum", "mean")


# ----------------------------------------------------------------------------- coordinates


def pixel_to_cell(point: Point, cell_px: float) -> Point:
    """Continuous cell coordinate of an image pixel ``(x, y)`` for cells of ``cell_px`` pixels
    (8 for the SD1.5 latent grid, 16 for FLUX tokens): ``p / cell_px − 0.5``."""
    return (point[0] / cell_px - 0.5, point[1] / cell_px - 0.5)


def _as_points(points: Points, name: str) -> torch.Tensor:
    """(n, 2) float64 tensor of (x, y) points from a point, a list of points or a tensor."""
    t = torch.as_tensor(points, dtype=torch.float64).detach().cpu()
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[-1] != 2:
        raise ValueError(f"{name} must be (x, y) points, got shape {tuple(t.shape)}")
    return t


def handle_cells(handles: Points, grid_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Integer cells ``(x, y)`` of handle points (rounded half up); ValueError if outside."""
    h, w = grid_hw
    cells = []
    for i, (x, y) in enumerate(round_half_up(_as_points(handles, "handles")).tolist()):
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"handle {i} at cell ({x:g}, {y:g}) is outside the {h}x{w} grid")
        cells.append((int(x), int(y)))
    return cells


def cell_index(cell: tuple[int, int], grid_hw: tuple[int, int]) -> int:
    """Row-major token index of the integer cell ``(x, y)`` on a grid ``(h, w)``."""
    return int(cell[1]) * int(grid_hw[1]) + int(cell[0])


def _drag_vectors(handles: Points, targets: Points) -> torch.Tensor:
    """(n, 2) drag vectors d_i = target_i − handle_i; ValueError for a zero-length drag."""
    hp, tp = _as_points(handles, "handles"), _as_points(targets, "targets")
    if hp.shape != tp.shape:
        raise ValueError(f"{hp.shape[0]} handles but {tp.shape[0]} targets")
    d = tp - hp
    for i in range(d.shape[0]):
        if float(d[i].norm()) == 0.0:
            x, y = hp[i].tolist()
            raise ValueError(
                f"drag {i} has zero length: handle and target are both at ({x:g}, {y:g})"
            )
    return d


# ----------------------------------------------------------------------------- 1. attention


def attention_to_handle(
    q: torch.Tensor,
    k: torch.Tensor,
    handle_idx: int | Sequence[int],
    grid_hw: tuple[int, int],
    direction: str = "query",
    scale: float | None = None,
    heads_reduce: str = "mean",
    chunk: int = 1024,
) -> torch.Tensor:
    """Self-attention map of the image tokens relative to the handle token(s).

    ``q``, ``k``: (B, heads, N, D) queries/keys of the N = h·w image tokens, row-major over
    ``grid_hw``; ``handle_idx``: row-major token index (see :func:`cell_index`), or a list.
    Logits are ``s · q_i·k_j`` with ``s = scale`` or ``1/√D``.

    - ``direction="query"`` (the paper's A_t(h, j)): where the handle looks.
      ``A(j) = softmax_j(s · q_h·k_j)`` over all N keys; sums to 1 over cells.
    - ``direction="key"``: who looks at the handle. Column h of the row-softmaxed matrix,
      ``P_i = softmax_j(s · q_i·k_j)[h]`` (each query's softmax over the N image keys given),
      renormalised over queries: ``A(i) = P_i / Σ_i' P_i'``; sums to 1 over cells. It is
      computed with a per-query logsumexp in chunks of ``chunk`` queries (no N×N per batch·head
      kept at once). [guess] which direction the paper means beyond A_t(h, j); default "query".

    B and heads are pooled together by ``heads_reduce`` ("mean" keeps the sum-to-1 property,
    or "max"). Computed in float32. Returns (h, w) for an int ``handle_idx``, else
    (n_handles, h, w).
    """
    if q.ndim != 4 or k.ndim != 4 or q.shape != k.shape:
        raise ValueError(
            f"q and k must both be (B, heads, N, D) of the same shape, got "
            f"{tuple(q.shape)} and {tuple(k.shape)}"
        )
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    if heads_reduce not in _REDUCES:
        raise ValueError(f"heads_reduce must be one of {_REDUCES}, got {heads_reduce!r}")
    h, w = int(grid_hw[0]), int(grid_hw[1])
    n_tok = q.shape[2]
    if n_tok != h * w:
        raise ValueError(f"q/k hold {n_tok} tokens but grid {h}x{w} has {h * w}")
    single = isinstance(handle_idx, numbers.Integral)
    idx_list = [int(handle_idx)] if single else [int(i) for i in handle_idx]
    if not idx_list:
        raise ValueError("no handle given")
    for i in idx_list:
        if not 0 <= i < n_tok:
            raise ValueError(f"handle index {i} is outside the {n_tok} image tokens")
    s = float(scale) if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    idx = torch.tensor(idx_list, device=q.device)
    qf, kf = q.float(), k.float()

    if direction == "query":
        logits = torch.einsum("bhnd,bhmd->bhnm", qf[:, :, idx], kf) * s  # (B, H, n, N)
        maps = logits.softmax(dim=-1)
    else:
        col = torch.einsum("bhid,bhnd->bhin", qf, kf[:, :, idx]) * s  # (B, H, N, n)
        lse = torch.empty(qf.shape[:3], device=qf.device, dtype=qf.dtype)  # (B, H, N)
        kt = kf.transpose(-1, -2)
        for start in range(0, n_tok, max(1, int(chunk))):
            stop = min(n_tok, start + max(1, int(chunk)))
            lse[:, :, start:stop] = (qf[:, :, start:stop] @ kt * s).logsumexp(dim=-1)
        p = torch.exp(col - lse[..., None])  # P_i for each handle column
        maps = (p / p.sum(dim=2, keepdim=True)).transpose(-1, -2)  # (B, H, n, N)

    pooled = maps.flatten(0, 1)  # (B·H, n, N)
    out = pooled.mean(dim=0) if heads_reduce == "mean" else pooled.amax(dim=0)
    out = out.reshape(len(idx_list), h, w)
    return out[0] if single else out


# ----------------------------------------------------------------------------- 2. mask


def _dilate(mask: torch.Tensor, cells: int) -> torch.Tensor:
    """Square (Chebyshev) dilation of a (n, h, w) bool mask by ``cells`` cells."""
    if cells <= 0:
        return mask
    m = mask.float()[:, None]
    m = torch.nn.functional.max_pool2d(m, 2 * cells + 1, stride=1, padding=cells)
    return m[:, 0] > 0


def mask_threshold(attn: torch.Tensor, tau: float = 2.0, relative_to: str = "mean") -> torch.Tensor:
    """Per-map threshold of :func:`auto_mask` for (n, h, w) maps, shape (n, 1, 1): τ·mean
    ("mean"), τ·max ("max"), τ ("absolute") or mean + τ·std ("zscore": τ standard deviations
    above the mean [ours, an alternative reading of the paper's τ = 2.0])."""
    if relative_to not in _RELATIVE:
        raise ValueError(f"relative_to must be one of {_RELATIVE}, got {relative_to!r}")
    a = attn.float()
    mean = a.mean(dim=(-2, -1), keepdim=True)
    if relative_to == "mean":
        return tau * mean
    if relative_to == "max":
        return tau * a.amax(dim=(-2, -1), keepdim=True)
    if relative_to == "zscore":
        return mean + tau * a.flatten(-2).std(dim=-1, unbiased=False)[..., None, None]
    return torch.full_like(mean, float(tau))


def auto_mask(
    attn: torch.Tensor,
    tau: float = 2.0,
    relative_to: str = "mean",
    handles: Points | None = None,
    dilate: int = 0,
) -> torch.Tensor:
    """Automatic edit mask M = {p : A(p) > τ · ref} from attention map(s) (h, w) or (n, h, w).

    ``relative_to``: "mean" (ref = mean of the map; [guess] reading of the paper's τ = 2.0),
    "max" (ref = max of the map, needs τ < 1), "absolute" (ref = 1) or "zscore" (the threshold
    is mean + τ·std instead, :func:`mask_threshold`). The threshold is
    strict (``>``), per map. ``handles``: (x, y) cell points always included — for a
    (n, h, w) stack one handle per map (handle i into mask i), for a single (h, w) map all of
    them. ``dilate``: grow the mask by that many cells (square neighbourhood), after adding
    the handle. Returns a bool mask of ``attn``'s shape.
    """
    if relative_to not in _RELATIVE:
        raise ValueError(f"relative_to must be one of {_RELATIVE}, got {relative_to!r}")
    if attn.ndim not in (2, 3):
        raise ValueError(f"attn must be (h, w) or (n, h, w), got {tuple(attn.shape)}")
    single = attn.ndim == 2
    a = attn[None] if single else attn
    a = a.float()
    mask = a > mask_threshold(a, tau, relative_to)
    if handles is not None:
        cells = handle_cells(handles, tuple(a.shape[-2:]))
        if single:
            for x, y in cells:
                mask[0, y, x] = True
        else:
            if len(cells) != a.shape[0]:
                raise ValueError(f"{a.shape[0]} attention maps but {len(cells)} handles")
            for i, (x, y) in enumerate(cells):
                mask[i, y, x] = True
    mask = _dilate(mask, int(dilate))
    return mask[0] if single else mask


# ----------------------------------------------------------------------------- 3. field


def _stack_maps(attns: torch.Tensor, n: int, name: str) -> torch.Tensor:
    a = attns[None] if attns.ndim == 2 else attns
    if a.ndim != 3 or a.shape[0] not in (1, n):
        raise ValueError(f"{name} must be (h, w) or ({n}, h, w), got {tuple(attns.shape)}")
    return a.expand(n, *a.shape[-2:]) if a.shape[0] != n else a


def handle_weights(
    attns: torch.Tensor,
    handles: Points,
    masks: torch.Tensor,
    normalise: str = "max",
    rigid: bool = False,
    tau: float = 2.0,
    relative_to: str = "mean",
) -> torch.Tensor:
    """Per-handle movement weights w_i(p), (n, h, w) float32, zero outside mask_i.

    ``normalise`` [guess]: "max" — ``w_i = A_i / max A_i`` and the handle cell's own weight
    set to 1, so the handle moves by exactly d_i; "handle" — ``w_i = min(1, A_i / A_i(handle))``;
    "none" — raw attention (the handle then moves by A_i(handle)·d_i, usually a small fraction);
    "threshold" — ``w_i = min(1, A_i / (τ · ref_i))`` with the automatic mask's own reference
    (``relative_to``, as :func:`auto_mask`): every cell the automatic mask selects moves by the full
    drag, cells below the threshold (reached only by a dilated or drawn mask) by the share of it
    their attention reaches [ours: "max" moves most of an object by a fraction of the drag, which
    tears it apart; measured in docs/attentiondrag.md]. ``rigid=True``: ``w_i = 1`` everywhere in
    mask_i. Each w_i is restricted to its own mask_i (a handle outside its mask does not move);
    ``masks`` may be (h, w), shared.
    """
    if normalise not in _NORMALISE:
        raise ValueError(f"normalise must be one of {_NORMALISE}, got {normalise!r}")
    if relative_to not in _RELATIVE:
        raise ValueError(f"relative_to must be one of {_RELATIVE}, got {relative_to!r}")
    hp = _as_points(handles, "handles")
    n = hp.shape[0]
    a = _stack_maps(attns, n, "attns").float()
    m = _stack_maps(masks, n, "masks").to(device=a.device, dtype=torch.bool)
    if a.shape != m.shape:
        raise ValueError(f"attns {tuple(a.shape)} and masks {tuple(m.shape)} differ in size")
    cells = handle_cells(hp, tuple(a.shape[-2:]))
    if rigid:
        wts = torch.ones_like(a)
    elif normalise == "none":
        wts = a.clone()
    elif normalise == "threshold":
        ref = mask_threshold(a, float(tau), relative_to).clamp_min(torch.finfo(a.dtype).tiny)
        wts = (a / ref).clamp(0.0, 1.0)
        for i, (x, y) in enumerate(cells):
            wts[i, y, x] = 1.0
    else:
        wts = torch.empty_like(a)
        for i, (x, y) in enumerate(cells):
            ref = a[i].amax() if normalise == "max" else a[i, y, x]
            wts[i] = (a[i] / ref.clamp_min(torch.finfo(a.dtype).tiny)).clamp(0.0, 1.0)
            wts[i, y, x] = 1.0
    return wts * m


def attention_displacement_field(
    attns: torch.Tensor,
    handles: Points,
    targets: Points,
    masks: torch.Tensor,
    normalise: str = "max",
    rigid: bool = False,
    tau: float = 2.0,
    relative_to: str = "mean",
    fuse: str = "sum",
) -> torch.Tensor:
    """Attention-weighted displacement field of several drags, (h, w, 2) as (dx, dy).

    ``d_i = target_i − handle_i`` in cells; w_i from :func:`handle_weights` (``normalise``,
    ``tau``, ``relative_to`` are [guess]es, see there; ``rigid=True`` moves mask_i by exactly
    d_i). ``fuse``: "sum" — v(p) = Σ_i w_i(p)·d_i, a cell in two masks moves by the sum [guess:
    the paper's wording]; "mean" — v(p) = Σ_i w_i(p)·d_i / max(1, Σ_i w_i(p)), the weighted mean
    where the weights add up to more than one, so two handles on one object dragged alike move it
    by their drag, not twice it [ours]. Zero outside the union of masks. ValueError naming the
    drag if one has zero length.
    """
    if fuse not in _FUSE:
        raise ValueError(f"fuse must be one of {_FUSE}, got {fuse!r}")
    d = _drag_vectors(handles, targets)
    wts = handle_weights(attns, handles, masks, normalise=normalise, rigid=rigid, tau=tau,
                         relative_to=relative_to)
    d = d.to(device=wts.device, dtype=torch.float32)
    v = torch.einsum("nhw,nc->hwc", wts, d)
    if fuse == "mean":
        v = v / wts.sum(dim=0).clamp_min(1.0)[..., None]
    return v


# ----------------------------------------------------------------------------- 4. warp


class WarpResult(NamedTuple):
    latent: torch.Tensor  # (B, C, h, w)
    holes: torch.Tensor  # (h, w) bool: in the mask and not written
    written: torch.Tensor  # (h, w) bool: destination of some masked cell


def warp_latent_one_step(
    z: torch.Tensor,
    field: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> WarpResult:
    """Forward-splat every masked cell p of ``z`` (B, C, h, w) to ``round(p + v(p))``.

    ``field``: (h, w, 2) displacement (dx, dy) in cells; ``mask``: (h, w) bool. Rounding is
    half up (``floor(x + 0.5)``); destinations outside the grid are dropped. Collisions: the
    source with the larger ``weight`` (h, w) wins ([guess] default ``|v(p)|``: the cell that
    moves more, i.e. the dragged content, wins), ties go to the first source in row-major
    order (FastDrag's "first writer wins"). A masked cell that moves by 0 writes itself.
    Holes = masked cells that nobody wrote; they keep their old content (fill them with
    :func:`fill_holes_attention_weighted`). Cells neither masked nor written are unchanged
    bit for bit; written cells get an exact copy of their source.
    """
    if z.ndim != 4:
        raise ValueError(f"z must be (B, C, h, w), got {tuple(z.shape)}")
    b, c, h, w = z.shape
    if field.shape != (h, w, 2):
        raise ValueError(f"field must be ({h}, {w}, 2), got {tuple(field.shape)}")
    if mask.shape != (h, w):
        raise ValueError(f"mask must be ({h}, {w}), got {tuple(mask.shape)}")
    dev = z.device
    f = field.to(device=dev, dtype=torch.float64)
    m = mask.to(device=dev, dtype=torch.bool)
    wt = f.norm(dim=-1) if weight is None else weight.to(device=dev, dtype=torch.float64)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=dev, dtype=torch.float64),
        torch.arange(w, device=dev, dtype=torch.float64),
        indexing="ij",
    )
    dx = round_half_up(xs + f[..., 0]).long()
    dy = round_half_up(ys + f[..., 1]).long()
    src = m & (dx >= 0) & (dx < w) & (dy >= 0) & (dy < h)

    n = h * w
    src_idx = torch.nonzero(src.reshape(-1)).squeeze(-1)  # row-major order
    dst_idx = (dy * w + dx).reshape(-1)[src_idx]
    src_wt = wt.reshape(-1)[src_idx]
    best = torch.full((n,), -math.inf, device=dev, dtype=torch.float64)
    best = best.scatter_reduce(0, dst_idx, src_wt, reduce="amax", include_self=True)
    cand = src_wt == best[dst_idx]
    winner = torch.full((n,), n, device=dev, dtype=torch.long)
    winner = winner.scatter_reduce(0, dst_idx[cand], src_idx[cand], reduce="amin")
    written_flat = winner < n

    out = z.clone()
    dst = torch.nonzero(written_flat).squeeze(-1)
    out.view(b, c, n)[:, :, dst] = z.reshape(b, c, n)[:, :, winner[dst]]
    written = written_flat.reshape(h, w)
    return WarpResult(out, m & ~written, written)


# ----------------------------------------------------------------------------- 5. fill


def _nearest_known(known: torch.Tensor, dim: int) -> tuple[torch.Tensor, ...]:
    """For each cell, index of the nearest known cell before/after it along ``dim`` (0=y, 1=x)
    and whether one exists: (prev_idx, prev_ok, next_idx, next_ok)."""
    size = known.shape[dim]
    shape = [1, 1]
    shape[dim] = size
    pos = torch.arange(size, device=known.device).reshape(shape).expand_as(known)
    prev = torch.where(known, pos, torch.full_like(pos, -1)).cummax(dim=dim).values
    big = torch.full_like(pos, size)
    nxt = torch.where(known, pos, big).flip(dim).cummin(dim=dim).values.flip(dim)
    return prev, prev >= 0, nxt, nxt < size


def fill_holes_attention_weighted(
    z: torch.Tensor,
    holes: torch.Tensor,
    attn_weights: torch.Tensor | None = None,
    radius: int | None = None,
    max_passes: int | None = None,
) -> torch.Tensor:
    """Fill hole cells of ``z`` (B, C, h, w) from their nearest non-hole neighbours.

    For a hole cell p, look along −x, +x, −y, +y for the nearest non-hole cell n_d at
    distance r_d (cells; only r_d ≤ ``radius`` if given; FastDrag's bilateral
    nearest-neighbour interpolation, arXiv 2405.15769). Then

        z(p) = Σ_d ω_d z(n_d) / Σ_d ω_d,   ω_d = (1 / r_d) · (1 − a(n_d))

    where ``a = attn_weights`` (h, w) clamped to [0, 1] (the attention / movement weight of
    the content *now* at each cell, 1 = object) [guess: the paper's "attention-weighted
    interpolation" read as "take hole content from the background"]; without
    ``attn_weights`` the factor is 1 (plain FastDrag). If every found neighbour has a = 1 the
    factor is dropped for that cell (plain 1/r_d). Holes with no neighbour in any direction
    (whole row and column are holes) are filled in further passes from cells filled before,
    up to ``max_passes`` (default: until nothing changes); cells never reached keep their
    value. Non-hole cells are returned unchanged bit for bit.
    """
    if z.ndim != 4:
        raise ValueError(f"z must be (B, C, h, w), got {tuple(z.shape)}")
    h, w = z.shape[-2:]
    if holes.shape != (h, w):
        raise ValueError(f"holes must be ({h}, {w}), got {tuple(holes.shape)}")
    dev = z.device
    work_dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    out = z.clone()
    remaining = holes.to(device=dev, dtype=torch.bool).clone()
    a = None
    if attn_weights is not None:
        if attn_weights.shape != (h, w):
            raise ValueError(f"attn_weights must be ({h}, {w}), got {tuple(attn_weights.shape)}")
        a = attn_weights.to(device=dev, dtype=work_dtype).clamp(0.0, 1.0)
    ys = torch.arange(h, device=dev)[:, None].expand(h, w)
    xs = torch.arange(w, device=dev)[None, :].expand(h, w)
    passes = 0
    while bool(remaining.any()) and (max_passes is None or passes < max_passes):
        passes += 1
        known = ~remaining
        cur = out.to(work_dtype)
        prev_x, ok_px, next_x, ok_nx = _nearest_known(known, 1)
        prev_y, ok_py, next_y, ok_ny = _nearest_known(known, 0)
        # (neighbour y, neighbour x, exists) for −x, +x, −y, +y
        dirs = [
            (ys, prev_x, ok_px),
            (ys, next_x, ok_nx),
            (prev_y, xs, ok_py),
            (next_y, xs, ok_ny),
        ]
        inv_r, fac, vals = [], [], []
        for ny, nx, ok in dirs:
            ny_c, nx_c = ny.clamp(0, h - 1), nx.clamp(0, w - 1)
            r = (ny - ys).abs() + (nx - xs).abs()
            ok = ok & (r > 0)
            if radius is not None:
                ok = ok & (r <= int(radius))
            inv_r.append(torch.where(ok, 1.0 / r.clamp_min(1).to(work_dtype), 0.0))
            if a is None:
                fac.append(torch.ones((h, w), device=dev, dtype=work_dtype))
            else:
                fac.append(1.0 - a[ny_c, nx_c])
            vals.append(cur[:, :, ny_c, nx_c])  # (B, C, h, w)
        inv_r_t, fac_t = torch.stack(inv_r), torch.stack(fac)  # (4, h, w)
        omega = inv_r_t * fac_t
        den = omega.sum(0)
        fallback = (den <= 0) & (inv_r_t.sum(0) > 0)
        omega = torch.where(fallback[None], inv_r_t, omega)
        den = omega.sum(0)
        fill = remaining & (den > 0)
        if not bool(fill.any()):
            break
        num = sum(omega[i] * vals[i] for i in range(4))
        filled = (num / den.clamp_min(torch.finfo(work_dtype).tiny)).to(out.dtype)
        out = torch.where(fill, filled, out)
        remaining = remaining & ~fill
    return out


# ----------------------------------------------------------------------------- 6. pipeline


class AttentionDragResult(NamedTuple):
    latent: torch.Tensor  # (B, C, h, w) edited latent
    mask: torch.Tensor  # (h, w) bool, union of the per-handle masks
    attention: torch.Tensor  # (n, h, w) attention map per handle
    holes: torch.Tensor  # (h, w) bool, cells vacated by the move (filled in ``latent``)


def attention_drag(
    z: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    grid_hw: tuple[int, int],
    handles: Points,
    targets: Points,
    tau: float = 2.0,
    direction: str = "query",
    scale: float | None = None,
    heads_reduce: str = "mean",
    relative_to: str = "mean",
    dilate: int = 0,
    normalise: str = "max",
    rigid: bool = False,
    mask: torch.Tensor | None = None,
    fill_radius: int | None = None,
    fill_with_attention: bool = True,
) -> AttentionDragResult:
    """One-step AttentionDrag on latent ``z`` (B, C, h, w) with ``grid_hw == (h, w)``.

    ``q``, ``k``: (B', heads, h·w, D) image-token queries/keys of the chosen self-attention
    layer; ``handles``/``targets``: (x, y) cell points (see :func:`pixel_to_cell`). Steps:
    attention map per handle (:func:`attention_to_handle`), mask per handle (:func:`auto_mask`
    with ``tau``/``relative_to``/``dilate``, or the given ``mask`` (h, w) for all handles),
    displacement field (:func:`attention_displacement_field`), forward splat with collisions
    won by the larger movement weight max_i w_i (:func:`warp_latent_one_step`), hole filling
    (:func:`fill_holes_attention_weighted`, the neighbour factor ``1 − w`` of the content now
    at each cell when ``fill_with_attention``). ValueError naming the drag on a zero-length
    drag; cells outside the union mask that nothing lands on are unchanged bit for bit.
    """
    if z.ndim != 4 or tuple(z.shape[-2:]) != (int(grid_hw[0]), int(grid_hw[1])):
        raise ValueError(f"z must be (B, C, {grid_hw[0]}, {grid_hw[1]}), got {tuple(z.shape)}")
    _drag_vectors(handles, targets)  # fail early on a zero-length drag
    cells = handle_cells(handles, grid_hw)
    idx = [cell_index(cell, grid_hw) for cell in cells]
    attn = attention_to_handle(
        q, k, idx, grid_hw, direction=direction, scale=scale, heads_reduce=heads_reduce
    ).to(z.device)
    if mask is None:
        masks = auto_mask(attn, tau=tau, relative_to=relative_to, handles=cells, dilate=dilate)
    else:
        if mask.shape != tuple(grid_hw):
            raise ValueError(f"mask must be {tuple(grid_hw)}, got {tuple(mask.shape)}")
        masks = mask.to(device=z.device, dtype=torch.bool)[None].expand_as(attn)
    wts = handle_weights(attn, handles, masks, normalise=normalise, rigid=rigid)
    field = attention_displacement_field(
        attn, handles, targets, masks, normalise=normalise, rigid=rigid
    )
    union = masks.any(dim=0)
    w_max = wts.amax(dim=0)  # (h, w) movement weight: collision priority, "object-ness"
    warped = warp_latent_one_step(z, field, union, weight=w_max)
    moved_w = warp_latent_one_step(w_max[None, None], field, union, weight=w_max).latent[0, 0]
    filled = fill_holes_attention_weighted(
        warped.latent,
        warped.holes,
        attn_weights=moved_w if fill_with_attention else None,
        radius=fill_radius,
    )
    return AttentionDragResult(filled, union, attn, warped.holes)


__all__ = [
    "AttentionDragResult",
    "WarpResult",
    "attention_displacement_field",
    "attention_drag",
    "attention_to_handle",
    "auto_mask",
    "cell_index",
    "fill_holes_attention_weighted",
    "handle_cells",
    "handle_weights",
    "mask_threshold",
    "pixel_to_cell",
    "warp_latent_one_step",
]
