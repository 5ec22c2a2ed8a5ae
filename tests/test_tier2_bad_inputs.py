"""Tier 2, real server: bad inputs over ``POST /prompt`` on the toy model.

Each class of bad input is refused with a message that names the input (and the limit or the fix),
reported as ``fluxdrag.<Error>`` — never under the install path — while the server stays up, and
the next good edit is bit-identical to the first one (nothing left patched or cached). Interrupts
in the middle of the inversion and of the sampling leave nothing behind either.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
import torch

pytest_plugins = ["comfy_server"]
pytestmark = pytest.mark.tier2

SEED = 11          # toy scene of this test
STEPS = 4


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def edit_graph(steps: int = STEPS, instructions=("2", 1), latent=("2", 0), model=("1", 0),
               extra: dict | None = None, prefix: str = "bad_inputs") -> dict:
    """Toy LazyDrag edit: scene → map → invert → patch → sample → SaveLatent (exact bits)."""
    g = {
        "1": node("FluxDragToyModelLoader", family="any", guidance=3.5),
        "2": node("FluxDragToyScene", seed=SEED, family="single", case="move"),
        "3": node("FluxDragCorrespondenceMap", drag_instructions=list(instructions), latent=list(latent),
                  transition_width=1, activation=0.8, seed=0, background_query="live"),
        "4": node("FluxDragInvert", model=list(model), latent=list(latent), positive=["1", 1], steps=steps,
                  solver="uni_inv", strength=1.0, scheduler="simple", guidance=3.5, edit_map=["3", 0],
                  cache_policy="cpu", cache_budget_gb=0.0),
        "5": node("FluxDragLazyDragPatch", model=list(model), inversion=["4", 1], map=["3", 0],
                  background=True, identity=True, refine=True, mask_text=True, h_max=0.8, hold=0.2,
                  end=0.6, background_lock=1.0),
        "6": node("FluxDragSampleFromInversion", model=["5", 0], inversion=["4", 1], positive=["1", 1],
                  solver="auto", cfg=1.0, latent=["5", 1], keep_cache=False),
        "7": node("SaveLatent", samples=["6", 0], filename_prefix=prefix),
    }
    g.update(extra or {})
    return g


def json_graph(text: str) -> dict:
    """The edit with the instructions coming from the JSON node."""
    return edit_graph(instructions=("20", 0), extra={"20": node("FluxDragInstructionsJSON", drags_json=text)})


def _latent_bytes(client, entry) -> bytes:
    files = client.output_files(entry, kind="latents")
    assert len(files) == 1, entry["outputs"]
    from safetensors.torch import load_file

    return load_file(str(files[0]))["latent_tensor"].numpy().tobytes()


@pytest.fixture(scope="module")
def reference(comfy_server):
    """The good edit's exact latent, run first."""
    entry = comfy_server.run(edit_graph(), timeout=300)
    return _latent_bytes(comfy_server, entry)


def _wait_entry(client, prompt_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = client.get_json(f"/history/{prompt_id}").get(prompt_id)
        if entry is not None and entry.get("status", {}).get("completed") is not None:
            if entry["status"].get("status_str") in ("success", "error"):
                return entry
        assert client.proc.poll() is None, "the server went down"
        time.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} did not finish")


def _error(client, graph: dict) -> dict:
    """Run a graph that must fail during execution; the execution_error message's data."""
    status, answer = client.post_prompt(graph)
    assert status == 200 and "prompt_id" in answer, answer
    entry = _wait_entry(client, answer["prompt_id"])
    errors = [d for kind, d in entry["status"]["messages"] if kind == "execution_error"]
    assert errors, f"expected an execution error, got {entry['status']}"
    return errors[0]


def _assert_good_run_unchanged(client, reference: bytes) -> None:
    assert client.proc.poll() is None, "the server went down"
    entry = client.run(edit_graph(), timeout=300)
    assert _latent_bytes(client, entry) == reference, "the next good edit differs from the first"


DOC = {"version": 1, "image_size": [256, 256], "drags": [{"handle": [100, 120], "target": [140, 120]}]}


def _doc(**kw) -> str:
    return json.dumps(dict(DOC, **kw))


