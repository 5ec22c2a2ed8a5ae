"""Tier 1: scripts/queue_workflow.py without a server: --set parsing and typing, node lookup,
round-robin assignment, refusal messages, and the websocket frame reader over a socket pair."""
from __future__ import annotations

import importlib.util
import json
import socket
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _qw():
    spec = importlib.util.spec_from_file_location("fluxdrag_queue_workflow",
                                                  ROOT / "scripts" / "queue_workflow.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


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


def _frame(op: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def _unmask(data: bytes) -> tuple[int, bytes]:
    op, n = data[0] & 0x0F, data[1] & 0x7F
    assert data[1] & 0x80  # client frames are masked
    mask, payload = data[2:6], data[6:6 + n]
    return op, bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def test_websocket_frames_fragments_pings_and_timeouts():
    a, b = socket.socketpair()
    ws = qw.WebSocket.__new__(qw.WebSocket)
    ws.sock, ws.buf, ws._parts, ws._first = a, b"", [], 1
    big = json.dumps({"type": "progress", "data": {"value": 1, "pad": "x" * 70000}}).encode()
    b.sendall(_frame(1, b'{"type": "status"}') + _frame(0x9, b"hi") + _frame(1, big[:10], fin=False)
              + _frame(0, big[10:]) + _frame(2, b"\x00\x01"))
    assert ws.recv(timeout=2) == (1, b'{"type": "status"}')
    assert ws.recv(timeout=2) == (1, big)  # 64-bit length, fragmented, ping answered meanwhile
    assert _unmask(b.recv(100)) == (0xA, b"hi")  # the pong
    assert ws.recv(timeout=2) == (2, b"\x00\x01")
    # half a frame, then a time-out: nothing is lost, the frame completes later
    msg = _frame(1, b'{"type": "executing"}')
    b.sendall(msg[:5])
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.2)
    b.sendall(msg[5:])
    assert ws.recv(timeout=2) == (1, b'{"type": "executing"}')
    b.sendall(_frame(0x8, struct.pack("!H", 1000)))
    with pytest.raises(qw.WebSocketClosed):
        ws.recv(timeout=2)
    a.close()
    b.close()
