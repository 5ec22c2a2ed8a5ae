"""Load benchmark: toy edits of mixed methods queued back to back on one ComfyUI server.

    python -m bench.load [--edits 20] [--out bench/out/load.json]

Starts ComfyUI (found like the demo) with the pack, queues ``--edits`` toy-model edits cycling
through LazyDrag, DragFlow, AttentionDrag and invert/reconstruct (each with a different seed, so
nothing is served from ComfyUI's cache), waits for each, and reads the server process's resident
memory after every edit. Fails (exit 1) when an edit fails or the server logs ComfyUI's
"memory leak with model" warning. The last line is ``load_rss_growth: X``: RSS after the last
edit over RSS after the first, minus 1 (goal ≤ 0.05). The line before it gives the same after a
warm-up cycle (RSS after the last edit over the highest RSS of the first cycle of methods): the
first edit's RSS does not yet hold DragFlow's working set, which the allocator keeps afterwards.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tools import toy_graphs
from tools.comfy_env import find_comfyui, not_found_message
from tools.comfy_server import start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent

ORDER = ("lazydrag", "dragflow", "attentiondrag", "invert_reconstruct")
LEAK_MARKERS = ("memory leak with model", "Potential memory leak detected")


def rss_bytes(pid: int) -> int:
    import psutil  # a ComfyUI requirement

    return int(psutil.Process(pid).memory_info().rss)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="also write the per-edit rows as JSON")
    args = ap.parse_args(argv)
    comfyui = find_comfyui()
    if comfyui is None:
        print(not_found_message(), file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        client = start_server(comfyui, Path(tmp))
        try:
            for i in range(args.edits):
                method = ORDER[i % len(ORDER)]
                graph = toy_graphs.with_defaults(toy_graphs.GRAPHS[method](seed=100 + i, prefix=f"load_{i}"),
                                                 client.object_info())
                t0 = time.perf_counter()
                client.run(graph, timeout=900)
                rows.append({"edit": i + 1, "method": method, "seconds": time.perf_counter() - t0,
                             "rss_mib": rss_bytes(client.proc.pid) / 2 ** 20})
                print(f"edit {i + 1:2d} {method:18s} {rows[-1]['seconds']:6.1f} s  "
                      f"server RSS {rows[-1]['rss_mib']:7.1f} MiB", flush=True)
            log = client.log()
        finally:
            stop_server(client)
    leaks = [ln for ln in log.splitlines() if any(m in ln for m in LEAK_MARKERS)]
    growth = rows[-1]["rss_mib"] / rows[0]["rss_mib"] - 1.0
    warm = max(r["rss_mib"] for r in rows[:len(ORDER)])
    after_warmup = rows[-1]["rss_mib"] / warm - 1.0
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "leak_lines": leaks, "rss_growth": growth,
                                        "rss_growth_after_warmup": after_warmup}, indent=1))
    print(f"leak warnings in the server log: {len(leaks)}")
    for ln in leaks[:5]:
        print("  " + ln)
    print(f"rss growth after one warm-up cycle: {after_warmup:.3f} "
          f"(first cycle's peak {warm:.1f} MiB, last {rows[-1]['rss_mib']:.1f} MiB)")
    print(f"load_rss_growth: {growth:.3f}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
