"""Tier 1: scripts/queue_workflow.py without a server: --set parsing and typing, node lookup,
round-robin assignment, refusal messages, and the websocket frame reader over a socket pair."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _qw():
    from scripts import queue_workflow

    return queue_workflow


qw = _qw()

PROMPT = {
    "4": {"class_type": "LoadImage", "inputs": {"image": "source.png"}, "_meta": {"title": "Source image"}},
    "7": {"class_type": "FluxDragInvert", "inputs": {"steps": 8, "strength": 1.0, "solver": "fireflow",
                                                     "latent": ["5", 0], "keep": False},
          "_meta": {"title": "Invert (v1.2)"}},
    "8": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}, "_meta": {"title": "Prompt"}},
    "9": {"class_type": "CLIPTextEncode", "inputs": {"text": ""}, "_meta": {"title": "Prompt"}},
}


def test_parse_set_splits_at_the_last_dot_before_the_input():
    assert qw.parse_set("7.steps=6") == ("7", "steps", "6")
    assert qw.parse_set("Invert (v1.2).steps=6") == ("Invert (v1.2)", "steps", "6")
    assert qw.parse_set("Drag Editor.drags=@d.json") == ("Drag Editor", "drags", "@d.json")
    assert qw.parse_set("8.text=a=b") == ("8", "text", "a=b")
    with pytest.raises(qw.QueueError, match="write NODE.INPUT=VALUE"):
        qw.parse_set("steps=6")


def test_apply_sets_types_values_like_the_current_input(tmp_path):
    (tmp_path / "d.json").write_text('{"version": 1}')
    out = qw.apply_sets(PROMPT, ["7.steps=6", "Invert (v1.2).strength=0.5", "7.keep=true",
                                 "7.solver=uni_inv", f"4.image=@{tmp_path / 'd.json'}", "7.new=3"])
    ins = out["7"]["inputs"]
    assert ins["steps"] == 6 and type(ins["steps"]) is int
    assert ins["strength"] == 0.5 and ins["keep"] is True and ins["solver"] == "uni_inv"
    assert ins["new"] == 3 and out["4"]["inputs"]["image"] == '{"version": 1}'
    assert PROMPT["7"]["inputs"]["steps"] == 8  # the input prompt is not modified
    with pytest.raises(qw.QueueError, match="expects a int, got '6.5'"):
        qw.apply_sets(PROMPT, ["7.steps=6.5"])
    with pytest.raises(qw.QueueError, match="connected to node 5"):
        qw.apply_sets(PROMPT, ["7.latent=1"])
    with pytest.raises(qw.QueueError, match=r"2 nodes match 'Prompt' \(ids 8, 9\); use the id"):
        qw.apply_sets(PROMPT, ["Prompt.text=x"])
    with pytest.raises(qw.QueueError, match="no node 'Nope'.*4 'Source image'"):
        qw.apply_sets(PROMPT, ["Nope.x=1"])
    with pytest.raises(qw.QueueError, match="cannot read '@missing.json'"):
        qw.apply_sets(PROMPT, ["8.text=@missing.json"])
    # a class type works as a reference when it is unique
    assert qw.apply_sets(PROMPT, ["LoadImage.image=x.png"])["4"]["inputs"]["image"] == "x.png"


def test_round_robin_and_local_images(tmp_path):
    assert qw.assign_round_robin(5, 2) == [[0, 2, 4], [1, 3]]
    assert qw.assign_round_robin(1, 3) == [[0], [], []]
    img = tmp_path / "a.png"
    img.write_bytes(b"png")
    assert qw.local_image(str(img), []) == img
    assert qw.local_image("a.png", [tmp_path]) == tmp_path / "a.png"
    assert qw.local_image("a.png [input]", [tmp_path]) is None
    assert qw.local_image("not_here.png", [tmp_path]) is None
    assert qw.resolve_workflow("lazydrag_flux") == ROOT / "workflows" / "api" / "lazydrag_flux_api.json"
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(qw.QueueError, match="is a UI workflow"):
        qw.load_workflow(ui)


def test_refusal_text_names_node_and_input():
    answer = {"error": {"type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation", "details": ""},
              "node_errors": {"7": {"class_type": "FluxDragInvert", "errors": [
                  {"type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1",
                   "details": "steps"}]}}}
    text = qw.describe_refusal(answer, PROMPT)
    assert text.splitlines() == ["Prompt outputs failed validation",
                                 "  node 7 (FluxDragInvert 'Invert (v1.2)'): Value 0 smaller than "
                                 "min of 1: steps"]


def _fake_server(events: list, history: dict, close_ws_after: int | None = None):
    """A loopback aiohttp server speaking ComfyUI's /prompt, /history and /ws; started in a
    thread. Returns (url, stop)."""
    import asyncio
    import threading

    from aiohttp import web

    ready, box = threading.Event(), {"sent": False}

    async def ws_handler(request):
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json({"type": "status", "data": {"status": {}}})
        await ws.send_bytes(b"\x00\x01preview")
        await box["queued"].wait()
        for i, ev in enumerate(events):
            await asyncio.sleep(0.2)
            if close_ws_after is not None and i == close_ws_after:
                await ws.close()
                box["sent"] = True
                return ws
            await ws.send_str(json.dumps(ev))
        box["sent"] = True  # the prompt is done: history has it from now on
        await asyncio.sleep(0.3)
        return ws

    async def prompt(request):
        box["queued"].set()
        return web.json_response({"prompt_id": "p1", "number": 0, "node_errors": {}})

    async def hist(request):
        pid = request.match_info["pid"]
        return web.json_response({pid: history} if box["sent"] else {})

    async def main():
        app = web.Application()
        app.add_routes([web.get("/ws", ws_handler), web.post("/prompt", prompt),
                        web.get("/history/{pid}", hist)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        box["stop"], box["queued"] = asyncio.Event(), asyncio.Event()
        ready.set()
        await box["stop"].wait()
        await runner.cleanup()

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert ready.wait(10)

    def stop():
        loop.call_soon_threadsafe(box["stop"].set)
        t.join(10)
    return box["url"], stop


def test_client_follows_progress_over_the_websocket_and_falls_back_to_polling():
    """The client reads text events for its prompt (ignoring other prompts and binary previews),
    stops at the end event and returns the history entry; a lost websocket falls back to
    polling /history; a failed prompt raises with the node and the exception."""
    big = "x" * 70000  # larger than one frame of 64 KiB
    events = [{"type": "executing", "data": {"node": "3", "prompt_id": "other"}},
              {"type": "executing", "data": {"node": "3", "prompt_id": "p1"}},
              {"type": "progress", "data": {"node": "3", "prompt_id": "p1", "value": 1, "max": 2, "pad": big}},
              {"type": "execution_success", "data": {"prompt_id": "p1"}}]
    entry = {"status": {"status_str": "success", "completed": True}, "outputs": {}}
    url, stop = _fake_server(events, entry)
    try:
        c = qw.ComfyServer(url)
        assert c.open_progress()
        seen = []
        assert c.run({"1": {"class_type": "X", "inputs": {}}}, timeout=20,
                     on_event=lambda k, d: seen.append((k, d.get("value")))) == entry
        assert seen == [("executing", None), ("progress", 1), ("execution_success", None)]
        c.close()
    finally:
        stop()
    url, stop = _fake_server(events, entry, close_ws_after=1)
    try:
        c = qw.ComfyServer(url)
        assert c.run({"1": {"class_type": "X", "inputs": {}}}, timeout=20) == entry
        assert c.ws is None and c.ws_failed.startswith("lost")
        c.close()
    finally:
        stop()
    failed = {"status": {"status_str": "error", "messages": [["execution_error", {
        "node_id": "3", "node_type": "FluxDragInvert", "exception_type": "ValueError",
        "exception_message": "bad steps", "traceback": []}]]}}
    url, stop = _fake_server(events[:2], failed)
    try:
        c = qw.ComfyServer(url)
        with pytest.raises(qw.QueueError, match=r"node 3 \(FluxDragInvert\): ValueError: bad steps"):
            c.run({"1": {"class_type": "X", "inputs": {}}}, timeout=20)
        c.close()
    finally:
        stop()
