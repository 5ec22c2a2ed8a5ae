"""Tier 2, real server: edits leave no dead model entry in ComfyUI's model manager.

ComfyUI keeps one ``LoadedModel`` per loaded MODEL clone and, when that clone dies, switches the
entry to the clone's parent. A clone of a transient clone leaves an entry whose patcher and parent
are both gone while the weights live on: every later prompt then logs "memory leak with model"
and forces a full garbage collection (``comfy.model_management.cleanup_models_gc``). DragFlow did
this on every run; each method here runs three times, then a fourth prompt triggers the check.
"""
from __future__ import annotations

import pytest

from fluxdrag.tools import toy_graphs

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

SEED = 4
LEAK_MARKERS = ("memory leak with model", "Potential memory leak detected")


def _dragflow_graph(run: int) -> dict:
    return toy_graphs.dragflow(SEED, steps=6 + run, prefix=f"entries_dragflow_{run}")


def _lazydrag_graph(run: int) -> dict:
    return toy_graphs.lazydrag(SEED, steps=4 + run, prefix=f"entries_lazydrag_{run}")


@pytest.mark.parametrize("graph", [_dragflow_graph, _lazydrag_graph], ids=["dragflow", "lazydrag"])
def test_three_runs_leave_no_dead_model_entry(comfy_server, graph):
    start = len(comfy_server.log())
    for run in range(3):   # a different step count each time: no run is served from the cache
        comfy_server.run(toy_graphs.with_defaults(graph(run), comfy_server.object_info()), timeout=600)
    # the next prompt's start runs ComfyUI's dead-entry check
    comfy_server.run(toy_graphs.with_defaults(_lazydrag_graph(9), comfy_server.object_info()), timeout=600)
    new_log = comfy_server.log()[start:]
    leaks = [ln for ln in new_log.splitlines() if any(m in ln for m in LEAK_MARKERS)]
    assert not leaks, "\n".join(leaks[:10])
