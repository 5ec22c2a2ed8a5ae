"""The texture continuation's cost at 1024² (issue 26): the offset search of ``texture_fill`` by FFT
correlations against the same rule one offset at a time, the LazyDrag Patch's hole fill
(``continued_fill``: the held-out test and the mean of 8 copies), and the membrane (``harmonic_fill``)
of a hole ``--wide`` latent pixels across on a tilted plane, whose exact fill is the plane itself
(its error shows whether the solve settles), all in one process.

Run: ``python -m bench.texture_fill [--latent 128 --paint 30 --wide 70 --threads 1]`` (a 1024² image
is a 128² latent; a 240 px paint is 30 latent pixels). Ends with ``texture_fill_speedup: X`` (the loop's
time ÷ the FFT search's).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from .common import add_timing_args, apply_threads


def offset_by_loop(z: torch.Tensor, region: torch.Tensor, avoid: torch.Tensor | None = None, ring: int = 2,
                   reach: int = 0) -> tuple[int, int] | None:
    """``texture_offset``'s rule, one offset at a time (the reference the FFT search must equal)."""
    R = region.to(torch.bool)
    H, W = R.shape
    reach = reach or max(1, min(H, W) // 2)
    near = F.max_pool2d(R[None, None].float(), 2 * ring + 1, 1, ring)[0, 0].bool()
    bad = R if avoid is None else R | avoid
    ys, xs = torch.nonzero(R, as_tuple=True)
    ry, rx = torch.nonzero(near & ~bad, as_tuple=True)
    best, off = float("inf"), None
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            sy, sx = ys + dy, xs + dx
            if int(sy.min()) < 0 or int(sx.min()) < 0 or int(sy.max()) >= H or int(sx.max()) >= W:
                continue
            if bool(bad[sy, sx].any()):
                continue
            qy, qx = ry + dy, rx + dx
            ok = (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
            ok[ok.clone()] = ~bad[qy[ok], qx[ok]]
            if 2 * int(ok.sum()) < ry.numel():
                continue
            err = float((z[:, ry[ok], rx[ok]] - z[:, ry[ok] + dy, rx[ok] + dx]).double().pow(2).sum(0).mean())
            if err < best * (1 - 1e-9):
                best, off = err, (dy, dx)
    return off


def _timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> int:
    from fluxdrag.core.correspondence import continued_fill, harmonic_fill, texture_fill, texture_offset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latent", type=int, default=128)
    p.add_argument("--paint", type=int, default=30)
    p.add_argument("--wide", type=int, default=70, help="the membrane's hole side, latent pixels")
    add_timing_args(p, repeats=2)
    p.set_defaults(threads=1)
    args = p.parse_args(argv)
    apply_threads(args)
    n, k = args.latent, args.paint
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    g = torch.Generator().manual_seed(0)
    z = 0.3 * torch.randn(16, n, n, generator=g)
    z[0] += 2.0 * torch.sin(2 * torch.pi * (0.8 * x + 0.6 * y) / 5.3)     # stripes, no whole-pixel period
    region = torch.zeros(n, n, dtype=torch.bool)
    region[n // 3:n // 3 + k, n // 3:n // 3 + k] = True
    t_loop, ref = _timed(lambda: offset_by_loop(z, region), 1)
    t_fft, got = _timed(lambda: texture_offset(z, region), args.repeats)
    t_fill, _ = _timed(lambda: texture_fill(z, region), args.repeats)
    t_hole, _ = _timed(lambda: continued_fill(z, region, copies=8), args.repeats)
    plane = torch.stack([0.05 * x - 0.03 * y + c for c in range(16)]).float()[None]
    wide = torch.zeros(n, n, dtype=torch.bool)
    k2 = min(args.wide, n - 4)
    wide[2:2 + k2, 2:2 + k2] = True
    t_mem, mem = _timed(lambda: harmonic_fill(plane.masked_fill(wide, 0.0), wide), args.repeats)
    mem_err = float((mem - plane)[..., wide].abs().max())
    print(f"latent {n}² ({8 * n}² px), paint {k}² latent px, {args.threads} thread(s)")
    print(f"offset search, one offset at a time: {t_loop:.2f} s  (offset {ref})")
    print(f"offset search, FFT (texture_offset): {t_fft:.3f} s  (offset {got})")
    print(f"texture_fill (the map's content test): {t_fill:.3f} s")
    print(f"continued_fill (the Patch's hole fill, 8 copies): {t_hole:.3f} s")
    print(f"harmonic_fill (the membrane, a {k2}² hole, 16 channels): {t_mem:.3f} s, "
          f"off the exact fill by {mem_err:.2e}")
    assert got == ref, "the FFT search chose another offset than the loop"
    print(f"texture_fill_speedup: {t_loop / t_fft:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