BAD_JSON = {
    "empty": ("", "is empty"),
    "not_json": ("{drags: [}", "is not valid JSON"),
    "wrong_type": ('[1, 2, 3]', "must be a JSON object"),
    "nan": ('{"version": 1, "image_size": [256, 256], "drags": [{"handle": [NaN, 1], "target": [3, 4]}]}',
            "NaN or infinity"),
    "out_of_image": (_doc(drags=[{"handle": [100, 120], "target": [900, 120]}]), "lies outside the 256x256 image"),
    "bad_rle": (_doc(mask={"rle": {"size": [256, 256], "counts": [5, 7]}}), "counts sum to 12"),
    "huge_side": (_doc(image_size=[1e30, 256]), "over the limit of 4096 px per side"),
    "too_many_drags": (_doc(drags=[{"handle": [10, 10], "target": [20, 20]}] * 10000), "over the limit of 64"),
    "deep": ('{"version": 1, "x": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than 32"),
}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_bad_instructions_named_and_nothing_left(comfy_server, reference, case):
    text, expected = BAD_JSON[case]
    err = _error(comfy_server, json_graph(text))
    assert err["node_type"] == "FluxDragInstructionsJSON"
    assert "input 'drags_json'" in err["exception_message"] and expected in err["exception_message"], err
    assert err["exception_type"] == "fluxdrag.FluxDragInputError", err["exception_type"]
    _assert_good_run_unchanged(comfy_server, reference)


def test_points_text_with_bad_number(comfy_server, reference):
    g = edit_graph(instructions=("20", 0), extra={
        "20": node("FluxDragInstructionsFromPoints", image=["2", 3], points="56..3,10 -> 80,10", mode="drag")})
    err = _error(comfy_server, g)
    assert "input 'points' line 1" in err["exception_message"], err
    assert "/" not in err["exception_type"]
    _assert_good_run_unchanged(comfy_server, reference)


def test_latent_not_multiple_of_16(comfy_server, reference):
    g = edit_graph(latent=("20", 0), extra={"20": node("EmptyLatentImage", width=200, height=256, batch_size=1)})
    err = _error(comfy_server, g)
    assert "input 'latent'" in err["exception_message"] and "multiple of 16" in err["exception_message"], err
    _assert_good_run_unchanged(comfy_server, reference)


def test_wrong_model_family(comfy_server, reference):
    g = edit_graph(model=("20", 0), extra={"20": node("FluxDragTestTinySD15Checkpoint", ckpt_name="sd15.safetensors")})
    err = _error(comfy_server, g)
    assert "input 'model'" in err["exception_message"] and "FLUX" in err["exception_message"], err
    assert err["exception_type"] == "fluxdrag.FluxDragInputError"
    _assert_good_run_unchanged(comfy_server, reference)


@pytest.mark.parametrize("phase,node_type", [("inversion", "FluxDragInvert"),
                                             ("sampling", "FluxDragSampleFromInversion")])
def test_interrupt_leaves_nothing(comfy_server, reference, phase, node_type):
    """Interrupt while ``node_type`` runs (found from the server's progress); the next good edit
    is bit-identical."""
    watcher = _Executing(comfy_server)
    watcher.start()
    assert watcher.ready.wait(30), "no websocket connection"
    try:
        status, answer = comfy_server.post_prompt(edit_graph(steps=40, prefix="interrupted"))
        assert status == 200, answer
        pid = answer["prompt_id"]
        nid = "4" if phase == "inversion" else "6"
        deadline = time.monotonic() + 240
        while watcher.node != nid:
            assert time.monotonic() < deadline, f"node {nid} never started"
            time.sleep(0.01)
        time.sleep(0.05)
        comfy_server.request("POST", "/interrupt", b"{}")
        entry = _wait_entry(comfy_server, pid)
    finally:
        watcher.stop.set()
        watcher.join(5)
    kinds = dict(entry["status"]["messages"])
    assert "execution_interrupted" in kinds, entry["status"]
    assert kinds["execution_interrupted"]["node_type"] == node_type, kinds["execution_interrupted"]
    _assert_good_run_unchanged(comfy_server, reference)


class _Executing(threading.Thread):
    """Follows the server's websocket for our client id and keeps the node being executed
    (ComfyUI 0.8 reports it only there: ``{"type": "executing", "data": {"node": id}}``)."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.url = client.base_url.replace("http", "ws", 1) + f"/ws?clientId={client.client_id}"
        self.node: str | None = None
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self):
        import asyncio

        import aiohttp

        async def follow():
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(self.url, heartbeat=10) as ws:
                    self.ready.set()
                    while not self.stop.is_set():
                        try:
                            msg = await ws.receive(timeout=0.2)
                        except asyncio.TimeoutError:
                            continue
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                                return
                            continue
                        data = json.loads(msg.data)
                        if data.get("type") == "executing":
                            self.node = data["data"].get("node")

        asyncio.run(follow())


def test_good_runs_are_deterministic(reference):
    assert isinstance(reference, bytes) and len(reference) == 16 * 32 * 32 * 4
    assert torch.frombuffer(bytearray(reference), dtype=torch.float32).isfinite().all()
