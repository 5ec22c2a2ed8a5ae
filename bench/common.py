"""Shared benchmark helpers: import the pack and ComfyUI, time callables in one process."""
from __future__ import annotations

import time

from tools import comfy_env

#: "large enough for timing to mean something" on a CPU: hidden 512, 8 heads, 4+8 blocks
BENCH_FLUX = dict(hidden_size=512, num_heads=8, axes_dim=[16, 24, 24], depth=4,
                  depth_single_blocks=8, context_in_dim=256, vec_in_dim=64, mlp_ratio=4.0)


def setup_comfy():
    comfy_env.import_comfy()
    import torch

    torch.manual_seed(0)
    return comfy_env


def add_timing_args(ap, repeats: int = 3) -> None:
    """The ``--threads`` / ``--repeats`` options every timing benchmark takes."""
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default); 1 steadies ratios on a loaded machine")
    ap.add_argument("--repeats", type=int, default=repeats, help="timed rounds; the best of them is reported")


def apply_threads(args) -> None:
    """Apply ``--threads`` (0 keeps torch's default)."""
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)


def interleaved_times(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Best (minimum) wall time of each callable, run interleaved so load changes hit all alike;
    the minimum is the least disturbed by other processes on a shared machine."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def table(rows: list, headers: list) -> str:
    cols = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cols[0]), sep] + [line(r) for r in cols[1:]])
