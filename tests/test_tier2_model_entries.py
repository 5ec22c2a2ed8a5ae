"""Tier 2, real server: edits leave no dead model entry in ComfyUI's model manager.

ComfyUI keeps one ``LoadedModel`` per loaded MODEL clone and, when that clone dies, switches the
entry to the clone's parent. A clone of a transient clone leaves an entry whose patcher and parent
are both gone while the weights live on: every later prompt then logs "memory leak with model"
and forces a full garbage collection (``comfy.model_management.cleanup_models_gc``). DragFlow did
this on every run; each method here runs three times, then a fourth prompt triggers the check.
"""
from __future__ import annotations

import pytest

from tools import toy_graphs

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


def _latent(client, entry):
    from safetensors.torch import load_file
    [path] = client.output_files(entry, kind="latents")
    return load_file(str(path))["latent_tensor"]


def test_interrupted_edit_leaves_nothing_behind(comfy_server):
    """An interrupt while Sample From Inversion samples (issue 25): the same graph queued again
    re-samples on ComfyUI's cached inversion and gives, bit for bit, the edit of a run that was
    never interrupted; no run state, cache damage or dead model entry is left."""
    import threading
    import urllib.request

    import torch

    from tools.comfy_server import ServerError

    info = comfy_server.object_info()
    start = len(comfy_server.log())
    steps = 40   # enough sampling steps for the interrupt to land inside the sampling
    ref_graph = toy_graphs.lazydrag(SEED, steps=steps, prefix="interrupt_ref")
    ref_graph["4"]["inputs"]["cache_budget_gb"] = 64.0   # a separate Invert run, same edit
    ref = _latent(comfy_server, comfy_server.run(toy_graphs.with_defaults(ref_graph, info), timeout=600))
    graph = toy_graphs.with_defaults(toy_graphs.lazydrag(SEED, steps=steps, prefix="interrupt"), info)
    fired = []

    def interrupt():
        req = urllib.request.Request(comfy_server.url + "/interrupt", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()

    def on_event(kind, d):
        if kind == "progress" and d.get("node") == "6" and d.get("value", 0) >= 2 and not fired:
            fired.append(d["value"])
            threading.Thread(target=interrupt, daemon=True).start()

    with pytest.raises(ServerError) as e:
        comfy_server.run(graph, timeout=600, on_event=on_event)
    kinds = [k for k, _ in (e.value.status or {}).get("messages", [])]
    assert fired and "execution_interrupted" in kinds, (fired, kinds)
    entry = comfy_server.run(graph, timeout=600)
    cached = {n for k, d in entry["status"]["messages"] if k == "execution_cached" for n in d["nodes"]}
    assert "4" in cached and "6" not in cached, cached   # the inversion served from the cache
    assert torch.equal(_latent(comfy_server, entry), ref)
    leaks = [ln for ln in comfy_server.log()[start:].splitlines() if any(m in ln for m in LEAK_MARKERS)]
    assert not leaks, "\n".join(leaks[:10])
